"""DQN on CartPole-v1: speed of jaxrl against rejax (JAX) and Stable-Baselines3 (PyTorch).

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.  It follows
`bench/ppo_cartpole.py` (and imports its process helpers).

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
  OURS     `jaxrl.agents.dqn`: `jax.jit(jax.vmap(dqn.make_train(config), (0, None)))`
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
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from ppo_cartpole import (  # noqa: E402 - shared process helpers of the PPO bench
    _devices,
    _fmt,
    _get,
    _ratio,
    _run_json,
    _summary,
    _time_compiled,
    ensure_peer_venv,
    machine_info,
)

REJAX_SCRIPT = BENCH_DIR / "_rejax_dqn_peer.py"
SB3_SCRIPT = BENCH_DIR / "_sb3_peer.py"
SB3_VENV = BENCH_DIR / ".sb3-venv"
SB3_PACKAGES = ["stable-baselines3", "gymnasium"]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

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
    import jax
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
    fn = jax.jit(jax.vmap(dqn.make_train(config), in_axes=(0, None)))
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
    tail = max(1, config.num_iterations // 20)  # the last 5% of iterations
    res.update(
        num_envs=NUM_ENVS,
        num_seeds=num_seeds,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        num_iterations=config.num_iterations,
        num_updates=config.num_updates,
        final_train_return_mean=float(np.nanmean(
            np.asarray(metrics["episode/return"])[:, -tail:])),
        max_grad_norm=float(hparams.max_grad_norm),
    )
    return res


# --------------------------------------------------------------------------------------
# Peer environments and runs (main process: never imports jax).
# --------------------------------------------------------------------------------------


def _local_cpu_torch_wheel() -> str | None:
    """A CPU-only torch wheel for this python in pip's find-links folders, if any."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    dirs = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        q = subprocess.run([sys.executable, "-m", "pip", "config", "get",
                            "global.find-links"], capture_output=True, text=True)
        dirs += q.stdout.split()
    except OSError:
        pass
    for d in dirs:
        d = d.removeprefix("file://")
        found = sorted(glob.glob(os.path.join(d, f"torch-*+cpu-{tag}-*.whl")))
        if found:
            return found[-1]
    return None


def ensure_sb3_venv() -> Path:
    """Create bench/.sb3-venv (SB3, gymnasium, CPU-only torch) if missing; return its python.

    torch comes from a local CPU-only wheel in pip's find-links if there is one (machines
    without access to the PyTorch index), else from the PyTorch CPU index. The venv holds
    a `.gitignore` of `*` (as Python 3.13's venv writes), so git never sees it.
    """
    python = SB3_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import torch, stable_baselines3, gymnasium"],
            capture_output=True)
        if check.returncode == 0:
            return python
    print(f"--> creating SB3 venv {SB3_VENV} (CPU torch, {' '.join(SB3_PACKAGES)})",
          flush=True)
    base = shutil.which("python3.11") or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(SB3_VENV)], check=True)
    (SB3_VENV / ".gitignore").write_text("*\n")
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    wheel = _local_cpu_torch_wheel()
    if wheel:
        print(f"    torch from local wheel {wheel}", flush=True)
        subprocess.run([*pip, wheel], check=True)
    else:
        print(f"    torch from {TORCH_CPU_INDEX}", flush=True)
        subprocess.run([*pip, "--index-url", TORCH_CPU_INDEX, "torch"], check=True)
    subprocess.run([*pip, *SB3_PACKAGES], check=True)
    return python


def run_sb3(algo: str, total: int, learning_starts: int, buffer_size: int, num_envs: int,
            repeats: int, timeout: float, label: str) -> dict:
    """Set up bench/.sb3-venv if needed and run `_sb3_peer.py` in it."""
    try:
        python = ensure_sb3_venv()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"    SB3 setup FAILED: {e}", flush=True)
        return {"error": f"SB3 setup failed: {e}"}
    cmd = [str(python), str(SB3_SCRIPT), "--algo", algo, "--total-timesteps", str(total),
           "--learning-starts", str(learning_starts), "--buffer-size", str(buffer_size),
           "--num-envs", str(num_envs), "--repeats", str(repeats)]
    return _run_json(cmd, label, timeout)


def run_rejax(script: Path, extra: list[str], timeout: float, label: str) -> dict:
    """Set up bench/.peer-venv if needed and run a rejax peer script in it."""
    try:
        python = ensure_peer_venv()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"    peer setup FAILED: {e}", flush=True)
        return {"error": f"rejax setup failed: {e}"}
    return _run_json([str(python), str(script), *extra], label, timeout)


