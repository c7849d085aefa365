"""Peer measurement: rejax 0.1.3 SAC on gymnax Pendulum-v1.

Run by `bench/sac_pendulum.py` with the python of `bench/.peer-venv` (rejax 0.1.3,
gymnax 0.0.9, jax 0.10.2), in its own process.  Prints exactly one JSON line on
stdout (the last line); everything else goes to stderr.  The timing code is
`_peer_common.measure` (ahead-of-time compile, then repeated compiled calls), run by
`_peer_common.rejax_run_all`, as for `bench/_rejax_dqn_peer.py`.

    bench/.peer-venv/bin/python bench/_rejax_sac_peer.py --total-timesteps 10000 --repeats 2

What is configured, and how (field names read from rejax 0.1.3's `algos/sac.py`,
`algos/mixins.py` and `networks.py`):
  * `SAC.create(env="Pendulum-v1", num_envs=1, total_timesteps=T, eval_freq=T,
    skip_initial_evaluation=True, buffer_size=B, fill_buffer=1000, batch_size=256,
    num_epochs=1, learning_rate=3e-4, gamma=0.99, polyak=0.995, target_update_freq=1,
    hidden_layer_sizes=(256, 256), agent_kwargs={"activation": "relu"})`.
    `hidden_layer_sizes` is a top-level key that `SAC.create_agent` pops and gives to
    both the actor (`SquashedGaussianPolicy`, log-std clipped to [-10, 2]) and the
    critic (`QNetwork` on concat(obs, action)); `num_critics` defaults to 2 (twin
    critics, vmapped over stacked parameters, target = min of the two).
  * Schedule: one outer evaluation step of `ceil(eval_freq / num_envs) = T`
    `train_iteration`s; each steps the env once (acting with the current policy, also
    during the warm-up: rejax has no random warm-up actions), extends the buffer and,
    once `global_step > fill_buffer` (read after the step), does `num_epochs = 1` update:
    actor, then critics, then temperature, each its own `jax.grad` and Adam.  For
    T = 1e4 that is 9,000 updates (jaxrl 9,001, SB3 9,000 at the same budget).
  * Target critics: `maybe_update_target_params` with `target_update_freq=1` and
    `polyak=0.995` averages `0.995 * target + 0.005 * online` after every env step
    (tau 0.005), also during the warm-up.
  * Temperature: `log_alpha` starts at 0 (alpha 1), target entropy `-action_dim` = -1,
    loss `-alpha * (log_prob + target_entropy)` (gradient through alpha, not log alpha
    as in SB3); same Adam and learning rate as the networks.
  * Optimizer: `optax.chain(optax.clip(max_grad_norm), optax.adam(3e-4))` for actor,
    critics and temperature, adam eps 1e-8, `max_grad_norm` left at `inf` (no clipping).
  * Critic loss: `optax.l2_loss` (half squared error) summed over the two critics, mean
    over the batch.
  * Replay: `jax.random.choice(..., replace=False, p=filled/num_entries)` over all
    `buffer_size` slots per sample (WITHOUT replacement; its cost grows with
    buffer_size, not with the filled part).  `--buffer-variant N` also measures 1 seed
    with buffer_size N to show that dependence.
  * Terminal handling: gymnax 0.0.9's single `done` (Pendulum only truncates, at 200
    steps) masks the bootstrap: rejax treats the time limit as termination.
  * Evaluation: exactly one `eval_callback`, at the end (128 episodes x 200 steps,
    rejax's `act`: a sampled, tanh-squashed action); `--no-eval-variant`
    also measures the run with it replaced by a no-op.
"""

import argparse

from _peer_common import log, measure, rejax_args, rejax_create, rejax_run_all


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=10_000)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--hidden", default="256,256", help="hidden widths of actor and critics")
    p.add_argument("--buffer-variant", type=int, default=0,
                   help="also measure 1 seed with this buffer_size (0: off)")
    rejax_args(p)
    args = p.parse_args()

    import jax
    from rejax import SAC

    n = args.num_envs
    total = (args.total_timesteps // n) * n

    def create(buffer_size):
        return rejax_create(
            "sac", total,
            env="Pendulum-v1",
            num_envs=n,
            buffer_size=buffer_size,
            fill_buffer=args.learning_starts,
            batch_size=256,
            num_epochs=1,
            learning_rate=3e-4,
            gamma=0.99,
            polyak=0.995,
            target_update_freq=1,
            hidden_layer_sizes=tuple(int(w) for w in args.hidden.split(",")),
            agent_kwargs={"activation": "relu"},
        )

    algo = create(args.buffer_size)
    iterations = -(-algo.eval_freq // n)
    assert -(-algo.total_timesteps // algo.eval_freq) == 1
    env_steps = iterations * n
    # Updates after the step of iteration i (0-based) when (i + 1) * n > fill_buffer.
    num_updates = iterations - args.learning_starts // n

    extra = {
        "num_envs": n,
        "total_timesteps": total,
        "iterations": iterations,
        "num_updates": num_updates,
        "buffer_size": args.buffer_size,
        "num_critics": algo.num_critics,
        "hidden_layer_sizes": list(algo.actor.hidden_layer_sizes),
        "target_entropy": float(algo.target_entropy),
        "loss": "critics: optax.l2_loss summed over 2 critics, batch mean",
        "eval": "single evaluation at the end (eval_freq=total_timesteps, "
                "skip_initial_evaluation=True): 128 episodes x 200 steps",
        "grad_clip": "optax.clip(inf) elementwise (none)",
        "replay_sampling": f"jax.random.choice without replacement over all "
                           f"{args.buffer_size} slots",
    }
    variants = {}
    if args.buffer_variant:
        def train(algo, rng):
            return SAC.train(algo, rng)

        res, _ = measure(train, (create(args.buffer_variant), jax.random.PRNGKey(0)),
                         env_steps, args.repeats,
                         f"1 seed, buffer_size {args.buffer_variant}")
        res["buffer_size"] = args.buffer_variant
        variants["one_seed_buffer_variant"] = res
    log(f"[peer] rejax SAC: {iterations} iterations, {num_updates} updates")
    rejax_run_all(algo, SAC, env_steps, args, {**extra, **variants})


if __name__ == "__main__":
    main()
