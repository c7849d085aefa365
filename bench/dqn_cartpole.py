"""DQN on CartPole-v1: speed of jaxrl against rejax (JAX) and Stable-Baselines3 (PyTorch).

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.  It follows
`bench/ppo_cartpole.py`; the helpers they share live in `bench/_common.py` (venvs,
subprocesses, report) and `bench/_peer_common.py` (timing of compiled calls, JSON output
of workers).

Configuration (PureJaxRL's DQN CartPole config; the same for every system): 10 envs,
5e5 env steps, replay 10k transitions, batch 128, learning starts after 10k env steps,
one gradient step per step of the 10 vectorised envs (one update per 10 transitions),
target network hard-copied every 500 env steps (= 50 updates), epsilon 1 -> 0.05 linearly
over 25e4 env steps, Adam lr 2.5e-4 constant, gamma 0.99, 120-84 ReLU MLP, half squared
TD error (SB3: Huber, which it does not let one change).

What is measured (each in its own subprocess):

  REJAX    rejax 0.1.3 DQN (PyPI) in `bench/.peer-venv` (created here on first use:
           `pip install rejax==0.1.3 gymnax==0.0.9 jax==0.10.2`), run by
           `bench/_rejax_dqn_peer.py`, which documents every field set and why; one
           evaluation at the end only (and once with it removed), 1 seed and 8 vmapped
           seeds.  Compile and steady steps/s exactly as for ours.
  SB3      Stable-Baselines3 DQN, PyTorch on CPU (one torch thread), gymnasium
           CartPole-v1 with 10 envs in a DummyVecEnv, in `bench/.sb3-venv` (created here
           on first use: stable-baselines3, gymnasium and a CPU-only torch), run by
           `bench/_sb3_peer.py`.  SB3 is slow, so it runs a shorter budget,
           `--sb3-total-timesteps` (5e4) with learning_starts scaled by the same factor
           (1e3) and the epsilon decay over half of that budget (its
           exploration_fraction is relative to the budget, like everyone's); steady steps/s
           = env steps after learning_starts / wall time of that phase (warm-up with
           random actions and no updates excluded), median over `--sb3-repeats` runs.
           Also reported: an estimate of the full 5e5-step run (10k warm-up steps at
           SB3's measured warm-up rate plus 490k at its learning rate).
  OURS     `jaxrl.agents.dqn`: `jax.jit(jax.vmap(runner.make_train(dqn.AGENT, config),
           (0, None)))`
           over seeds, 1 seed and 8 seeds (`rollout_len=500`: 100 iterations of 500
           vectorised steps, one logged row each; `train_frequency=1`, `gradient_steps=1`,
           `target_update_period=50` updates, `exploration_fraction=0.5`, `anneal_lr`
           off, `loss="mse"`).

For the JAX runs: compile time = wall time of `jit(f).lower(...)` + `.compile()`
(ahead-of-time, first compile in a fresh process), and steady env steps/s = env steps of
one call (all seeds together) / median wall time of already-compiled calls, ended by
`jax.block_until_ready` (`--repeats` calls at 1 seed, `--repeats-multi` at 8 seeds).

Ratios printed at the end (targets in brackets):
  ours / rejax steady steps/s                                [>= 1.5]
  ours / SB3 steady steps/s (SB3's learning phase)           [>= 20]
  ours compile / rejax compile, time(8 seeds) / time(1 seed)   (for reference)

Run (CPU, from the repository root; about 30 minutes on 2 cores):

    .venv/bin/python bench/dqn_cartpole.py --json-out runs/bench_dqn_cpu.json

The script re-invokes itself with `--worker jaxrl` for our subprocesses; that mode
prints one JSON line and is not meant to be used by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from _common import (  # noqa: E402 - driver-side helpers shared by the benches
    add_driver_args,
    begin_results,
    end_results,
    fmt,
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

REJAX_SCRIPT = BENCH_DIR / "_rejax_dqn_peer.py"

NUM_ENVS = 10
ROLLOUT_LEN = 500
TOTAL_TIMESTEPS = 500_000
LEARNING_STARTS = 10_000
BUFFER_SIZE = 10_000
NUM_SEEDS_MULTI = 8


# --------------------------------------------------------------------------------------
# OURS: jaxrl DQN (runs inside a subprocess, jax imported lazily).
# --------------------------------------------------------------------------------------


def measure_jaxrl(num_seeds: int, total_timesteps: int, rollout_len: int, repeats: int,
                  learning_starts: int = LEARNING_STARTS) -> dict:
    """Compile time and steady env steps/s of jaxrl DQN, `num_seeds` seeds vmapped."""
    import numpy as np
    from jaxrl.agents import dqn

    config = dqn.Config(
        env="CartPole-v1",
        num_envs=NUM_ENVS,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        buffer_size=BUFFER_SIZE,
        minibatch_size=128,
        learning_starts=learning_starts,
        train_frequency=1,
        gradient_steps=1,
        target_update_period=50,
        hidden_sizes=(120, 84),
        activation="relu",
        anneal_lr=False,
        loss="mse",
    )
    hparams = dqn.HParams.create(learning_rate=2.5e-4, gamma=0.99, tau=1.0,
                                 epsilon_start=1.0, epsilon_end=0.05,
                                 exploration_fraction=0.5)
    res, (_, metrics) = measure_train(dqn.AGENT, config, hparams, num_seeds, repeats)
    tail = max(1, config.num_iterations // 20)  # the last 5% of iterations
    res.update(
        num_iterations=config.num_iterations,
        num_updates=config.num_updates,
        final_train_return_mean=float(np.nanmean(
            np.asarray(metrics["episode/return"])[:, -tail:])),
        max_grad_norm=float(hparams.max_grad_norm),
    )
    return res


# --------------------------------------------------------------------------------------
# Report (main process: never imports jax).
# --------------------------------------------------------------------------------------


def sb3_full_run_estimate(sb3: dict | None, total: int, learning_starts: int) -> float | None:
    """Env steps/s SB3 would reach over `total` steps with `learning_starts` warm-up steps,
    from its measured warm-up and learning-phase rates."""
    warm = get(sb3, "warmup_steps_per_s_median")
    learn = get(sb3, "steps_per_s_median")
    if not warm or not learn:
        return None
    return total / (learning_starts / warm + (total - learning_starts) / learn)


# --------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--total-timesteps", type=int, default=TOTAL_TIMESTEPS,
                   help="per seed, for ours and rejax")
    p.add_argument("--learning-starts", type=int, default=LEARNING_STARTS,
                   help="for ours and rejax")
    p.add_argument("--rollout-len", type=int, default=ROLLOUT_LEN,
                   help="ours: vectorised steps per iteration (logging granularity)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls at 1 seed")
    p.add_argument("--repeats-multi", type=int, default=2,
                   help=f"timed calls at {NUM_SEEDS_MULTI} seeds")
    p.add_argument("--num-seeds-multi", type=int, default=NUM_SEEDS_MULTI,
                   help="vmapped seeds of the multi-seed runs (1 = skip them)")
    p.add_argument("--sb3-total-timesteps", type=int, default=50_000)
    p.add_argument("--sb3-learning-starts", type=int, default=None,
                   help="default: learning-starts scaled by sb3/ours total timesteps")
    p.add_argument("--sb3-repeats", type=int, default=3)
    add_driver_args(p, skip=("rejax", "sb3"))
    args = p.parse_args()

    if args.worker == "jaxrl":
        emit_with_devices(measure_jaxrl(args.num_seeds, args.total_timesteps,
                                        args.rollout_len, args.repeats,
                                        args.learning_starts))
        return

    machine, results = begin_results(args)
    T, LS, S = args.total_timesteps, args.learning_starts, args.num_seeds_multi
    sb3_T = args.sb3_total_timesteps
    sb3_LS = (args.sb3_learning_starts if args.sb3_learning_starts is not None
              else round(LS * sb3_T / T))
    peers = results["peers"] = {}

    # ---- PEERS ----
    if not args.skip_rejax:
        extra = ["--total-timesteps", str(T), "--learning-starts", str(LS),
                 "--num-envs", str(NUM_ENVS), "--repeats", str(args.repeats),
                 "--num-seeds", str(S), "--repeats-multi", str(args.repeats_multi),
                 "--no-eval-variant"]
        peers["rejax"] = run_rejax(REJAX_SCRIPT, extra, args.timeout,
                                   "peer: rejax 0.1.3 DQN (PureJaxRL config)")
    if not args.skip_sb3:
        peers["sb3"] = run_sb3(
            "dqn", sb3_T, sb3_LS, BUFFER_SIZE, NUM_ENVS, args.sb3_repeats, args.timeout,
            f"peer: Stable-Baselines3 DQN, {sb3_T} steps (learning_starts {sb3_LS})")

    # ---- OURS ----
    ours = results["ours"] = {}
    ours["one_seed"] = run_json(
        worker_cmd(__file__, "jaxrl", num_seeds=1, total_timesteps=T, learning_starts=LS,
                   rollout_len=args.rollout_len, repeats=args.repeats),
        "ours: jaxrl DQN, PureJaxRL config, 1 seed", args.timeout)
    if S > 1:
        ours["multi_seed"] = run_json(
            worker_cmd(__file__, "jaxrl", num_seeds=S, total_timesteps=T,
                       learning_starts=LS, rollout_len=args.rollout_len,
                       repeats=args.repeats_multi),
            f"ours: jaxrl DQN, PureJaxRL config, {S} seeds vmapped", args.timeout)
    end_results(results)

    # ---- Report ----
    rejax, sb3 = peers.get("rejax"), peers.get("sb3")
    results["devices"] = get(ours, "one_seed", "devices")
    rejax1 = one_seed(rejax)
    rows: list = []
    table_row(f"rejax DQN, {NUM_ENVS} env, 1 seed (eval at end)", rejax1, rows)
    table_row(f"rejax DQN, {NUM_ENVS} env, 1 seed (no eval)", get(rejax, "one_seed_no_eval"), rows)
    table_row(f"rejax DQN, {NUM_ENVS} env, {S} seeds (eval at end)",
              get(rejax, "multi_seed"), rows)
    table_row(f"SB3 DQN, {NUM_ENVS} env, learning phase of {sb3_T:,}", sb3, rows)
    table_row(f"ours jaxrl DQN, {NUM_ENVS} env, 1 seed", ours["one_seed"], rows)
    table_row(f"ours jaxrl DQN, {NUM_ENVS} env, {S} seeds", ours.get("multi_seed"), rows)

    ours1, oursN = ours["one_seed"], ours.get("multi_seed")
    sb3_full = sb3_full_run_estimate(sb3, T, LS)
    results["sb3_full_run_estimate_steps_per_s"] = sb3_full
    v = lambda r: get(r, "steps_per_s_median")  # noqa: E731
    ratios = {
        "ours/rejax steady steps/s, 1 seed (target >= 1.5)": ratio(v(ours1), v(rejax1)),
        "ours/rejax-without-final-eval steady steps/s (stricter)":
            ratio(v(ours1), v(get(rejax, "one_seed_no_eval"))),
        "ours/SB3 steady steps/s, SB3 learning phase only (target >= 20)":
            ratio(v(ours1), v(sb3)),
        "ours/SB3 full-run estimate (SB3 warm-up + learning rates, 5e5 steps)":
            ratio(v(ours1), sb3_full),
        "ours compile / rejax compile (1 seed)":
            ratio(get(ours1, "lower_compile_s"), get(rejax1, "lower_compile_s")),
        **multi_seed_ratios(S, ours1, oursN, rejax, rejax1),
    }
    results["ratios"] = ratios
    header = run_header(results)
    if rejax is not None and "error" not in rejax:
        header.append(f"rejax {rejax.get('rejax_version')}, jax {rejax.get('jax_version')}: "
                      f"{rejax.get('num_updates'):,} updates; loss {rejax.get('loss')}; "
                      f"replay {rejax.get('replay_sampling')}")
    if sb3 is not None and "error" not in sb3:
        header.append(f"{sb3_versions(sb3)}: {sb3_T:,} steps, learning_starts "
                      f"{sb3_LS:,}; loss {sb3.get('loss')}; warm-up "
                      f"{fmt(sb3.get('warmup_steps_per_s_median'))} steps/s; full-run "
                      f"estimate {fmt(sb3_full)} steps/s")
    print_report(machine, results, rows, ratios, header, timing_footer(args, S))
    write_json(results, args.json_out)


if __name__ == "__main__":
    main()
