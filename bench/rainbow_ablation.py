"""Rainbow ablation on CartPole-v1: the full preset and the preset minus each component.

Every variant is `jaxrl.agents.dqn.RainbowConfig` (double, dueling, prioritized, 3-step,
noisy, C51, constant learning rate) with one component switched off:

  full             the preset as it is
  no_double        double=False (the target net picks and evaluates the bootstrap action)
  no_dueling       dueling=False (a plain head)
  no_prioritized   prioritized=False (uniform replay, unit weights)
  n_step_1         n_step=1 (one-step targets)
  no_noisy         noisy=False (exploration `auto` then acts epsilon-greedily, 1 -> 0.05
                   over half the run, as in the paper's ablation)
  no_distributional  distributional=False (scalar Q-values, squared TD error)

Each variant trains `--num-seeds` vmapped seeds (base seed `--seed`) for `--total-timesteps`
env steps per seed through `jaxrl.testing.learning_check`, i.e. the same host loop as
`jaxrl train` and the slow learning check, and reports the CLI's final return per seed
(mean return of the training episodes completed in the last 5% of iterations). Wall s is
the whole `learning_check` call (compilation included), timed in the variant's own
subprocess: variants run one after another, never concurrently, so one variant's
compilation caches and thread pools cannot affect another's time, and a variant that
hangs (XLA:CPU has deadlocked vmapped runs here, see bench/RESULTS.md) is stopped after
`--timeout` seconds and reported as such instead of stalling the table.

Run (CPU, from the repository root; 40-55 minutes on our shared 2-core machine):

    nice -n 5 .venv/bin/python bench/rainbow_ablation.py --json-out runs/rainbow_ablation.json

`--variants full no_noisy` runs a subset; `--worker VARIANT` is the subprocess mode (one
JSON line on stdout), not meant to be used by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

VARIANTS: dict[str, dict] = {
    "full": {},
    "no_double": {"double": False},
    "no_dueling": {"dueling": False},
    "no_prioritized": {"prioritized": False},
    "n_step_1": {"n_step": 1},
    "no_noisy": {"noisy": False},
    "no_distributional": {"distributional": False},
}


def run_variant(name: str, total_timesteps: int, num_seeds: int, seed: int) -> dict:
    """Train one variant in this process and return its per-seed final returns and time."""
    import jax
    import numpy as np

    from jaxrl.agents import dqn
    from jaxrl.testing import learning_check

    config = dqn.RainbowConfig(env="CartPole-v1", total_timesteps=total_timesteps,
                               **VARIANTS[name])
    t0 = time.perf_counter()
    per_seed = learning_check(dqn.RAINBOW_AGENT, config, dqn.HParams.create(),
                              num_seeds=num_seeds, seed=seed)
    wall = time.perf_counter() - t0
    per_seed = np.asarray(per_seed, np.float64)
    return {"variant": name, "overrides": VARIANTS[name],
            "per_seed_final_return": [None if np.isnan(r) else float(r) for r in per_seed],
            "mean_final_return": float(np.nanmean(per_seed)), "wall_s": wall,
            "env_steps_per_seed": config.num_iterations * config.steps_per_iteration,
            "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}


def _table(rows: list[dict]) -> str:
    lines = ["| variant | per-seed final return | mean | wall s |",
             "| --- | --- | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['error']} | — | {r['wall_s']:.0f} |")
            continue
        per_seed = ", ".join("nan" if x is None else f"{x:.1f}"
                             for x in r["per_seed_final_return"])
        lines.append(f"| {r['variant']} | {per_seed} | {r['mean_final_return']:.1f} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=int, default=300_000)
    parser.add_argument("--num-seeds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds before a variant's subprocess is stopped")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--worker", choices=list(VARIANTS), default=None)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_variant(args.worker, args.total_timesteps, args.num_seeds,
                                     args.seed)), flush=True)
        return

    rows = []
    t_all = time.perf_counter()
    for name in args.variants:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name,
               "--total-timesteps", str(args.total_timesteps),
               "--num-seeds", str(args.num_seeds), "--seed", str(args.seed)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            row = {"variant": name, "error": f"stopped after {args.timeout:.0f} s",
                   "wall_s": time.perf_counter() - t0}
        else:
            results = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode or not results:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                row = {"variant": name, "error": f"exit {proc.returncode}: {tail[0][:120]}",
                       "wall_s": time.perf_counter() - t0}
            else:
                row = json.loads(results[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)

    total = time.perf_counter() - t_all
    print()
    print(f"Rainbow ablation, CartPole-v1, {args.total_timesteps:,} env steps per seed, "
          f"{args.num_seeds} vmapped seeds (seed {args.seed}); total {total:.0f} s")
    print()
    print(_table(rows))
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump({"env": "CartPole-v1", "total_timesteps": args.total_timesteps,
                       "num_seeds": args.num_seeds, "seed": args.seed,
                       "machine": platform.platform(), "processor": platform.processor(),
                       "cpu_count": os.cpu_count(), "total_wall_s": total, "rows": rows},
                      f, indent=2)


if __name__ == "__main__":
    main()
