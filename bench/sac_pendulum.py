"""SAC on Pendulum-v1: speed of jaxrl against rejax (JAX) and Stable-Baselines3 (PyTorch).

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.  It follows
`bench/ppo_cartpole.py` and `bench/dqn_cartpole.py` (and imports their helpers).

Configuration (the same for every system): 1 env, `--total-timesteps` env steps per
seed (default 1e4 for ours and rejax, `--sb3-total-timesteps` 5e3 for SB3: a shorter
budget than a 1e5 learning run, because one SAC update costs 10-30 ms on these cores
for every system, so 1e5 steps would take about an hour per timed call; steady steps/s
is a rate, and SB3's excludes its warm-up), replay buffer 1e5 transitions, batch 256,
learning starts after 1000 env steps, one gradient step per env step, 256x256 ReLU
actor (tanh-squashed Gaussian) and twin critics, Adam 3e-4 for actor, critics and
temperature, gamma 0.99, Polyak tau 0.005 after every update, automatic entropy
temperature from alpha 1 toward target entropy -1 (= -dim A).

What is measured (each in its own subprocess):

  REJAX    rejax 0.1.3 SAC in `bench/.peer-venv` (created on first use), run by
           `bench/_rejax_sac_peer.py`, which documents every field set and why; one
           evaluation at the end only, 1 seed, and 1 seed with a 2e4 buffer (rejax's
           sampling cost grows with the allocated buffer).  Optional: the run without
           its final evaluation (`--rejax-no-eval-variant`; the evaluation is 128 x 200
           actor steps, under 1% of a 1e4-step run) and `--num-seeds-multi 8` vmapped
           seeds for rejax and ours (off by default: 8 x 1e4 updates take over 20
           minutes per timed call on 2 cores).
  SB3      Stable-Baselines3 SAC, PyTorch on CPU (one torch thread), gymnasium
           Pendulum-v1, in `bench/.sb3-venv` (created on first use), run by
           `bench/_sb3_peer.py`; steady steps/s = env steps after learning_starts / wall
           time of that phase (warm-up of random actions without updates excluded),
           median over `--sb3-repeats` runs.
  OURS     `jaxrl.agents.REGISTRY["sac"]` if it exists (else reported as "not
           available"): `jax.jit(jax.vmap(sac.make_train(config), (0, None)))` over
           seeds, 1 seed (and `--num-seeds-multi`), with the fields above
           (`rollout_len=1000`: one logged row per 1000 steps) and, where the agent has them,
           `target_update_period=1`, `num_critics=2`, `autotune_alpha=True`,
           `actor_learning_rate=3e-4` and initial `alpha=1.0`.

For the JAX runs: compile time = `jit(f).lower(...)` + `.compile()` in a fresh process,
steady env steps/s = env steps of one call (all seeds) / median wall time of
already-compiled calls ended by `jax.block_until_ready`.  The JAX rates include the
warm-up (10% of a 1e4-step run): rejax skips updates there (a real `lax.cond` at one
seed), while ours computes and discards them (under `vmap`, even over one seed, the
learning `lax.cond` becomes a select), which costs ours up to that 10%.

Ratios printed at the end (targets in brackets):
  ours / rejax steady steps/s                      [>= 1.5]
  ours / SB3 steady steps/s (SB3 learning phase)   [>= 10]

Run (CPU, from the repository root):

    .venv/bin/python bench/sac_pendulum.py --json-out runs/bench_sac_cpu.json

The script re-invokes itself with `--worker jaxrl` for our subprocesses; that mode
prints one JSON line and is not meant to be used by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from dqn_cartpole import (  # noqa: E402 - shared helpers of the DQN bench
    _loadavg,
    git_state,
    print_report,
    run_rejax,
    run_sb3,
    table_row,
    write_json,
)
from ppo_cartpole import (  # noqa: E402
    _devices,
    _get,
    _ratio,
    _run_json,
    _summary,
    _time_compiled,
    machine_info,
)

REJAX_SCRIPT = BENCH_DIR / "_rejax_sac_peer.py"
NUM_ENVS = 1
ROLLOUT_LEN = 1000
TOTAL_TIMESTEPS = 10_000
SB3_TOTAL_TIMESTEPS = 5_000
LEARNING_STARTS = 1000
BUFFER_SIZE = 100_000
NUM_SEEDS_MULTI = 1

# Set on our SAC when its Config / HParams have the field (the API is still settling).
OPTIONAL_CONFIG = {"target_update_period": 1, "num_critics": 2, "autotune_alpha": True,
                   "policy_delay": 1, "n_step": 1, "normalize_obs": False}
OPTIONAL_HPARAMS = {"actor_learning_rate": 3e-4, "alpha": 1.0, "max_grad_norm": 1000.0}


def measure_jaxrl(num_seeds: int, total_timesteps: int, rollout_len: int, repeats: int,
                  learning_starts: int, buffer_size: int) -> dict:
    """Compile time and steady env steps/s of jaxrl SAC, `num_seeds` seeds vmapped."""
    import jax
    import numpy as np
    from jaxrl.agents import REGISTRY

    if "sac" not in REGISTRY:
        return {"unavailable": f"'sac' is not in jaxrl.agents.REGISTRY ({sorted(REGISTRY)})"}
    sac = REGISTRY["sac"]
    config_fields = {f.name for f in dataclasses.fields(sac.Config)}
    hparam_fields = {f.name for f in dataclasses.fields(sac.HParams)}
    config = sac.Config(
        env="Pendulum-v1",
        num_envs=NUM_ENVS,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        buffer_size=buffer_size,
        minibatch_size=256,
        learning_starts=learning_starts,
        train_frequency=1,
        gradient_steps=1,
        hidden_sizes=(256, 256),
        activation="relu",
        **{k: v for k, v in OPTIONAL_CONFIG.items() if k in config_fields},
    )
    hp_values = {"learning_rate": 3e-4, "gamma": 0.99, "tau": 0.005,
                 **{k: v for k, v in OPTIONAL_HPARAMS.items() if k in hparam_fields}}
    hparams = sac.HParams.create(**hp_values)
    fn = jax.jit(jax.vmap(sac.make_train(config), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), num_seeds)

    t0 = time.perf_counter()
    lowered = fn.lower(keys, hparams)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    out = [None]

    def call():
        out[0] = compiled(keys, hparams)  # kept to read the final returns
        return out[0]

    times = _time_compiled(call, repeats)
    steps_per_seed = config.num_iterations * config.batch_size
    res = _summary(t1 - t0, t2 - t1, times, steps_per_seed * num_seeds)
    metrics = out[0][1]
    returns = np.asarray(metrics.get("episode/return", np.full((1, 1), np.nan)))
    res.update(
        num_envs=NUM_ENVS,
        num_seeds=num_seeds,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        num_iterations=config.num_iterations,
        num_updates=getattr(config, "num_updates", None),
        final_train_return_mean=float(np.nanmean(returns[:, -1:])),
        config={k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(config).items()},
        hparams_set=hp_values,
        config_fields_missing=sorted(set(OPTIONAL_CONFIG) - config_fields),
        hparam_fields_missing=sorted(set(OPTIONAL_HPARAMS) - hparam_fields),
    )
    return res


def _worker_cmd(**kw) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "jaxrl"]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--total-timesteps", type=int, default=TOTAL_TIMESTEPS,
                   help="per seed, for ours and rejax")
    p.add_argument("--learning-starts", type=int, default=LEARNING_STARTS)
    p.add_argument("--buffer-size", type=int, default=BUFFER_SIZE)
    p.add_argument("--rejax-buffer-variant", type=int, default=20_000,
                   help="also time rejax (1 seed) with this buffer size (0: off)")
    p.add_argument("--rollout-len", type=int, default=ROLLOUT_LEN,
                   help="ours: env steps per iteration (logging granularity)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls at 1 seed")
    p.add_argument("--repeats-multi", type=int, default=1,
                   help="timed calls of the multi-seed runs")
    p.add_argument("--num-seeds-multi", type=int, default=NUM_SEEDS_MULTI,
                   help="vmapped seeds of the multi-seed runs (1 = skip them)")
    p.add_argument("--rejax-no-eval-variant", action="store_true",
                   help="also time rejax (1 seed) without its final evaluation")
    p.add_argument("--sb3-total-timesteps", type=int, default=SB3_TOTAL_TIMESTEPS)
    p.add_argument("--sb3-repeats", type=int, default=2)
    p.add_argument("--skip-rejax", action="store_true")
    p.add_argument("--skip-sb3", action="store_true")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="per subprocess, seconds")
    p.add_argument("--json-out", type=str, default=None)
    p.add_argument("--worker", choices=["jaxrl"], help=argparse.SUPPRESS)
    p.add_argument("--num-seeds", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker == "jaxrl":
        res = measure_jaxrl(args.num_seeds, args.total_timesteps, args.rollout_len,
                            args.repeats, args.learning_starts, args.buffer_size)
        res["devices"] = _devices()
        print(json.dumps(res), flush=True)
        return

    machine = machine_info()
    print("machine:", json.dumps(machine), flush=True)
    T, LS, B, S = args.total_timesteps, args.learning_starts, args.buffer_size, args.num_seeds_multi
    sb3_T = args.sb3_total_timesteps
    results: dict = {"machine": machine, "args": vars(args), "loadavg_before": _loadavg(),
                     "command": " ".join(shlex.quote(a) for a in sys.argv),
                     "git": git_state()}
    peers = results["peers"] = {}

    if not args.skip_rejax:
        extra = ["--total-timesteps", str(T), "--learning-starts", str(LS),
                 "--buffer-size", str(B), "--num-envs", str(NUM_ENVS),
                 "--repeats", str(args.repeats), "--num-seeds", str(S),
                 "--repeats-multi", str(args.repeats_multi),
                 "--buffer-variant", str(args.rejax_buffer_variant)]
        if args.rejax_no_eval_variant:
            extra.append("--no-eval-variant")
        peers["rejax"] = run_rejax(REJAX_SCRIPT, extra, args.timeout,
                                   "peer: rejax 0.1.3 SAC")
    if not args.skip_sb3:
        peers["sb3"] = run_sb3("sac", sb3_T, LS, B, NUM_ENVS, args.sb3_repeats, args.timeout,
                               f"peer: Stable-Baselines3 SAC, {sb3_T} steps "
                               f"(learning_starts {LS})")

    ours = results["ours"] = {}
    if not args.skip_ours:
        ours["one_seed"] = _run_json(
            _worker_cmd(num_seeds=1, total_timesteps=T, learning_starts=LS, buffer_size=B,
                        rollout_len=args.rollout_len, repeats=args.repeats),
            "ours: jaxrl SAC, 1 seed", args.timeout)
        if S > 1 and "unavailable" not in ours["one_seed"] and "error" not in ours["one_seed"]:
            ours["multi_seed"] = _run_json(
                _worker_cmd(num_seeds=S, total_timesteps=T, learning_starts=LS,
                            buffer_size=B, rollout_len=args.rollout_len,
                            repeats=args.repeats_multi),
                f"ours: jaxrl SAC, {S} seeds vmapped", args.timeout)
    results["loadavg_after"] = _loadavg()
    results["git_after"] = git_state()

    rejax, sb3 = peers.get("rejax"), peers.get("sb3")
    ours1, oursN = ours.get("one_seed"), ours.get("multi_seed")
    unavailable = _get(ours1, "unavailable")
    results["devices"] = _get(ours1, "devices")
    rejax1 = rejax if rejax is not None and "error" in rejax else _get(rejax, "one_seed")
    rows: list = []
    table_row("rejax SAC, 1 env, 1 seed (eval at end)", rejax1, rows)
    table_row("rejax SAC, 1 env, 1 seed (no eval)", _get(rejax, "one_seed_no_eval"), rows)
    table_row(f"rejax SAC, 1 env, 1 seed, buffer {args.rejax_buffer_variant:,}",
              _get(rejax, "one_seed_buffer_variant"), rows)
    table_row(f"rejax SAC, 1 env, {S} seeds (eval at end)", _get(rejax, "multi_seed"), rows)
    table_row(f"SB3 SAC, 1 env, learning phase of {sb3_T:,}", sb3, rows)
    if unavailable:
        rows.append(("ours jaxrl SAC", "n/a", "n/a", "n/a", "not available: " + unavailable))
    else:
        table_row("ours jaxrl SAC, 1 env, 1 seed", ours1, rows)
        table_row(f"ours jaxrl SAC, 1 env, {S} seeds", oursN, rows)

    v = lambda r: _get(r, "steps_per_s_median")  # noqa: E731
    ratios = {
        "ours/rejax steady steps/s, 1 seed (target >= 1.5)": _ratio(v(ours1), v(rejax1)),
        f"ours/rejax with buffer {args.rejax_buffer_variant:,} (rejax sampling cheaper)":
            _ratio(v(ours1), v(_get(rejax, "one_seed_buffer_variant"))),
        "ours/SB3 steady steps/s, SB3 learning phase only (target >= 10)":
            _ratio(v(ours1), v(sb3)),
        "ours compile / rejax compile (1 seed)":
            _ratio(_get(ours1, "lower_compile_s"), _get(rejax1, "lower_compile_s")),
    }
    if args.rejax_no_eval_variant:
        ratios["ours/rejax-without-final-eval steady steps/s (stricter)"] = \
            _ratio(v(ours1), v(_get(rejax, "one_seed_no_eval")))
    if S > 1:
        ratios.update({
            f"ours/rejax steady steps/s, {S} seeds":
                _ratio(v(oursN), v(_get(rejax, "multi_seed"))),
            f"ours time {S} seeds / 1 seed": _ratio(_get(oursN, "run_median_s"),
                                                    _get(ours1, "run_median_s")),
            f"rejax time {S} seeds / 1 seed": _ratio(_get(rejax, "multi_seed", "run_median_s"),
                                                     _get(rejax1, "run_median_s")),
        })
    results["ratios"] = ratios
    header = [f"budget: {T:,} env steps per seed (SB3 {sb3_T:,}), learning_starts {LS:,}, "
              f"buffer {B:,}"]
    if rejax is not None and "error" not in rejax:
        header.append(f"rejax {rejax.get('rejax_version')}, jax {rejax.get('jax_version')}: "
                      f"{rejax.get('num_updates'):,} updates; {rejax.get('replay_sampling')}")
    if sb3 is not None and "error" not in sb3:
        header.append(f"SB3 {sb3.get('sb3_version')}, torch {sb3.get('torch_version')} "
                      f"({sb3.get('torch_threads')} thread), gymnasium "
                      f"{sb3.get('gymnasium_version')}")
    if unavailable:
        header.append("ours: not available (" + unavailable + ")")
    footer = ("compile s = jit(f).lower() + .compile(); run s = median of the timed compiled "
              f"calls ({args.repeats} at 1 seed"
              + (f", {args.repeats_multi} at {S} seeds" if S > 1 else "") + "); SB3: run "
              f"s = median over {args.sb3_repeats} runs of its learning phase only; steps/s "
              "= env steps (all seeds) / run s")
    print_report(machine, results, rows, ratios, header, footer)
    write_json(results, args.json_out)


if __name__ == "__main__":
    main()
