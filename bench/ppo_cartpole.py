"""PPO on CartPole-v1: speed of jaxrl against a peer library and the raw env ceiling.

Every number is measured in ONE invocation on the same machine, and the script prints
ratios between them, so results from different machines are never mixed.

What is measured (each in its own subprocess, so compilation caches, thread pools and
GPU memory of one measurement cannot affect another):

  PEER     rejax 0.1.3 PPO (PyPI), in its own venv `bench/.peer-venv` (created here on
           first use: `pip install rejax==0.1.3 gymnax==0.0.9 jax==0.10.2`), run by
           `bench/_rejax_peer.py`.  Configured like PureJaxRL's CartPole PPO: 4 envs x
           128 steps, 5e5 steps, 4 epochs x 4 minibatches, 64x64 tanh actor and critic,
           lr 2.5e-4, gamma 0.99, lambda 0.95, clip 0.2, ent 0.01, vf 0.5, grad clip 0.5,
           one evaluation at the end only.  rejax 0.1.3 cannot anneal the learning rate
           (constant lr); see `_rejax_peer.py` for the details.  Also measured: the
           same run without the final evaluation, and 8 vmapped seeds.
  CEILING  raw gymnax 1.0.1 CartPole-v1 steps/s: uniformly random actions, `env.step`
           vmapped over N envs inside a jitted `lax.scan` (no learning at all), at 4 envs
           and at `--num-envs-large` envs (and at num-envs-large x num-seeds-large).
  OURS     `jaxrl.agents.ppo`: `jax.jit(jax.vmap(ppo.make_train(config), (0, None)))`
           over seeds, at the PureJaxRL config with 1 seed and with 8 seeds, and at
           `--num-envs-large` envs x 16 steps x 30 updates (x `--num-seeds-large` seeds).

For every training run: compile time = wall time of `jit(f).lower(...)` + `.compile()`
(ahead-of-time, first compile in a fresh process), and steady env steps/s = env steps
of one call (all seeds together) / wall time of an already-compiled call, ended by
`jax.block_until_ready`.  Each timed call is repeated `--repeats` times; steps/s uses the
median (the best is reported too).

Ratios printed at the end (targets in brackets):
  ours / peer steady steps/s at the PureJaxRL config      [>= 1.5]
  ours compile / peer compile                              [<= 1.0]
  time(8 seeds) / time(1 seed), ours (and peer)            [<  8]
  ours @ num-envs-large / raw env ceiling at the same env count

Run (CPU, from the repository root):

    .venv/bin/python bench/ppo_cartpole.py
    .venv/bin/python bench/ppo_cartpole.py --json-out runs/bench_cpu.json

On a GPU machine (no PyPI there, so no peer):

    .venv/bin/python bench/ppo_cartpole.py --skip-peer --num-envs-large 2048 \\
        --num-seeds-large 16 --json-out $OUT/bench_gpu.json

The script re-invokes itself with `--worker {ceiling,jaxrl}` for the subprocesses;
those modes print one JSON line and are not meant to be used by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENV = BENCH_DIR / ".peer-venv"
PEER_SCRIPT = BENCH_DIR / "_rejax_peer.py"
PEER_PACKAGES = ["rejax==0.1.3", "gymnax==0.0.9", "jax==0.10.2"]

# PureJaxRL CartPole PPO config.
PUREJAXRL_NUM_ENVS = 4
PUREJAXRL_ROLLOUT_LEN = 128
PUREJAXRL_TOTAL_TIMESTEPS = 500_000
NUM_SEEDS_MULTI = 8


# --------------------------------------------------------------------------------------
# Helpers shared by the workers (these run inside a subprocess, jax imported lazily).
# --------------------------------------------------------------------------------------


def _time_compiled(call, repeats: int) -> list[float]:
    import jax

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return times


def _summary(lower_s, compile_s, times, env_steps) -> dict:
    med, best = statistics.median(times), min(times)
    return {
        "lower_s": lower_s,
        "compile_s": compile_s,
        "lower_compile_s": lower_s + compile_s,
        "run_times_s": times,
        "run_median_s": med,
        "run_best_s": best,
        "env_steps": env_steps,
        "steps_per_s_median": env_steps / med,
        "steps_per_s_best": env_steps / best,
    }


def _devices() -> list[str]:
    import jax

    return [f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices()]


# --------------------------------------------------------------------------------------
# CEILING: raw gymnax CartPole-v1 with a uniformly random policy.
# --------------------------------------------------------------------------------------


def measure_ceiling(num_envs: int, num_steps: int, repeats: int) -> dict:
    """Env steps/s of vmapped gymnax CartPole-v1 `step` in a jitted scan, random actions."""
    import gymnax
    import jax
    import jax.numpy as jnp

    env, env_params = gymnax.make("CartPole-v1")
    num_actions = env.action_space(env_params).n

    def rollout(key):
        key, reset_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_envs), env_params
        )

        def step(carry, _):
            key, state, ret = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actions = jax.random.randint(act_key, (num_envs,), 0, num_actions)
            obs, state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(step_key, num_envs), state, actions, env_params)
            # Consume obs and reward so nothing is dead code.
            ret = ret + reward + obs.sum(-1) * 0.0
            return (key, state, ret), None

        carry = (key, state, jnp.zeros(num_envs))
        (key, state, ret), _ = jax.lax.scan(step, carry, None, num_steps)
        return state, ret

    key = jax.random.key(0)
    t0 = time.perf_counter()
    lowered = jax.jit(rollout).lower(key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    times = _time_compiled(lambda: compiled(key), repeats)
    res = _summary(t1 - t0, t2 - t1, times, num_envs * num_steps)
    res.update(num_envs=num_envs, num_steps=num_steps)
    return res


# --------------------------------------------------------------------------------------
# OURS: jaxrl PPO.
# --------------------------------------------------------------------------------------


def measure_jaxrl(
    num_envs: int,
    num_seeds: int,
    total_timesteps: int,
    rollout_len: int = PUREJAXRL_ROLLOUT_LEN,
    repeats: int = 3,
) -> dict:
    """Compile time and steady env steps/s of jaxrl PPO, `num_seeds` seeds vmapped."""
    import jax
    from jaxrl.agents import ppo

    config = ppo.Config(
        env="CartPole-v1",
        num_envs=num_envs,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        num_epochs=4,
        num_minibatches=4,
        hidden_sizes=(64, 64),
        activation="tanh",
        anneal_lr=True,
    )
    hparams = ppo.HParams.create(learning_rate=2.5e-4)  # the rest: PureJaxRL defaults
    train = ppo.make_train(config)
    fn = jax.jit(jax.vmap(train, in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), num_seeds)

    t0 = time.perf_counter()
    lowered = fn.lower(keys, hparams)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    times = _time_compiled(lambda: compiled(keys, hparams), repeats)

    # Env steps actually run: whole updates of num_envs x rollout_len per seed.
    batch = num_envs * rollout_len
    steps_per_seed = (total_timesteps // batch) * batch
    res = _summary(t1 - t0, t2 - t1, times, steps_per_seed * num_seeds)
    res.update(
        num_envs=num_envs,
        num_seeds=num_seeds,
        rollout_len=rollout_len,
        total_timesteps=total_timesteps,
        num_updates=total_timesteps // batch,
    )
    return res


# --------------------------------------------------------------------------------------
# Orchestration (main process: never imports jax, so it holds no device memory).
# --------------------------------------------------------------------------------------


def _last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in output")


def _busy_cpu_s() -> float | None:
    """System-wide busy CPU seconds so far (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_json(cmd: list[str], label: str, timeout: float | None = None) -> dict:
    print(f"--> {label}", flush=True)
    busy0, child0 = _busy_cpu_s(), _children_cpu_s()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        # A hang (not slowness) is the usual cause: every run here takes well under
        # the default timeout on a 2-core CPU.
        print(f"    TIMEOUT after {timeout}s (hung?)", flush=True)
        return {"error": f"timeout after {timeout}s (hung?)"}
    wall = time.perf_counter() - t0
    # CPU used by processes other than this measurement, in cores on average: a
    # measure of how disturbed the numbers are (the machine should be idle).
    busy1, child1 = _busy_cpu_s(), _children_cpu_s()
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - (child1 - child0)) / wall
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        print(f"    FAILED (rc={proc.returncode}, {wall:.0f}s):\n{tail}", flush=True)
        return {"error": tail.splitlines()[-1] if tail else f"rc={proc.returncode}"}
    for line in proc.stderr.strip().splitlines():
        if line.startswith("[peer]"):
            print(f"    {line}", flush=True)
    res = _last_json_line(proc.stdout)
    res["process_wall_s"] = wall
    res["other_cpu_cores"] = other
    if other is not None and other > 0.25:
        print(f"    WARNING: other processes used {other:.2f} cores meanwhile", flush=True)
    print(f"    done in {wall:.0f}s", flush=True)
    return res