def sb3_full_run_estimate(sb3: dict | None, total: int, learning_starts: int) -> float | None:
    """Env steps/s SB3 would reach over `total` steps with `learning_starts` warm-up steps,
    from its measured warm-up and learning-phase rates."""
    warm = _get(sb3, "warmup_steps_per_s_median")
    learn = _get(sb3, "steps_per_s_median")
    if not warm or not learn:
        return None
    return total / (learning_starts / warm + (total - learning_starts) / learn)


def _worker_cmd(worker: str, **kw) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


# --------------------------------------------------------------------------------------
# Report (shared with bench/sac_pendulum.py).
# --------------------------------------------------------------------------------------


def table_row(name: str, r: dict | None, rows: list) -> None:
    """Append one printable row: measurement, compile s, run s, steps/s, notes."""
    if r is None:
        return
    if "error" in r:
        rows.append((name, "n/a", "n/a", "n/a", "ERROR: " + r["error"][:60]))
        return
    compile_s = r.get("lower_compile_s")
    notes = f"best {_fmt(r.get('steps_per_s_best'))}/s, {r['env_steps']:,} steps"
    if compile_s is None and "setup_s" in r:
        notes += f"; not compiled (setup {r['setup_s']:.2f}s)"
    if r.get("num_updates") is not None:
        notes += f", {r['num_updates']:,} updates"
    rows.append((name, _fmt(compile_s, ".2f"), _fmt(r.get("run_median_s"), ".3f"),
                 _fmt(r.get("steps_per_s_median")), notes))


def print_report(machine: dict, results: dict, rows: list, ratios: dict,
                 header_lines: list[str], footer: str) -> None:
    print()
    print("=" * 110)
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores"
          + (f", GPUs: {machine['gpus']}" if machine.get("gpus") else ""))
    print(f"load average before / after: {results['loadavg_before']} / "
          f"{results['loadavg_after']}")
    print(f"jax devices (ours): {results.get('devices')}")
    for line in header_lines:
        print(line)
    print("-" * 110)
    header = ("measurement", "compile s", "run s", "steps/s", "notes")
    widths = (48, 10, 9, 12, 0)
    print("".join(h.ljust(w) if w else h for h, w in zip(header, widths)))
    for r in rows:
        print("".join(c.ljust(w) if w else c for c, w in zip(r, widths)))
    print("-" * 110)
    print(footer)
    others = [r["other_cpu_cores"] for r in _leaf_results(results)
              if r.get("other_cpu_cores") is not None]
    if others and max(others) > 0.25:
        print(f"WARNING: the machine was not idle: other processes used up to "
              f"{max(others):.2f} of {machine['cpu_cores']} cores during a measurement "
              f"(mean {sum(others) / len(others):.2f}; see other_cpu_cores in the JSON); "
              "numbers may be disturbed.")
    print("-" * 110)
    for k, v in ratios.items():
        print(f"{k:<80} {_fmt(v, '.3f')}")
    print("=" * 110)


def _leaf_results(results: dict) -> list[dict]:
    out = []
    for group in ("peers", "ours"):
        for r in results.get(group, {}).values():
            if isinstance(r, dict):
                out.append(r)
    return out


def write_json(results: dict, path: str | None) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")


