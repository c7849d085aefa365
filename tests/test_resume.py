"""Exact resume: a run stopped (or SIGKILLed) and resumed in a new process ends with the
same state, bit for bit on CPU, and the same metrics file as the uninterrupted run.

Every run here is a real `jaxrl` run folder written by its own Python process. Adding an
agent is one entry in `AGENTS`: a tiny config of 6 iterations, trained in chunks of 2.

To fit the time budget, the processes share a persistent compilation cache: the
uninterrupted run compiles, the others load its executables. That XLA compiles the same
program to the same code in two processes is what `test_cli`'s reproducibility test checks
(two runs, each compiling, byte-identical metrics).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from jaxrl import checkpoint, experiment
from jaxrl.agents import REGISTRY

# agent name -> (Config fields, HParams fields); each run is 6 iterations of 2 seeds.
AGENTS = {
    "ppo": ({"num_envs": 4, "rollout_len": 16, "total_timesteps": 4 * 16 * 6, "num_epochs": 1,
             "num_minibatches": 2, "hidden_sizes": [16]}, {}),
    # Prioritized replay: the buffer, its sum tree and max priority must resume exactly.
    "dqn": ({"num_envs": 2, "rollout_len": 16, "total_timesteps": 2 * 16 * 6, "buffer_size": 64,
             "minibatch_size": 8, "learning_starts": 32, "train_frequency": 4,
             "target_update_period": 8, "hidden_sizes": [16], "prioritized": True}, {}),
}
AGENTS = {name: spec for name, spec in AGENTS.items() if name in REGISTRY}  # dqn: once it lands
# The SIGKILL and `jaxrl eval` paths do not depend on the agent: one agent keeps them in budget.
KILLED_AGENTS = ["ppo"]
NUM_ITERATIONS = 6
CHUNK = 2

# Trains like `jaxrl train`, with a callback after the checkpointer that can stop the run
# after an iteration (as Ctrl-C there would) or hold it after its first checkpoint, until
# the test kills it.
TRAIN_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from jaxrl import experiment
    from jaxrl.agents import REGISTRY

    spec = json.loads(sys.argv[1])
    agent = REGISTRY[spec["agent"]]
    config = agent.Config(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in spec["config"].items()})
    hparams = agent.HParams.create(**spec["hparams"])

    class Interrupt:
        def on_chunk(self, first, metrics, info):
            if spec["hold"]:
                time.sleep(600)
            if spec["stop"] is not None and info["iteration"] >= spec["stop"]:
                raise KeyboardInterrupt

        def on_end(self, result):
            pass

    try:
        experiment.train(agent, config, hparams, spec["out"], seed=1,
                         num_seeds=2, chunk_iterations=CHUNK, keep_checkpoints=2,
                         progress=False, quiet=True, callbacks=[Interrupt()])
    except KeyboardInterrupt:
        sys.exit(3)
""").replace("CHUNK", str(CHUNK))


def start(args, cache):
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_training(agent, out, cache, *, stop=None, hold=False):
    config, hparams = AGENTS[agent]
    spec = {"agent": agent, "config": config, "hparams": hparams, "out": str(out),
            "stop": stop, "hold": hold}
    return start(["-c", TRAIN_SCRIPT, json.dumps(spec)], cache)


def start_cli(args, cache):
    return start(["-m", "jaxrl.cli", *args], cache)


def finish(procs, timeout=300):
    """Wait for every process (a dict of them); `(returncode, stdout, stderr)` of each."""
    try:
        results = {}
        for name, p in procs.items():
            out, err = p.communicate(timeout=timeout)
            results[name] = (p.returncode, out, err)
        return results
    finally:
        kill_leftovers(procs.values())


