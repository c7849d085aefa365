"""Driver-side helpers of the speed benches `bench/ppo_cartpole.py`, `bench/dqn_cartpole.py`
and `bench/sac_pendulum.py` (their main process, which never imports jax).

  * Peer environments: `ensure_peer_venv` (`bench/.peer-venv`: rejax 0.1.3, gymnax 0.0.9,
    jax 0.10.2) and `ensure_sb3_venv` (`bench/.sb3-venv`: Stable-Baselines3, gymnasium,
    CPU-only torch), each created on first use; `run_rejax` / `run_sb3` run a peer worker
    in them.
  * Arguments: `add_driver_args` (the DQN and SAC benches' common last flags).
  * Subprocess workers: `run_json` runs one measurement in its own process, echoes its
    `[peer]` stderr lines and returns its last stdout JSON line, with the process wall
    time and `other_cpu_cores` (CPU other processes used meanwhile, in cores: how
    disturbed the numbers are); `worker_cmd` re-invokes a bench script as a worker.
  * Provenance: `machine_info`, `loadavg`, `git_state`, `begin_results`/`end_results`.
  * Report: `table_row`, `print_report` (table, machine-load warning, ratios),
    `run_header`, `sb3_versions`, `timing_footer`, `multi_seed_ratios`, `one_seed`,
    `ratio`, `fmt`, `get`, `write_json`.

The worker side (timing of compiled calls, JSON output) is `bench/_peer_common.py`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PEER_VENV = BENCH_DIR / ".peer-venv"
PEER_PACKAGES = ["rejax==0.1.3", "gymnax==0.0.9", "jax==0.10.2"]
SB3_VENV = BENCH_DIR / ".sb3-venv"
SB3_PACKAGES = ["stable-baselines3", "gymnasium"]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SB3_SCRIPT = BENCH_DIR / "_sb3_peer.py"


# --------------------------------------------------------------------------------------
# Small helpers.
# --------------------------------------------------------------------------------------


def fmt(x, spec=",.0f", missing="n/a"):
    return missing if x is None else format(x, spec)


def get(d: dict | None, *path):
    """`d[path[0]][path[1]]...`, or None where a level is missing or not a dict."""
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def one_seed(peer: dict | None) -> dict | None:
    """A peer's 1-seed result, or the peer's own result where the whole run failed."""
    return peer if peer is not None and "error" in peer else get(peer, "one_seed")


# --------------------------------------------------------------------------------------
# Subprocess workers.
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


def run_json(cmd: list[str], label: str, timeout: float | None = None) -> dict:
    """Run `cmd` (a worker printing one JSON line last) and return that JSON, or an error."""
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


def worker_cmd(script: str | Path, worker: str, **kw) -> list[str]:
    """Command re-invoking bench `script` as `--worker worker --key value ...`."""
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", worker]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def add_driver_args(p, skip: tuple = ("rejax", "sb3")) -> None:
    """The last arguments of the DQN and SAC benches: `--skip-{name}` for each of `skip`,
    `--timeout`, `--json-out` and the internal `--worker jaxrl` / `--num-seeds`."""
    for name in skip:
        p.add_argument(f"--skip-{name}", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="per subprocess, seconds")
    p.add_argument("--json-out", type=str, default=None)
    # Internal: subprocess worker.
    p.add_argument("--worker", choices=["jaxrl"], help=argparse.SUPPRESS)
    p.add_argument("--num-seeds", type=int, default=1, help=argparse.SUPPRESS)


# --------------------------------------------------------------------------------------
# Peer environments and runs.
# --------------------------------------------------------------------------------------


def _ensure_venv(venv: Path, imports: str, what: str, install, gitignore: bool) -> Path:
    """Create `venv` if its python cannot `import {imports}`; `install(pip)` fills it."""
    python = venv / "bin" / "python"
    if python.exists():
        check = subprocess.run([str(python), "-c", f"import {imports}"], capture_output=True)
        if check.returncode == 0:
            return python
    print(f"--> creating {what}", flush=True)
    base = shutil.which("python3.11") or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    if gitignore:
        (venv / ".gitignore").write_text("*\n")
    install([str(python), "-m", "pip", "install", "--quiet"])
    return python


def ensure_peer_venv() -> Path:
    """Create bench/.peer-venv with rejax 0.1.3 if it is missing; return its python."""
    return _ensure_venv(
        PEER_VENV, "rejax, gymnax, jax",
        f"peer venv {PEER_VENV} ({' '.join(PEER_PACKAGES)})",
        lambda pip: subprocess.run([*pip, *PEER_PACKAGES], check=True), gitignore=False)


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
    def install(pip):
        wheel = _local_cpu_torch_wheel()
        if wheel:
            print(f"    torch from local wheel {wheel}", flush=True)
            subprocess.run([*pip, wheel], check=True)
        else:
            print(f"    torch from {TORCH_CPU_INDEX}", flush=True)
            subprocess.run([*pip, "--index-url", TORCH_CPU_INDEX, "torch"], check=True)
        subprocess.run([*pip, *SB3_PACKAGES], check=True)

    return _ensure_venv(SB3_VENV, "torch, stable_baselines3, gymnasium",
                        f"SB3 venv {SB3_VENV} (CPU torch, {' '.join(SB3_PACKAGES)})",
                        install, gitignore=True)


def _run_in_venv(ensure, args: list[str], label: str, timeout: float, what: str,
                 name: str) -> dict:
    """Run `args` with the python `ensure()` returns; an error dict if the setup fails."""
    try:
        python = ensure()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"    {what} setup FAILED: {e}", flush=True)
        return {"error": f"{name} setup failed: {e}"}
    return run_json([str(python), *args], label, timeout)


def run_rejax(script: Path, extra: list[str], timeout: float, label: str) -> dict:
    """Set up bench/.peer-venv if needed and run a rejax peer script in it."""
    return _run_in_venv(ensure_peer_venv, [str(script), *extra], label, timeout, "peer", "rejax")


def run_sb3(algo: str, total: int, learning_starts: int, buffer_size: int, num_envs: int,
            repeats: int, timeout: float, label: str, hidden: str | None = None) -> dict:
    """Set up bench/.sb3-venv if needed and run `_sb3_peer.py` in it (`hidden`: e.g.
    "64,64", the hidden widths; None: the peer script's default for `algo`)."""
    args = [str(SB3_SCRIPT), "--algo", algo, "--total-timesteps", str(total),
            "--learning-starts", str(learning_starts), "--buffer-size", str(buffer_size),
            "--num-envs", str(num_envs), "--repeats", str(repeats)]
    if hidden is not None:
        args += ["--hidden", hidden]
    return _run_in_venv(ensure_sb3_venv, args, label, timeout, "SB3", "SB3")


# --------------------------------------------------------------------------------------
# Provenance.
# --------------------------------------------------------------------------------------


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


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def begin_results(args, provenance: bool = True) -> tuple[dict, dict]:
    """Print the machine line; return (machine, results) with machine and args, and with
    `provenance` the load average, command line and git state before the runs."""
    machine = machine_info()
    print("machine:", json.dumps(machine), flush=True)
    results: dict = {"machine": machine, "args": vars(args)}
    if provenance:
        results.update(loadavg_before=loadavg(),
                       command=" ".join(shlex.quote(a) for a in sys.argv),
                       git=git_state())
    return machine, results


def end_results(results: dict) -> None:
    """Record the load average and git state after the runs."""
    results["loadavg_after"] = loadavg()
    results["git_after"] = git_state()


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def table_row(name: str, r: dict | None, rows: list, details: bool = True) -> None:
    """Append one printable row: measurement, compile s, run s, steps/s, notes.

    `details`: also note an SB3-style setup time (no compile) and the update count.
    """
    if r is None:
        return
    if "error" in r:
        rows.append((name, "n/a", "n/a", "n/a", "ERROR: " + r["error"][:60]))
        return
    compile_s = r.get("lower_compile_s")
    notes = f"best {fmt(r.get('steps_per_s_best'))}/s, {r['env_steps']:,} steps"
    if details and compile_s is None and "setup_s" in r:
        notes += f"; not compiled (setup {r['setup_s']:.2f}s)"
    if details and r.get("num_updates") is not None:
        notes += f", {r['num_updates']:,} updates"
    rows.append((name, fmt(compile_s, ".2f"), fmt(r.get("run_median_s"), ".3f"),
                 fmt(r.get("steps_per_s_median")), notes))


def _leaf_results(results: dict) -> list[dict]:
    """Every subprocess result: `peer`, and the values of `peers`, `ceiling`, `ours`."""
    out = [results.get("peer")]
    for group in ("peers", "ceiling", "ours"):
        out += list(results.get(group, {}).values())
    return [r for r in out if isinstance(r, dict)]


def run_header(results: dict) -> list[str]:
    """Load average before / after and our jax devices (the DQN and SAC reports)."""
    return [f"load average before / after: {results['loadavg_before']} / "
            f"{results['loadavg_after']}",
            f"jax devices (ours): {results.get('devices')}"]


def sb3_versions(sb3: dict) -> str:
    return (f"SB3 {sb3.get('sb3_version')}, torch {sb3.get('torch_version')} "
            f"({sb3.get('torch_threads')} thread), gymnasium {sb3.get('gymnasium_version')}")


def timing_footer(args, num_seeds_multi: int) -> str:
    """What the columns of the DQN and SAC tables mean."""
    S = num_seeds_multi
    return ("compile s = jit(f).lower() + .compile(); run s = median of the timed compiled "
            f"calls ({args.repeats} at 1 seed"
            + (f", {args.repeats_multi} at {S} seeds" if S > 1 else "") + "); SB3: run "
            f"s = median over {args.sb3_repeats} runs of its learning phase only; steps/s "
            "= env steps (all seeds) / run s")


def multi_seed_ratios(S: int, ours1, oursN, rejax, rejax1) -> dict:
    """Ratios of the `S`-seed runs (DQN and SAC reports); empty for S = 1."""
    if S <= 1:
        return {}
    return {
        f"ours/rejax steady steps/s, {S} seeds":
            ratio(get(oursN, "steps_per_s_median"), get(rejax, "multi_seed", "steps_per_s_median")),
        f"ours time {S} seeds / 1 seed": ratio(get(oursN, "run_median_s"),
                                               get(ours1, "run_median_s")),
        f"rejax time {S} seeds / 1 seed": ratio(get(rejax, "multi_seed", "run_median_s"),
                                                get(rejax1, "run_median_s")),
    }


def print_report(machine: dict, results: dict, rows: list, ratios: dict,
                 header_lines: list[str], footer: str, *, width: int = 110,
                 widths: tuple = (48, 10, 9, 12, 0), ratio_width: int = 80,
                 load_mean: bool = True) -> None:
    """Machine, `header_lines`, the table of `rows`, `footer`, a warning if other
    processes used over 0.25 cores during a measurement (`load_mean`: with their mean),
    and the ratios."""
    print()
    print("=" * width)
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores"
          + (f", GPUs: {machine['gpus']}" if machine.get("gpus") else ""))
    for line in header_lines:
        print(line)
    print("-" * width)
    header = ("measurement", "compile s", "run s", "steps/s", "notes")
    print("".join(h.ljust(w) if w else h for h, w in zip(header, widths)))
    for r in rows:
        print("".join(c.ljust(w) if w else c for c, w in zip(r, widths)))
    print("-" * width)
    print(footer)
    others = [r["other_cpu_cores"] for r in _leaf_results(results)
              if r.get("other_cpu_cores") is not None]
    if others and max(others) > 0.25:
        mean = f"mean {sum(others) / len(others):.2f}; " if load_mean else ""
        print(f"WARNING: the machine was not idle: other processes used up to "
              f"{max(others):.2f} of {machine['cpu_cores']} cores during a measurement "
              f"({mean}see other_cpu_cores in the JSON); numbers may be disturbed.")
    print("-" * width)
    for k, v in ratios.items():
        print(f"{k:<{ratio_width}} {fmt(v, '.3f')}")
    print("=" * width)


def write_json(results: dict, path: str | None) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")