def _worker_cmd(worker: str, **kw) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def ensure_peer_venv() -> Path:
    """Create bench/.peer-venv with rejax 0.1.3 if it is missing; return its python."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import rejax, gymnax, jax"], capture_output=True
        )
        if check.returncode == 0:
            return python
    print(f"--> creating peer venv {PEER_VENV} ({' '.join(PEER_PACKAGES)})", flush=True)
    base = shutil.which("python3.11") or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True
    )
    return python


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    info = {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if shutil.which("nvidia-smi"):
        q = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True,
        )
        info["gpus"] = q.stdout.strip().splitlines()
    return info


def _fmt(x, spec=",.0f", missing="n/a"):
    return missing if x is None else format(x, spec)


def _get(d: dict | None, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _all_results(results: dict) -> list[dict]:
    out = [results.get("peer")]
    out += list(results.get("ceiling", {}).values()) + list(results.get("ours", {}).values())
    return [r for r in out if isinstance(r, dict)]


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-envs-large", type=int, default=2048)
    p.add_argument("--num-seeds-large", type=int, default=1)
    p.add_argument("--rollout-len-large", type=int, default=16)
    p.add_argument("--updates-large", type=int, default=30,
                   help="updates per seed of the large run: total = envs x len x this")
    p.add_argument("--total-timesteps", type=int, default=PUREJAXRL_TOTAL_TIMESTEPS,
                   help="per seed, for the PureJaxRL-config runs (ours and peer)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--peer-seeds", type=int, default=NUM_SEEDS_MULTI,
                   help="vmapped seeds for the peer's multi-seed run (1 = skip it)")
    p.add_argument("--ceiling-steps", type=int, default=2_000_000,
                   help="env steps per timed call of the raw-env ceiling (large env counts)")
    p.add_argument("--timeout", type=float, default=600, help="per subprocess, seconds")
    p.add_argument("--json-out", type=str, default=None)
    # Internal: subprocess workers.
    p.add_argument("--worker", choices=["ceiling", "jaxrl"], help=argparse.SUPPRESS)
    p.add_argument("--num-envs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--num-seeds", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--num-steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rollout-len", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker == "ceiling":
        res = measure_ceiling(args.num_envs, args.num_steps, args.repeats)
        res["devices"] = _devices()
        print(json.dumps(res), flush=True)
        return
    if args.worker == "jaxrl":
        res = measure_jaxrl(args.num_envs, args.num_seeds, args.total_timesteps,
                            args.rollout_len, args.repeats)
        res["devices"] = _devices()
        print(json.dumps(res), flush=True)
        return

    machine = machine_info()
    print("machine:", json.dumps(machine), flush=True)
    results: dict = {"machine": machine, "args": vars(args)}
    R = args.repeats
    T = args.total_timesteps
    n_large, s_large, len_large = args.num_envs_large, args.num_seeds_large, args.rollout_len_large
    total_large = n_large * len_large * args.updates_large

    # ---- PEER ----
    if not args.skip_peer:
        try:
            peer_python = ensure_peer_venv()
            cmd = [str(peer_python), str(PEER_SCRIPT), "--total-timesteps", str(T),
                   "--repeats", str(R), "--num-seeds", str(args.peer_seeds),
                   "--no-eval-variant"]
            results["peer"] = _run_json(cmd, "peer: rejax 0.1.3 PPO (PureJaxRL config)",
                                        args.timeout)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"    peer setup FAILED: {e}", flush=True)
            results["peer"] = {"error": str(e)}

    # ---- CEILING ----
    ceil_envs = [PUREJAXRL_NUM_ENVS, n_large]
    if s_large > 1:
        ceil_envs.append(n_large * s_large)
    results["ceiling"] = {}
    for n in ceil_envs:
        steps = max(1, (args.ceiling_steps if n >= 256 else 200_000) // n)
        results["ceiling"][str(n)] = _run_json(
            _worker_cmd("ceiling", num_envs=n, num_steps=steps, repeats=R),
            f"ceiling: raw gymnax CartPole-v1, {n} envs x {steps} steps, random policy",
            args.timeout)

    # ---- OURS ----
    ours = results["ours"] = {}
    ours["purejaxrl_1seed"] = _run_json(
        _worker_cmd("jaxrl", num_envs=PUREJAXRL_NUM_ENVS, num_seeds=1, total_timesteps=T,
                    rollout_len=PUREJAXRL_ROLLOUT_LEN, repeats=R),
        "ours: jaxrl PPO, PureJaxRL config, 1 seed", args.timeout)
    ours["purejaxrl_8seeds"] = _run_json(
        _worker_cmd("jaxrl", num_envs=PUREJAXRL_NUM_ENVS, num_seeds=NUM_SEEDS_MULTI,
                    total_timesteps=T, rollout_len=PUREJAXRL_ROLLOUT_LEN, repeats=R),
        f"ours: jaxrl PPO, PureJaxRL config, {NUM_SEEDS_MULTI} seeds vmapped", args.timeout)
    ours["large"] = _run_json(
        _worker_cmd("jaxrl", num_envs=n_large, num_seeds=s_large,
                    total_timesteps=total_large, rollout_len=len_large, repeats=R),
        f"ours: jaxrl PPO, {n_large} envs x {len_large} steps x {args.updates_large} "
        f"updates, {s_large} seed(s)", args.timeout)

    # ---- Table ----
    peer = results.get("peer")
    devices = next((r["devices"] for r in [*results["ceiling"].values(), *ours.values()]
                    if isinstance(r, dict) and "devices" in r), None)
    results["devices"] = devices
    rows = []

    def row(name, r):
        if r is None:
            return
        if "error" in r:
            rows.append((name, "n/a", "n/a", "n/a", "ERROR: " + r["error"][:60]))
            return
        rows.append((name, _fmt(r.get("lower_compile_s"), ".2f"),
                     _fmt(r.get("run_median_s"), ".3f"),
                     _fmt(r.get("steps_per_s_median")),
                     f"best {_fmt(r.get('steps_per_s_best'))}/s, {r['env_steps']:,} steps"))

    if peer is not None:
        row("peer rejax, 4 env, 1 seed (eval at end)", peer if "error" in peer else peer.get("one_seed"))
        row("peer rejax, 4 env, 1 seed (no eval)", _get(peer, "one_seed_no_eval"))
        row(f"peer rejax, 4 env, {args.peer_seeds} seeds (eval at end)", _get(peer, "multi_seed"))
    for n, r in results["ceiling"].items():
        row(f"ceiling raw env, {n} envs", r)
    row("ours, 4 env, 1 seed", ours["purejaxrl_1seed"])
    row(f"ours, 4 env, {NUM_SEEDS_MULTI} seeds", ours["purejaxrl_8seeds"])
    row(f"ours, {n_large} env, {s_large} seed(s)", ours["large"])

    ours1 = ours["purejaxrl_1seed"]
    ours8 = ours["purejaxrl_8seeds"]
    peer1, peer1ne, peerN = (_get(peer, "one_seed"), _get(peer, "one_seed_no_eval"),
                             _get(peer, "multi_seed"))
    ceil_large = results["ceiling"].get(str(n_large * s_large))
    ratios = {
        "ours/peer steady steps/s (target >= 1.5)":
            _ratio(_get(ours1, "steps_per_s_median"), _get(peer1, "steps_per_s_median")),
        "ours/peer-without-final-eval steady steps/s (stricter)":
            _ratio(_get(ours1, "steps_per_s_median"), _get(peer1ne, "steps_per_s_median")),
        "ours compile / peer compile (target <= 1.0)":
            _ratio(_get(ours1, "lower_compile_s"), _get(peer1, "lower_compile_s")),
        f"ours time {NUM_SEEDS_MULTI} seeds / 1 seed (target < {NUM_SEEDS_MULTI})":
            _ratio(_get(ours8, "run_median_s"), _get(ours1, "run_median_s")),
        f"peer time {args.peer_seeds} seeds / 1 seed (for reference)":
            _ratio(_get(peerN, "run_median_s"), _get(peer1, "run_median_s")),
        f"ours@{n_large}x{s_large} / raw ceiling@{n_large * s_large} envs":
            _ratio(_get(ours["large"], "steps_per_s_median"),
                   _get(ceil_large, "steps_per_s_median")),
    }
    results["ratios"] = ratios

    print()
    print("=" * 100)
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores"
          + (f", GPUs: {machine['gpus']}" if machine.get("gpus") else ""))
    print(f"jax devices: {devices}")
    if peer is not None and "error" not in peer:
        print(f"peer: rejax {peer.get('rejax_version')}, jax {peer.get('jax_version')}, "
              f"{peer.get('num_updates')} updates; lr annealing: {peer.get('anneal_lr')} "
              f"({peer.get('anneal_lr_note')}); grad clip: {peer.get('grad_clip')}")
    print("-" * 100)
    header = ("measurement", "compile s", "run s", "steps/s", "notes")
    widths = (44, 10, 9, 13, 0)
    print("".join(h.ljust(w) if w else h for h, w in zip(header, widths)))
    for r in rows:
        print("".join(c.ljust(w) if w else c for c, w in zip(r, widths)))
    print("-" * 100)
    print("compile s = jit(f).lower() + .compile(); run s = median of "
          f"{R} compiled calls; steps/s = env steps (all seeds) / run s")
    others = [r["other_cpu_cores"] for r in _all_results(results)
              if r.get("other_cpu_cores") is not None]
    if others and max(others) > 0.25:
        print(f"WARNING: the machine was not idle: other processes used up to "
              f"{max(others):.2f} of {machine['cpu_cores']} cores during a measurement "
              f"(see other_cpu_cores in the JSON); numbers may be disturbed.")
    print("-" * 100)
    for k, v in ratios.items():
        print(f"{k:<72} {_fmt(v, '.3f')}")
    print("=" * 100)

    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