def git_state() -> dict:
    """HEAD and the uncommitted changes to library code (others may be editing it)."""
    def git(*a):
        try:
            q = subprocess.run(["git", *a], capture_output=True, text=True,
                               cwd=BENCH_DIR.parent)
            return q.stdout.strip()
        except OSError:
            return None
    return {"head": git("rev-parse", "HEAD"),
            "library_changes": git("status", "--porcelain", "--", "jaxrl", "agents", "envs")}


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


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
    p.add_argument("--skip-rejax", action="store_true")
    p.add_argument("--skip-sb3", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="per subprocess, seconds")
    p.add_argument("--json-out", type=str, default=None)
    # Internal: subprocess worker.
    p.add_argument("--worker", choices=["jaxrl"], help=argparse.SUPPRESS)
    p.add_argument("--num-seeds", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker == "jaxrl":
        res = measure_jaxrl(args.num_seeds, args.total_timesteps, args.rollout_len,
                            args.repeats, args.learning_starts)
        res["devices"] = _devices()
        print(json.dumps(res), flush=True)
        return

    machine = machine_info()
    print("machine:", json.dumps(machine), flush=True)
    T, LS, S = args.total_timesteps, args.learning_starts, args.num_seeds_multi
    sb3_T = args.sb3_total_timesteps
    sb3_LS = (args.sb3_learning_starts if args.sb3_learning_starts is not None
              else round(LS * sb3_T / T))
    results: dict = {"machine": machine, "args": vars(args), "loadavg_before": _loadavg(),
                     "command": " ".join(shlex.quote(a) for a in sys.argv),
                     "git": git_state()}
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
    ours["one_seed"] = _run_json(
        _worker_cmd("jaxrl", num_seeds=1, total_timesteps=T, learning_starts=LS,
                    rollout_len=args.rollout_len, repeats=args.repeats),
        "ours: jaxrl DQN, PureJaxRL config, 1 seed", args.timeout)
    if S > 1:
        ours["multi_seed"] = _run_json(
            _worker_cmd("jaxrl", num_seeds=S, total_timesteps=T, learning_starts=LS,
                        rollout_len=args.rollout_len, repeats=args.repeats_multi),
            f"ours: jaxrl DQN, PureJaxRL config, {S} seeds vmapped", args.timeout)
    results["loadavg_after"] = _loadavg()
    results["git_after"] = git_state()

    # ---- Report ----
    rejax, sb3 = peers.get("rejax"), peers.get("sb3")
    results["devices"] = _get(ours, "one_seed", "devices")
    rejax1 = rejax if rejax is not None and "error" in rejax else _get(rejax, "one_seed")
    rows: list = []
    table_row(f"rejax DQN, {NUM_ENVS} env, 1 seed (eval at end)", rejax1, rows)
    table_row(f"rejax DQN, {NUM_ENVS} env, 1 seed (no eval)", _get(rejax, "one_seed_no_eval"), rows)
    table_row(f"rejax DQN, {NUM_ENVS} env, {S} seeds (eval at end)",
              _get(rejax, "multi_seed"), rows)
    table_row(f"SB3 DQN, {NUM_ENVS} env, learning phase of {sb3_T:,}", sb3, rows)
    table_row(f"ours jaxrl DQN, {NUM_ENVS} env, 1 seed", ours["one_seed"], rows)
    table_row(f"ours jaxrl DQN, {NUM_ENVS} env, {S} seeds", ours.get("multi_seed"), rows)

    ours1, oursN = ours["one_seed"], ours.get("multi_seed")
    sb3_full = sb3_full_run_estimate(sb3, T, LS)
    results["sb3_full_run_estimate_steps_per_s"] = sb3_full
    v = lambda r: _get(r, "steps_per_s_median")  # noqa: E731
    ratios = {
        "ours/rejax steady steps/s, 1 seed (target >= 1.5)": _ratio(v(ours1), v(rejax1)),
        "ours/rejax-without-final-eval steady steps/s (stricter)":
            _ratio(v(ours1), v(_get(rejax, "one_seed_no_eval"))),
        "ours/SB3 steady steps/s, SB3 learning phase only (target >= 20)":
            _ratio(v(ours1), v(sb3)),
        "ours/SB3 full-run estimate (SB3 warm-up + learning rates, 5e5 steps)":
            _ratio(v(ours1), sb3_full),
        "ours compile / rejax compile (1 seed)":
            _ratio(_get(ours1, "lower_compile_s"), _get(rejax1, "lower_compile_s")),
    }
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
    header = []
    if rejax is not None and "error" not in rejax:
        header.append(f"rejax {rejax.get('rejax_version')}, jax {rejax.get('jax_version')}: "
                      f"{rejax.get('num_updates'):,} updates; loss {rejax.get('loss')}; "
                      f"replay {rejax.get('replay_sampling')}")
    if sb3 is not None and "error" not in sb3:
        header.append(f"SB3 {sb3.get('sb3_version')}, torch {sb3.get('torch_version')} "
                      f"({sb3.get('torch_threads')} thread), gymnasium "
                      f"{sb3.get('gymnasium_version')}: {sb3_T:,} steps, learning_starts "
                      f"{sb3_LS:,}; loss {sb3.get('loss')}; warm-up "
                      f"{_fmt(sb3.get('warmup_steps_per_s_median'))} steps/s; full-run "
                      f"estimate {_fmt(sb3_full)} steps/s")
    footer = ("compile s = jit(f).lower() + .compile(); run s = median of the timed compiled "
              f"calls ({args.repeats} at 1 seed"
              + (f", {args.repeats_multi} at {S} seeds" if S > 1 else "") + "); SB3: run "
              f"s = median over {args.sb3_repeats} runs of its learning phase only; steps/s "
              "= env steps (all seeds) / run s")
    print_report(machine, results, rows, ratios, header, footer)
    write_json(results, args.json_out)


if __name__ == "__main__":
    main()
