"""Worker-side helpers of the benches: timing of compiled JAX calls, logging, JSON output.

Imported by the peer workers (`bench/_rejax_peer.py`, `bench/_rejax_dqn_peer.py`,
`bench/_rejax_sac_peer.py`, `bench/_sb3_peer.py`), which run under other Python
environments (`bench/.peer-venv`, `bench/.sb3-venv`) as `python bench/_x.py`, so that
`bench/` is on `sys.path`; and by the `--worker` modes of `bench/ppo_cartpole.py`,
`bench/dqn_cartpole.py` and `bench/sac_pendulum.py`.  It therefore imports only the
standard library at module level; jax, numpy and rejax are imported inside the
functions that need them, which only JAX workers call.

A worker prints exactly one JSON line on stdout (`emit`, the last line) and everything
else on stderr (`log`); lines starting with `[peer]` are echoed by the orchestrating
script (`bench/_common.py: run_json`).

Timing of a JAX training function (`measure`; `measure_train` for a jaxrl agent's
vmapped `make_train`; `rejax_run_all` for the rejax peers): compile time = wall time of
`jax.jit(fn).lower(*args)` + `.compile()` (ahead of time, first compile in the process),
then `repeats` calls of the compiled function, each ended by `jax.block_until_ready`;
steady env steps/s = env steps of one call / median (and best) wall time of those calls.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def log(*a):
    """Print to stderr (stdout holds only the result's JSON line)."""
    print(*a, file=sys.stderr, flush=True)


def emit(results: dict) -> None:
    """Print the worker's result as the one JSON line on stdout."""
    print(json.dumps(results), flush=True)


def jax_devices() -> list:
    """The JAX devices of this process, e.g. `cpu:0 (cpu)`."""
    import jax

    return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]


def emit_with_devices(results: dict) -> None:
    """`emit` after adding `devices` (the benches' own `--worker` modes)."""
    results["devices"] = jax_devices()
    emit(results)


def run_stats(times: list, env_steps: int) -> dict:
    """Median and best of the timed runs and the env steps/s they give."""
    med, best = statistics.median(times), min(times)
    return {
        "run_times_s": times,
        "run_median_s": med,
        "run_best_s": best,
        "env_steps": env_steps,
        "steps_per_s_median": env_steps / med,
        "steps_per_s_best": env_steps / best,
    }


def measure(fn, args: tuple, env_steps: int, repeats: int, label: str | None = None):
    """Ahead-of-time compile `jax.jit(fn)` for `args`, then time `repeats` compiled calls.

    Returns (result dict, output of the last call).  With `label`, logs a `[peer]` line.
    """
    import jax

    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    res = {"lower_s": t1 - t0, "compile_s": t2 - t1, "lower_compile_s": t2 - t0,
           **run_stats(times, env_steps)}
    if label is not None:
        log(f"[peer] {label}: lower+compile {t2 - t0:.2f}s, run best "
            f"{res['run_best_s']:.2f}s median {res['run_median_s']:.2f}s -> "
            f"{res['steps_per_s_median']:,.0f} steps/s (median)")
    return res, out


def measure_train(agent, config, hparams, num_seeds: int, repeats: int,
                  steps_per_seed: int | None = None):
    """`measure` of a jaxrl agent: `runner.vmap_seeds(runner.make_train(agent, config), (0, None))`
    (a vmap, except at one seed) over `num_seeds` keys split from `jax.random.key(0)`, the
    same `hparams` for all.

    Env steps = `steps_per_seed` (default: `config.num_iterations * config.steps_per_iteration`)
    x `num_seeds`.  Returns (result dict with the run's shape, output of the last call).
    """
    import jax

    from jaxrl import runner

    # What `jaxrl train` runs: one seed unvmapped (like the peers' one-seed runs).
    fn = runner.vmap_seeds(runner.make_train(agent, config), (0, None))
    keys = jax.random.split(jax.random.key(0), num_seeds)
    if steps_per_seed is None:
        steps_per_seed = config.num_iterations * config.steps_per_iteration
    res, out = measure(fn, (keys, hparams), steps_per_seed * num_seeds, repeats)
    res.update(num_envs=config.num_envs, num_seeds=num_seeds,
               rollout_len=config.rollout_len, total_timesteps=config.total_timesteps)
    return res, out


# --------------------------------------------------------------------------------------
# rejax peers (bench/.peer-venv): the arguments and runs all three share.
# --------------------------------------------------------------------------------------


def rejax_args(p, repeats_multi: bool = True) -> None:
    """Add --repeats, --num-seeds, [--repeats-multi,] --no-eval-variant to parser `p`."""
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--num-seeds", type=int, default=1,
                   help="also measure this many vmapped seeds (>1 to enable)")
    if repeats_multi:
        p.add_argument("--repeats-multi", type=int, default=2,
                       help="timed calls of the multi-seed run")
    p.add_argument("--no-eval-variant", action="store_true",
                   help="also measure with eval_callback replaced by a no-op")


def rejax_create(name: str, total_timesteps: int, **fields):
    """`rejax.get_algo(name).create(...)` with exactly one evaluation, at the end
    (`eval_freq=total_timesteps`, `skip_initial_evaluation=True`), and no observation or
    reward normalisation; `fields` sets the rest."""
    import rejax

    return rejax.get_algo(name).create(
        total_timesteps=total_timesteps, eval_freq=total_timesteps,
        skip_initial_evaluation=True, normalize_observations=False,
        normalize_rewards=False, **fields)


def rejax_run_all(algo, cls, env_steps: int, args, extra: dict,
                  global_step: bool = True) -> None:
    """Time `cls.train(algo, rng)` at 1 seed, optionally at `args.num_seeds` vmapped seeds
    (`args.repeats_multi` calls, else `args.repeats`) and with the final evaluation
    replaced by a no-op; emit rejax's and jax's versions, the devices, `extra` and these
    results (`one_seed`, `multi_seed`, `one_seed_no_eval`)."""
    import jax
    import numpy as np
    import rejax

    def train(algo, rng):
        return cls.train(algo, rng)

    results = {"rejax_version": getattr(rejax, "__version__", "0.1.3"),
               "jax_version": jax.__version__,
               "devices": [str(d) for d in jax.devices()], **extra}
    repeats_multi = getattr(args, "repeats_multi", args.repeats)
    rng = jax.random.PRNGKey(0)
    res, (ts, evaluation) = measure(train, (algo, rng), env_steps, args.repeats, "1 seed")
    res["final_eval_return_mean"] = float(np.mean(evaluation[1]))
    if global_step:
        res["global_step"] = int(ts.global_step)
    results["one_seed"] = res

    if args.num_seeds > 1:
        keys = jax.random.split(jax.random.PRNGKey(0), args.num_seeds)
        vtrain = jax.vmap(train, in_axes=(None, 0))
        res, (ts, evaluation) = measure(vtrain, (algo, keys), env_steps * args.num_seeds,
                                        repeats_multi, f"{args.num_seeds} seeds")
        res["final_eval_return_mean"] = float(np.mean(evaluation[1]))
        res["num_seeds"] = args.num_seeds
        results["multi_seed"] = res

    if args.no_eval_variant:
        algo_ne = algo.replace(eval_callback=lambda algo, ts, rng: ())
        res, _ = measure(train, (algo_ne, rng), env_steps, args.repeats, "1 seed, no eval")
        results["one_seed_no_eval"] = res

    emit(results)