def kill_leftovers(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()  # reap it and close its pipes


def wait_for_checkpoint(proc, directory, timeout=300):
    deadline = time.monotonic() + timeout
    while not checkpoint.steps(str(directory)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no checkpoint within {timeout} s"
        time.sleep(0.05)


def check_ok(result):
    code, out, err = result
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    return out


def simulate_crash_after_checkpoint(full, stopped):
    """Add what a crash in the next chunk, mid-write, would leave: rows past the
    checkpoint, the last one torn."""
    lines = (full / "metrics.jsonl").read_text().splitlines(keepends=True)
    with open(stopped / "metrics.jsonl", "a") as f:
        f.write(lines[CHUNK] + lines[CHUNK + 1][:25])


def simulate_crash_during_save(full, killed):
    """Add what a crash while saving the next checkpoint would leave: the next chunk's rows
    and a half-written checkpoint."""
    lines = (full / "metrics.jsonl").read_text().splitlines(keepends=True)
    with open(killed / "metrics.jsonl", "a") as f:
        f.write("".join(lines[CHUNK:2 * CHUNK]))
    checkpoints = killed / checkpoint.CHECKPOINT_DIR
    half_written = checkpoints / f"{2 * CHUNK}.orbax-checkpoint-tmp"
    shutil.copytree(checkpoints / str(CHUNK), half_written)
    os.remove(half_written / "_CHECKPOINT_METADATA")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every process of the tests below, for every agent, in three rounds side by side:

    1. each agent's uninterrupted run (`full`), compiling into its cache;
    2. a run stopped after iteration 2 (`stopped`), and (for `KILLED_AGENTS`) a run that
       holds after its first checkpoint (`killed`) and is then SIGKILLed; then what a crash
       later in the next chunk would have left is added to both folders;
    3. `jaxrl resume` of both, and `jaxrl eval` of `full`, each in a new process.
    """
    root = tmp_path_factory.mktemp("resume")
    dirs = {agent: {name: root / agent / name for name in ("full", "stopped", "killed")}
            for agent in AGENTS}
    caches = {agent: root / agent / "compilation-cache" for agent in AGENTS}
    results = finish({(agent, "full"): start_training(agent, dirs[agent]["full"], caches[agent])
                      for agent in AGENTS})
    for agent in AGENTS:
        check_ok(results[agent, "full"])

    procs = {}
    try:
        for agent in AGENTS:
            d, cache = dirs[agent], caches[agent]
            procs[agent, "stop"] = start_training(agent, d["stopped"], cache, stop=CHUNK)
            if agent in KILLED_AGENTS:
                procs[agent, "hold"] = start_training(agent, d["killed"], cache, hold=True)
        for agent in KILLED_AGENTS:
            holding = procs[agent, "hold"]
            wait_for_checkpoint(holding, dirs[agent]["killed"] / checkpoint.CHECKPOINT_DIR)
            os.kill(holding.pid, signal.SIGKILL)
            holding.wait(timeout=60)
        results.update(finish(procs))
    finally:
        kill_leftovers(procs.values())
    for agent in AGENTS:
        code, _, err = results[agent, "stop"]
        assert code == 3, err[-3000:]
        d = dirs[agent]
        results[agent, "stopped_at"] = checkpoint.steps(str(d["stopped"] / "checkpoints"))
        simulate_crash_after_checkpoint(d["full"], d["stopped"])
    for agent in KILLED_AGENTS:
        assert results[agent, "hold"][0] == -signal.SIGKILL
        d = dirs[agent]
        results[agent, "killed_at"] = checkpoint.steps(str(d["killed"] / "checkpoints"))
        simulate_crash_during_save(d["full"], d["killed"])

    procs = {}
    for agent in AGENTS:
        d, cache = dirs[agent], caches[agent]
        procs[agent, "resume_stopped"] = start_cli(["resume", str(d["stopped"]),
                                                    "--no-progress"], cache)
    for agent in KILLED_AGENTS:
        d, cache = dirs[agent], caches[agent]
        procs[agent, "resume_killed"] = start_cli(["resume", str(d["killed"]),
                                                   "--no-progress"], cache)
        procs[agent, "eval"] = start_cli(["eval", str(d["full"]), "--episodes", "2"], cache)
    results.update(finish(procs))
    return {"root": root, "dirs": dirs, "results": results}


def final_tree(out, step=NUM_ITERATIONS):
    run = experiment.load_run(str(out), REGISTRY)
    tree, meta = experiment.restore_checkpoint(run, run.agent.setup(run.config), str(out),
                                               step)
    assert meta["iteration"] == step
    return tree


def assert_same_run(a, b):
    """Checkpoints bitwise equal leaf by leaf, metrics files byte for byte."""
    steps = checkpoint.steps(str(a / checkpoint.CHECKPOINT_DIR))
    assert steps == [4, 6]  # keep_checkpoints=2
    assert checkpoint.steps(str(b / checkpoint.CHECKPOINT_DIR)) == steps
    for step in steps:
        tree_a, tree_b = final_tree(a, step), final_tree(b, step)
        assert jax.tree.structure(tree_a) == jax.tree.structure(tree_b)
        paths = jax.tree_util.tree_leaves_with_path(tree_a)
        for (path, x), y in zip(paths, jax.tree.leaves(tree_b)):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x, y = jax.random.key_data(x), jax.random.key_data(y)
            assert np.array_equal(np.asarray(x), np.asarray(y)), \
                f"step {step}: {jax.tree_util.keystr(path)} differs"
    metrics_a = (a / "metrics.jsonl").read_bytes()
    assert len(metrics_a.splitlines()) == NUM_ITERATIONS
    assert (b / "metrics.jsonl").read_bytes() == metrics_a
    timing = [json.loads(line)["iteration"] for line in (b / "timing.jsonl").open()]
    assert timing == list(range(CHUNK, NUM_ITERATIONS + 1, CHUNK))
    summary_a = json.loads((a / "summary.json").read_text())
    summary_b = json.loads((b / "summary.json").read_text())
    assert summary_b["per_seed_final_return"] == summary_a["per_seed_final_return"]


@pytest.mark.parametrize("agent", list(AGENTS))
def test_stopped_then_resumed_in_a_new_process_equals_the_uninterrupted_run(runs, agent):
    dirs, results = runs["dirs"][agent], runs["results"]
    assert results[agent, "stopped_at"] == [CHUNK]
    check_ok(results[agent, "resume_stopped"])
    assert_same_run(dirs["full"], dirs["stopped"])
    summary = json.loads((dirs["stopped"] / "summary.json").read_text())
    assert summary["resumed_from_iteration"] == CHUNK


@pytest.mark.parametrize("agent", KILLED_AGENTS)
def test_sigkilled_then_resumed_equals_the_uninterrupted_run(runs, agent):
    dirs, results = runs["dirs"][agent], runs["results"]
    assert results[agent, "killed_at"] == [CHUNK]  # killed mid-run, after its first checkpoint
    check_ok(results[agent, "resume_killed"])
    assert_same_run(dirs["full"], dirs["killed"])
    # The half-written checkpoint was never used, and is gone.
    assert sorted(os.listdir(dirs["killed"] / checkpoint.CHECKPOINT_DIR)) == ["4", "6"]


@pytest.mark.parametrize("agent", KILLED_AGENTS)
def test_eval_prints_per_seed_and_overall_statistics(runs, agent):
    full = runs["dirs"][agent]["full"]
    lines = check_ok(runs["results"][agent, "eval"]).splitlines()
    assert lines[0].startswith(f"checkpoint {full / 'checkpoints' / '6'} (iteration 6 of 6)")
    assert lines[1].split() == ["seed", "episodes", "mean", "std", "min", "max"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert set(rows) == {"0", "1", "all"}
    for name, values in rows.items():
        episodes, mean, std, low, high = (float(v) for v in values)
        assert episodes == (4 if name == "all" else 2) and low <= mean <= high and std >= 0
    assert float(rows["all"][1]) == pytest.approx(
        (float(rows["0"][1]) + float(rows["1"][1])) / 2, abs=0.01)


def test_plot_draws_several_runs_against_steps_or_wall_time(runs):
    from jaxrl import cli

    folders = [str(d[name]) for d in runs["dirs"].values() for name in ("full", "stopped")]
    for x in ("env_steps", "wall_time"):  # timing.jsonl of a resumed run included
        png = runs["root"] / f"curves-{x}.png"
        assert cli.main(["plot", *folders, "--out", str(png), "--x", x]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
