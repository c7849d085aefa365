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
"""

import argparse
import json
import statistics
import sys
import time


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def measure(fn, args_, steps, label, repeats):
    """Ahead-of-time compile `jit(fn)` for `args_`, then time `repeats` compiled calls."""
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args_)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args_))
        times.append(time.perf_counter() - t)
    best, med = min(times), statistics.median(times)
    res = {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "lower_compile_s": t2 - t0,
        "run_times_s": times,
        "run_best_s": best,
        "run_median_s": med,
        "env_steps": steps,
        "steps_per_s_best": steps / best,
        "steps_per_s_median": steps / med,
    }
    log(f"[peer] {label}: lower+compile {t2 - t0:.2f}s, run best {best:.2f}s "
        f"median {med:.2f}s -> {steps / med:,.0f} steps/s (median)")
    return res, out


def run_all(algo, cls, env_steps, args, extra):
    """1 seed, optionally `num_seeds` vmapped seeds and the no-eval variant; prints JSON."""
    import jax
    import numpy as np

    def train(algo, rng):
        return cls.train(algo, rng)

    results = {"jax_version": jax.__version__,
               "devices": [str(d) for d in jax.devices()], **extra}

    rng = jax.random.PRNGKey(0)
    res, (ts, evaluation) = measure(train, (algo, rng), env_steps, "1 seed", args.repeats)
    res["final_eval_return_mean"] = float(np.mean(evaluation[1]))
    res["global_step"] = int(ts.global_step)
    results["one_seed"] = res

    if args.num_seeds > 1:
        keys = jax.random.split(jax.random.PRNGKey(0), args.num_seeds)
        vtrain = jax.vmap(train, in_axes=(None, 0))
        res, (ts, evaluation) = measure(vtrain, (algo, keys), env_steps * args.num_seeds,
                                        f"{args.num_seeds} seeds", args.repeats_multi)
        res["final_eval_return_mean"] = float(np.mean(evaluation[1]))
        res["num_seeds"] = args.num_seeds
        results["multi_seed"] = res

    if args.no_eval_variant:
        algo_ne = algo.replace(eval_callback=lambda algo, ts, rng: ())
        res, _ = measure(train, (algo_ne, rng), env_steps, "1 seed, no eval", args.repeats)
        results["one_seed_no_eval"] = res

    print(json.dumps(results), flush=True)


def common_args(p):
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-seeds", type=int, default=1,
                   help="also measure this many vmapped seeds (>1 to enable)")
    p.add_argument("--repeats-multi", type=int, default=2,
                   help="timed calls of the multi-seed run")
    p.add_argument("--no-eval-variant", action="store_true",
                   help="also measure with eval_callback replaced by a no-op")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=500_000)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--learning-starts", type=int, default=10_000)
    common_args(p)
    args = p.parse_args()

    import flax.linen as nn
    import rejax
    from rejax import DQN
    from rejax.networks import DiscreteQNetwork, EpsilonGreedyPolicy

    n = args.num_envs
    total = (args.total_timesteps // n) * n
    algo = rejax.get_algo("dqn").create(
        env="CartPole-v1",
        num_envs=n,
        total_timesteps=total,
        eval_freq=total,
        skip_initial_evaluation=True,
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
        normalize_observations=False,
        normalize_rewards=False,
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
        "rejax_version": getattr(rejax, "__version__", "0.1.3"),
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
    run_all(algo, DQN, env_steps, args, extra)


if __name__ == "__main__":
    main()
