"""SAC on Pendulum-v1: speed of jaxrl against rejax (JAX) and Stable-Baselines3 (PyTorch).

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.  It follows
`bench/ppo_cartpole.py` and `bench/dqn_cartpole.py`, with the helpers they share in
`bench/_common.py` (venvs, subprocesses, report) and `bench/_peer_common.py` (timing of
compiled calls, JSON output of workers).

Configuration (the same for every system): 1 env, `--total-timesteps` env steps per
seed (default 1e4 for ours and rejax, `--sb3-total-timesteps` 5e3 for SB3: a shorter
budget than a 1e5 learning run, because one SAC update costs 10-30 ms on these cores
for every system, so 1e5 steps would take about an hour per timed call; steady steps/s
is a rate, and SB3's excludes its warm-up), replay buffer 1e5 transitions, batch 256,
learning starts after 1000 env steps, one gradient step per env step, 256x256 ReLU
actor (tanh-squashed Gaussian) and twin critics (`--hidden 64,64`: jaxrl's default size,
for all three systems), Adam 3e-4 for actor, critics and temperature, gamma 0.99, Polyak
tau 0.005 after every update, automatic entropy temperature from alpha 1 toward target
entropy -1 (= -dim A).

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
           available"): `jax.jit(jax.vmap(runner.make_train(sac, config), (0, None)))` over
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
    .venv/bin/python bench/sac_pendulum.py --hidden 64,64 --json-out runs/bench_sac64.json

The script re-invokes itself with `--worker jaxrl` for our subprocesses; that mode
prints one JSON line and is not meant to be used by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from _common import (  # noqa: E402 - driver-side helpers shared by the benches
    add_driver_args,
    begin_results,
    end_results,
    get,
    multi_seed_ratios,
    one_seed,
    print_report,
    ratio,
    run_header,
    run_json,
    run_rejax,
    run_sb3,
    sb3_versions,
    table_row,
    timing_footer,
    worker_cmd,
    write_json,
)
from _peer_common import emit_with_devices, measure_train  # noqa: E402 - worker side

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
                  learning_starts: int, buffer_size: int, hidden: str = "256,256") -> dict:
    """Compile time and steady env steps/s of jaxrl SAC, `num_seeds` seeds vmapped."""
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
        hidden_sizes=tuple(int(w) for w in hidden.split(",")),
        activation="relu",
        **{k: v for k, v in OPTIONAL_CONFIG.items() if k in config_fields},
    )
    hp_values = {"learning_rate": 3e-4, "gamma": 0.99, "tau": 0.005,
                 **{k: v for k, v in OPTIONAL_HPARAMS.items() if k in hparam_fields}}
    hparams = sac.HParams.create(**hp_values)
    res, (_, metrics) = measure_train(sac, config, hparams, num_seeds, repeats)
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
    p.add_argument("--hidden", default="256,256",
                   help="hidden widths of actor and critics, for all three systems "
                        "(jaxrl's SAC default is 64,64)")
    add_driver_args(p, skip=("rejax", "sb3", "ours"))
    args = p.parse_args()

    if args.worker == "jaxrl":
        emit_with_devices(measure_jaxrl(args.num_seeds, args.total_timesteps,
                                        args.rollout_len, args.repeats,
                                        args.learning_starts, args.buffer_size,
                                        args.hidden))
        return

    machine, results = begin_results(args)
    T, LS, B, S = args.total_timesteps, args.learning_starts, args.buffer_size, args.num_seeds_multi
    sb3_T = args.sb3_total_timesteps
    peers = results["peers"] = {}

    if not args.skip_rejax:
        extra = ["--total-timesteps", str(T), "--learning-starts", str(LS),
                 "--buffer-size", str(B), "--num-envs", str(NUM_ENVS),
                 "--repeats", str(args.repeats), "--num-seeds", str(S),
                 "--repeats-multi", str(args.repeats_multi),
                 "--buffer-variant", str(args.rejax_buffer_variant), "--hidden", args.hidden]
        if args.rejax_no_eval_variant:
            extra.append("--no-eval-variant")
        peers["rejax"] = run_rejax(REJAX_SCRIPT, extra, args.timeout,
                                   "peer: rejax 0.1.3 SAC")
    if not args.skip_sb3:
        peers["sb3"] = run_sb3("sac", sb3_T, LS, B, NUM_ENVS, args.sb3_repeats, args.timeout,
                               f"peer: Stable-Baselines3 SAC, {sb3_T} steps "
                               f"(learning_starts {LS})", hidden=args.hidden)

    ours = results["ours"] = {}
    if not args.skip_ours:
        ours["one_seed"] = run_json(
            worker_cmd(__file__, "jaxrl", num_seeds=1, total_timesteps=T,
                       learning_starts=LS, buffer_size=B, rollout_len=args.rollout_len,
                       repeats=args.repeats, hidden=args.hidden),
            "ours: jaxrl SAC, 1 seed", args.timeout)
        if S > 1 and "unavailable" not in ours["one_seed"] and "error" not in ours["one_seed"]:
            ours["multi_seed"] = run_json(
                worker_cmd(__file__, "jaxrl", num_seeds=S, total_timesteps=T,
                           learning_starts=LS, buffer_size=B, rollout_len=args.rollout_len,
                           repeats=args.repeats_multi, hidden=args.hidden),
                f"ours: jaxrl SAC, {S} seeds vmapped", args.timeout)
    end_results(results)

    rejax, sb3 = peers.get("rejax"), peers.get("sb3")
    ours1, oursN = ours.get("one_seed"), ours.get("multi_seed")
    unavailable = get(ours1, "unavailable")
    results["devices"] = get(ours1, "devices")
    rejax1 = one_seed(rejax)
    rows: list = []
    table_row("rejax SAC, 1 env, 1 seed (eval at end)", rejax1, rows)
    table_row("rejax SAC, 1 env, 1 seed (no eval)", get(rejax, "one_seed_no_eval"), rows)
    table_row(f"rejax SAC, 1 env, 1 seed, buffer {args.rejax_buffer_variant:,}",
              get(rejax, "one_seed_buffer_variant"), rows)
    table_row(f"rejax SAC, 1 env, {S} seeds (eval at end)", get(rejax, "multi_seed"), rows)
    table_row(f"SB3 SAC, 1 env, learning phase of {sb3_T:,}", sb3, rows)
    if unavailable:
        rows.append(("ours jaxrl SAC", "n/a", "n/a", "n/a", "not available: " + unavailable))
    else:
        table_row("ours jaxrl SAC, 1 env, 1 seed", ours1, rows)
        table_row(f"ours jaxrl SAC, 1 env, {S} seeds", oursN, rows)

    v = lambda r: get(r, "steps_per_s_median")  # noqa: E731
    ratios = {
        "ours/rejax steady steps/s, 1 seed (target >= 1.5)": ratio(v(ours1), v(rejax1)),
        f"ours/rejax with buffer {args.rejax_buffer_variant:,} (rejax sampling cheaper)":
            ratio(v(ours1), v(get(rejax, "one_seed_buffer_variant"))),
        "ours/SB3 steady steps/s, SB3 learning phase only (target >= 10)":
            ratio(v(ours1), v(sb3)),
        "ours compile / rejax compile (1 seed)":
            ratio(get(ours1, "lower_compile_s"), get(rejax1, "lower_compile_s")),
    }
    if args.rejax_no_eval_variant:
        ratios["ours/rejax-without-final-eval steady steps/s (stricter)"] = \
            ratio(v(ours1), v(get(rejax, "one_seed_no_eval")))
    ratios.update(multi_seed_ratios(S, ours1, oursN, rejax, rejax1))
    results["ratios"] = ratios
    header = run_header(results)
    header.append(f"budget: {T:,} env steps per seed (SB3 {sb3_T:,}), learning_starts "
                  f"{LS:,}, buffer {B:,}, hidden {args.hidden}")
    if rejax is not None and "error" not in rejax:
        header.append(f"rejax {rejax.get('rejax_version')}, jax {rejax.get('jax_version')}: "
                      f"{rejax.get('num_updates'):,} updates; {rejax.get('replay_sampling')}")
    if sb3 is not None and "error" not in sb3:
        header.append(sb3_versions(sb3))
    if unavailable:
        header.append("ours: not available (" + unavailable + ")")
    print_report(machine, results, rows, ratios, header, timing_footer(args, S))
    write_json(results, args.json_out)


if __name__ == "__main__":
    main()
