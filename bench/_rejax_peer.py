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
"""

import argparse
import json
import statistics
import sys
import time


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=500_000)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-seeds", type=int, default=1,
                   help="also measure this many vmapped seeds (>1 to enable)")
    p.add_argument("--no-eval-variant", action="store_true",
                   help="also measure with eval_callback replaced by a no-op")
    args = p.parse_args()

    import jax
    import numpy as np
    import rejax
    from rejax import PPO

    batch = args.num_envs * args.num_steps
    total = (args.total_timesteps // batch) * batch
    num_updates = total // batch

    algo = rejax.get_algo("ppo").create(
        env="CartPole-v1",
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_epochs=4,
        num_minibatches=4,
        total_timesteps=total,
        eval_freq=total,
        skip_initial_evaluation=True,
        learning_rate=2.5e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        normalize_observations=False,
        normalize_rewards=False,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)},
    )
    # Sanity: the schedule rejax will actually run.
    num_evals = int(np.ceil(algo.total_timesteps / algo.eval_freq))
    iters_per_eval = int(np.ceil(algo.eval_freq / batch))
    env_steps = num_evals * iters_per_eval * batch
    assert num_evals == 1 and iters_per_eval == num_updates, (num_evals, iters_per_eval)

    def measure(fn, args_, steps, label):
        t0 = time.perf_counter()
        lowered = jax.jit(fn).lower(*args_)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        times = []
        out = None
        for _ in range(args.repeats):
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

    def train(algo, rng):
        return PPO.train(algo, rng)

    results = {
        "rejax_version": getattr(rejax, "__version__", "0.1.3"),
        "jax_version": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
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

    rng = jax.random.PRNGKey(0)
    res, (ts, evaluation) = measure(train, (algo, rng), env_steps, "1 seed")
    lengths, returns = evaluation
    res["final_eval_return_mean"] = float(np.mean(returns))
    results["one_seed"] = res

    if args.num_seeds > 1:
        keys = jax.random.split(jax.random.PRNGKey(0), args.num_seeds)
        vtrain = jax.vmap(train, in_axes=(None, 0))
        res, (ts, evaluation) = measure(
            vtrain, (algo, keys), env_steps * args.num_seeds, f"{args.num_seeds} seeds")
        res["final_eval_return_mean"] = float(np.mean(evaluation[1]))
        res["num_seeds"] = args.num_seeds
        results["multi_seed"] = res

    if args.no_eval_variant:
        algo_ne = algo.replace(eval_callback=lambda algo, ts, rng: ())
        res, _ = measure(train, (algo_ne, rng), env_steps, "1 seed, no eval")
        results["one_seed_no_eval"] = res

    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
