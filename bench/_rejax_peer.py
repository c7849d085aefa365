"""Peer measurement: rejax 0.1.3 PPO on gymnax CartPole-v1 (PureJaxRL config).

Run by `bench/ppo_cartpole.py` with the python of `bench/.peer-venv` (rejax 0.1.3,
gymnax 0.0.9, jax 0.10.2), in its own process.  Prints exactly one JSON line on
stdout (the last line); everything else goes to stderr.

    bench/.peer-venv/bin/python bench/_rejax_peer.py --total-timesteps 500000 --repeats 3

What is configured, and how (field names read from rejax 0.1.3's source):
  * `PPO.create(env="CartPole-v1", num_envs=4, num_steps=128, num_epochs=4,
    num_minibatches=4, learning_rate=2.5e-4, gamma=0.99, gae_lambda=0.95,
    clip_eps=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
    agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})`.
  * rejax 0.1.3 has NO learning-rate annealing: `initialize_network_params` builds
    `optax.chain(optax.clip(max_grad_norm), optax.adam(learning_rate))` with a constant
    rate.  Note also that `optax.clip` clips each gradient element to
    [-max_grad_norm, max_grad_norm]; it is not PureJaxRL's `clip_by_global_norm`.
    Actor and critic are separate networks with separate Adam states and separate
    `jax.grad` calls (PureJaxRL: one ActorCritic, one loss).
  * Evaluation: `OnPolicyMixin.train` runs `ceil(total_timesteps / eval_freq)`
    outer scan steps, each doing `ceil(eval_freq / (num_envs*num_steps))` train
    iterations (a fori_loop) followed by `eval_callback` (128 episodes, greedy-free
    sampling policy, while_loop up to 500 steps).  An initial evaluation runs too
    unless `skip_initial_evaluation=True`.  We set `eval_freq = total_timesteps`
    and `skip_initial_evaluation=True`, so there is exactly one evaluation, at the
    end.  total_timesteps is rounded down to a multiple of 512 (=4*128) so the
    number of updates equals PureJaxRL's `total_timesteps // (num_envs*num_steps)`
    (976 for 5e5); rejax would otherwise do ceil(...) = 977.
  * The jitted function is `PPO.train(algo, rng)` with `algo` passed as a pytree
    argument (its scalar hyperparameters are traced leaves, like our `hparams`).
  * Timing (`_peer_common.measure`, run by `_peer_common.rejax_run_all`): ahead-of-time
    compile, then `--repeats` compiled calls (also for the vmapped seeds).
"""

import argparse

from _peer_common import rejax_args, rejax_create, rejax_run_all


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=500_000)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--num-steps", type=int, default=128)
    rejax_args(p, repeats_multi=False)
    args = p.parse_args()

    import numpy as np
    from rejax import PPO

    batch = args.num_envs * args.num_steps
    total = (args.total_timesteps // batch) * batch
    num_updates = total // batch

    algo = rejax_create(
        "ppo", total,
        env="CartPole-v1",
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_epochs=4,
        num_minibatches=4,
        learning_rate=2.5e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)},
    )
    # Sanity: the schedule rejax will actually run.
    num_evals = int(np.ceil(algo.total_timesteps / algo.eval_freq))
    iters_per_eval = int(np.ceil(algo.eval_freq / batch))
    env_steps = num_evals * iters_per_eval * batch
    assert num_evals == 1 and iters_per_eval == num_updates, (num_evals, iters_per_eval)

    extra = {
        "num_envs": args.num_envs,
        "num_steps": args.num_steps,
        "num_updates": num_updates,
        "total_timesteps": total,
        "anneal_lr": False,
        "anneal_lr_note": "rejax 0.1.3 PPO uses a constant learning rate (no schedule option)",
        "eval": "single evaluation at the end (eval_freq=total_timesteps, "
                "skip_initial_evaluation=True): 128 episodes x <=500 steps",
        "grad_clip": "optax.clip(0.5) elementwise (not clip_by_global_norm)",
    }

    rejax_run_all(algo, PPO, env_steps, args, extra, global_step=False)


if __name__ == "__main__":
    main()
