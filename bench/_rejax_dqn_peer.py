"""Peer measurement: rejax 0.1.3 DQN on gymnax CartPole-v1 (PureJaxRL's DQN config).

Run by `bench/dqn_cartpole.py` with the python of `bench/.peer-venv` (rejax 0.1.3,
gymnax 0.0.9, jax 0.10.2), in its own process.  Prints exactly one JSON line on
stdout (the last line); everything else goes to stderr.

    bench/.peer-venv/bin/python bench/_rejax_dqn_peer.py --total-timesteps 500000 --repeats 3

What is configured, and how (field names read from rejax 0.1.3's `algos/dqn.py`,
`algos/mixins.py` and `networks.py`):
  * `DQN.create(env="CartPole-v1", num_envs=10, total_timesteps=T, eval_freq=T,
    skip_initial_evaluation=True, buffer_size=10_000, fill_buffer=10_000,
    batch_size=128, num_epochs=1, target_update_freq=500, polyak=0.0, eps_start=1.0,
    eps_end=0.05, exploration_fraction=0.5, learning_rate=2.5e-4, gamma=0.99,
    ddqn=False, agent_kwargs={"activation": "relu"})`.
  * Network: `DQN.create_agent` hard-codes `hidden_layer_sizes=(64, 64)` and passes
    `**agent_kwargs` after it, so `agent_kwargs={"hidden_layer_sizes": ...}` raises
    "got multiple values for keyword argument" (and a top-level `hidden_layer_sizes` is
    an unexpected field).  We therefore replace the (static, non-pytree) `agent` field
    after `create` with `EpsilonGreedyPolicy(DiscreteQNetwork)(hidden_layer_sizes=(120,
    84), activation=nn.relu, action_dim=2)`: the same classes rejax builds, other sizes.
  * Schedule: `ReplayBufferMixin.train` runs `ceil(total / eval_freq) = 1` outer scan step
    of `ceil(eval_freq / num_envs) = T / 10` `train_iteration`s (a fori_loop).  Each
    iteration steps the 10 envs once, extends the buffer with the 10 transitions and,
    if `global_step > fill_buffer`, does `num_epochs = 1` gradient step: one update per
    10 env transitions.  `global_step` is read before the step, so the first update comes
    at iteration 1001 (global_step 10010); for T = 5e5 that is 48,999 updates (jaxrl:
    49,001).  Before `fill_buffer` rejax acts uniformly at random (a `lax.cond`).
  * Target network: `maybe_update_target_params` with `polyak=0.0` is a hard copy
    whenever `global_step` crosses a multiple of `target_update_freq=500` (every 50
    iterations = every 50 updates once learning), also during the warm-up.
  * Epsilon: `optax.linear_schedule(1.0, 0.05, int(0.5 * T))` over global_step (env
    steps), i.e. 1 -> 0.05 over 25e4 steps.  `exploration_fraction` is a static field.
  * Loss: `optax.l2_loss(q, target).mean()` = mean of half squared TD errors, the same
    as jaxrl's `loss="mse"`.  `ddqn` defaults to True in rejax; we set False (plain max).
  * Optimizer: `optax.chain(optax.clip(max_grad_norm), optax.adam(2.5e-4))`, adam eps
    1e-8; `max_grad_norm` is left at its default `inf` (elementwise clip, i.e. none).
  * Replay: `jax.random.choice(..., replace=False, p=filled/num_entries)` over the 10k
    slots per sample, i.e. WITHOUT replacement (jaxrl samples uniformly with replacement).
  * Terminal handling: gymnax 0.0.9 returns one `done`, truncation at 500 steps included,
    and rejax masks the bootstrap with it (jaxrl bootstraps at truncation).
  * Evaluation: with `eval_freq=T` and `skip_initial_evaluation=True` there is exactly
    one `eval_callback`, at the end (128 episodes, <= 500 steps each, epsilon 0.005).
    `--no-eval-variant` also measures the run with it replaced by a no-op.
  * The jitted function is `DQN.train(algo, rng)` with `algo` a pytree argument (its
    non-static scalars, e.g. learning_rate and gamma, are traced leaves).
  * Timing (`_peer_common.measure`, run by `_peer_common.rejax_run_all`): ahead-of-time
    compile, then `--repeats` compiled calls at 1 seed, `--repeats-multi` at
    `--num-seeds` vmapped seeds.
"""

import argparse

from _peer_common import rejax_args, rejax_create, rejax_run_all


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=500_000)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--learning-starts", type=int, default=10_000)
    rejax_args(p)
    args = p.parse_args()

    import flax.linen as nn
    from rejax import DQN
    from rejax.networks import DiscreteQNetwork, EpsilonGreedyPolicy

    n = args.num_envs
    total = (args.total_timesteps // n) * n
    algo = rejax_create(
        "dqn", total,
        env="CartPole-v1",
        num_envs=n,
        buffer_size=10_000,
        fill_buffer=args.learning_starts,
        batch_size=128,
        num_epochs=1,
        target_update_freq=500,
        polyak=0.0,
        eps_start=1.0,
        eps_end=0.05,
        exploration_fraction=0.5,
        learning_rate=2.5e-4,
        gamma=0.99,
        ddqn=False,
        agent_kwargs={"activation": "relu"},
    )
    num_actions = algo.env.action_space(algo.env_params).n
    algo = algo.replace(agent=EpsilonGreedyPolicy(DiscreteQNetwork)(
        hidden_layer_sizes=(120, 84), activation=nn.relu, action_dim=num_actions))

    iterations = -(-algo.eval_freq // n)  # ceil, as rejax computes it
    num_evals = -(-algo.total_timesteps // algo.eval_freq)
    assert num_evals == 1, num_evals
    env_steps = iterations * n
    # Updates happen in iterations i (0-based) with i * n > fill_buffer.
    num_updates = max(0, iterations - (args.learning_starts // n + 1))

    extra = {
        "num_envs": n,
        "total_timesteps": total,
        "iterations": iterations,
        "num_updates": num_updates,
        "hidden_layer_sizes": list(algo.agent.hidden_layer_sizes),
        "loss": "optax.l2_loss mean (half squared TD error)",
        "eval": "single evaluation at the end (eval_freq=total_timesteps, "
                "skip_initial_evaluation=True): 128 episodes x <=500 steps, epsilon 0.005",
        "grad_clip": "optax.clip(inf) elementwise (none)",
        "replay_sampling": "jax.random.choice without replacement over the 10k slots",
    }
    rejax_run_all(algo, DQN, env_steps, args, extra)


if __name__ == "__main__":
    main()
