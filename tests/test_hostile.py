"""Hostile input and faults: every class of the trust issue, each with its own test.

Checked before disk (int32 sizes, seeds, memory, pointless settings, `--dry-run`), the
guarded run folder (overwrite keeps the old run until the new one compiled, the lock,
symbolic links, the schema of `config.json`, honest resumed summaries), faults as one line
and an exit status (disk full, read-only, a failed checkpoint save, Ctrl-C during the
compile) and the watchdog. One tiny PPO run (`finished`) is shared by the tests that need
a real run folder; the SIGINT trials and the concurrent `jaxrl train` processes are here
once in small form and, behind `slow`, at length.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import checkpoint, cli, experiment, guard, logger, runner
from jaxrl.agents import REGISTRY, ppo

TINY = ["--total-timesteps", "2048", "--num-envs", "4", "--rollout-len", "16",
        "--hidden-sizes", "16", "--num-epochs", "1", "--num-minibatches", "2",
        "--chunk-iterations", "8", "--no-progress"]
TINY_ITERATIONS = 2048 // 64


def one_error_line(status, out, err, pattern, *, code=2):
    assert status == code, (status, out, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxrl: "), lines[0]
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


def snapshot(root):
    """Every file and link under `root` with its bytes (links: their target)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(d, name)
            if os.path.islink(path):
                out[os.path.relpath(path, root)] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = f.read()
    return out


def run_cli(argv, capsys):
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent compilation cache for this module's runs, in process and in the
    subprocesses: the tiny PPO program compiles once (XLA compiles the same program to the
    same code, `test_cli`'s reproducibility test), later runs load it."""
    from jax._src import compilation_cache as cc

    cache = tmp_path_factory.mktemp("compilation-cache")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {n: getattr(jax.config, n) for n in names}
    for name, value in zip(names, (str(cache), 0, 0)):
        jax.config.update(name, value)
    cc.reset_cache()
    yield cache
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, compilation_cache):
    """A finished tiny PPO run folder (4 chunks of 8 iterations), trained once."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", "ppo", *TINY, "--out", str(out)]) == 0
    return out


def copy_run(src, dst):
    import shutil
    shutil.copytree(src, dst, symlinks=True)
    return dst


# --- Checked before disk --------------------------------------------------------------

INT_RANGES = [
    ("seed-beyond-int64", ["--seed", str(2 ** 64)], r"seed must be an integer in \[0, "),
    ("seed-negative", ["--seed", "-1"], r"seed"),
    ("total-timesteps-beyond-int32", ["--total-timesteps", str(10 ** 20)],
     r"total_timesteps must be at most 2147483647"),
    ("num-seeds-huge", ["--num-seeds", str(10 ** 12)], r"num_seeds must be at most"),
    ("eval-episodes-huge", ["--eval-episodes", str(10 ** 12)], r"eval_episodes must be at most"),
    ("chunk-iterations-huge", ["--chunk-iterations", str(2 ** 40)], r"chunk_iterations"),
    ("checkpoint-every-huge", ["--checkpoint-every", str(2 ** 40)], r"checkpoint_every"),
    ("hidden-size-beyond-int32", ["--hidden-sizes", str(2 ** 33)], r"hidden_sizes"),
    ("steps-per-iteration-beyond-int32", ["--num-envs", "65536", "--rollout-len", "65536",
                                          "--total-timesteps", str(2 ** 31 - 1)],
     r"total_timesteps|steps_per_iteration"),
    ("watchdog-factor-below-one", ["--watchdog-factor", "0.5"], r"watchdog_factor"),
    ("watchdog-factor-nan", ["--watchdog-factor", "nan"], r"watchdog_factor"),
    ("watchdog-floor-zero", ["--watchdog-floor-s", "0"], r"watchdog_floor_s"),
    ("out-empty", ["--out", ""], r"out must be a non-empty"),
]


@pytest.mark.parametrize("extra, pattern", [c[1:] for c in INT_RANGES],
                         ids=[c[0] for c in INT_RANGES])
def test_sizes_and_seeds_beyond_the_programs_dtypes_are_one_line(extra, pattern, tmp_path,
                                                                  capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(tmp_path / "run"),
                                *extra], capsys)
    one_error_line(status, out, err, pattern)
    assert os.listdir(tmp_path) == []


def test_a_replay_buffer_beyond_int32_is_refused(tmp_path, capsys):
    status, out, err = run_cli(["train", "dqn", "--buffer-size", str(2 ** 32), "--out",
                                str(tmp_path / "run")], capsys)
    one_error_line(status, out, err, r"buffer_size must be at most 2147483647")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra, largest", [
    (["--hidden-sizes", "1000000", "1000000"], "training state"),
    (["--num-seeds", "100000", "--eval-episodes", "100000"], "evaluation batch"),
])
def test_a_run_that_cannot_fit_in_memory_is_refused_naming_the_estimate(extra, largest,
                                                                         tmp_path, capsys):
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(tmp_path / "run"),
                                *extra], capsys)
    line = one_error_line(status, out, err, r"does not fit in memory: estimated memory "
                                            r"[0-9.]+ [KMGTP]iB .* of [0-9.]+ [KMGTP]iB "
                                            r"available")
    assert f"the {largest}" in line
    assert os.listdir(tmp_path) == []


def test_the_memory_estimate_counts_the_training_state_exactly():
    """The state part is `jax.eval_shape` of init: compare with a real state's bytes."""
    agent = REGISTRY["dqn"]
    config = agent.Config(num_envs=2, rollout_len=8, total_timesteps=64, buffer_size=512,
                          minibatch_size=8, learning_starts=0, train_frequency=4,
                          hidden_sizes=(32,))
    hparams = agent.HParams.create()
    setup, estimate = experiment.validate(agent, config, hparams,
                                          experiment.run_options(num_seeds=3))
    init_fn, _ = runner.parts(agent, config, setup)
    state, keys = jax.jit(runner._make_init(init_fn, False))(runner.split_seed_keys(0, 3),
                                                            hparams)
    real = sum(x.nbytes if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
               else jax.random.key_data(x).nbytes for x in jax.tree.leaves(state))
    assert estimate.parts["training state x2"] == 2 * real
    assert real > 512 * 4 * 4  # the buffer's observations alone, so the buffer is in it


def test_memory_refusal_uses_the_memory_available(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(guard, "available_memory", lambda: 1000)
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(tmp_path / "run")], capsys)
    one_error_line(status, out, err, r"of 1000 B available")
    assert os.listdir(tmp_path) == []


def test_learning_that_never_starts_is_refused(tmp_path, capsys):
    status, out, err = run_cli(["train", "dqn", "--total-timesteps", "1000",
                                "--learning-starts", "5000", "--out", str(tmp_path / "r")],
                               capsys)
    one_error_line(status, out, err, r"learning_starts \(5000\) is beyond the 1000 env steps"
                                     r".*no gradient step")
    assert os.listdir(tmp_path) == []


def test_an_env_that_needs_a_download_fails_in_one_line_offline(monkeypatch, tmp_path, capsys):
    import urllib.error

    from jaxrl import agent as agent_module

    def offline(env_id, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(agent_module.envs, "make", offline)
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(tmp_path / "r")], capsys)
    one_error_line(status, out, err, r"env 'CartPole-v1' could not be built: URLError")
    assert os.listdir(tmp_path) == []


def test_dry_run_validates_prints_the_estimate_and_writes_nothing(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(["train", "sac", "--dry-run", "--no-progress"], capsys)
    assert status == 0, err
    assert err == ""
    assert re.fullmatch(r"dry run: sac on Pendulum-v1, .* estimated memory .* available; "
                        r"nothing written\n", out), out
    assert os.listdir(tmp_path) == []


# --- The run folder -------------------------------------------------------------------

def test_overwrite_keeps_the_old_run_when_the_new_one_fails_before_compiling(
        finished, tmp_path, monkeypatch):
    old = copy_run(finished, tmp_path / "old")
    before = snapshot(old)

    def broken(*args, **kwargs):
        raise RuntimeError("compile failed")

    monkeypatch.setattr(runner, "make_chunk", broken)
    config = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=2048, hidden_sizes=(8,))
    with pytest.raises(RuntimeError, match="compile failed"):
        experiment.train(ppo.AGENT, config, ppo.HParams.create(), str(old), overwrite=True,
                         progress=False, quiet=True)
    assert snapshot(old) == before


def test_ctrl_c_while_compiling_keeps_the_old_run_and_says_so(finished, tmp_path, capsys,
                                                               monkeypatch):
    old = copy_run(finished, tmp_path / "old")
    before = snapshot(old)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "make_chunk", interrupt)
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(old), "--overwrite"],
                               capsys)
    one_error_line(status, "", err, r"interrupted before the new run compiled: nothing to "
                                     r"resume; the earlier run .* is kept", code=130)
    assert snapshot(old) == before


def test_ctrl_c_while_compiling_a_new_run_says_there_is_nothing_to_resume(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setattr(runner, "make_chunk", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(tmp_path / "r")], capsys)
    one_error_line(status, "", err, r"interrupted before the first checkpoint .*nothing to "
                                     r"resume", code=130)


def test_a_replacement_cut_short_by_a_kill_is_undone_by_the_next_writer(tmp_path):
    run = tmp_path / "run"
    (run / guard.RunFolder.ASIDE / "checkpoints" / "8").mkdir(parents=True)
    (run / guard.RunFolder.ASIDE / "metrics.jsonl").write_text("old metrics\n")
    (run / guard.RunFolder.ASIDE / "config.json").write_text("old config")
    (run / "config.json").write_text("new config, never compiled")
    (run / guard.RunFolder.DELETING).mkdir()
    folder = guard.RunFolder(str(run)).acquire(create=False)
    folder.release()
    assert (run / "config.json").read_text() == "old config"
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.jsonl"]
    assert os.listdir(run / "checkpoints") == ["8"]


def test_a_second_writer_is_refused_while_another_process_holds_the_folder(finished,
                                                                           tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            time.sleep(60)
        """), str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for argv in (["train", "ppo", *TINY, "--out", str(run), "--overwrite"],
                     ["resume", str(run), "--no-progress"]):
            status, out, err = run_cli(argv, capsys)
            one_error_line(status, out, err, r"is in use by another jaxrl process")
    finally:
        holder.kill()
        holder.wait()
    assert snapshot(run) == before


@pytest.mark.parametrize("where", ["out", "summary.json", "learning_curve.png",
                                   "checkpoints", "checkpoints/32"])
@pytest.mark.parametrize("command", ["train-overwrite", "resume"])
def test_no_write_or_delete_through_a_symlink(where, command, finished, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    run = copy_run(finished, tmp_path / "run")
    if where == "out":
        target = run
        run = tmp_path / "link"
        os.symlink(target, run)
    else:
        victim = run / where
        if os.path.isdir(victim):
            copy_run(victim, outside / "dir")
            guard.remove_tree(str(victim))
            os.symlink(outside / "dir", victim)
        else:
            (outside / "file").write_bytes(victim.read_bytes())
            victim.unlink()
            os.symlink(outside / "file", victim)
    before = snapshot(tmp_path)
    argv = (["train", "ppo", *TINY, "--out", str(run), "--overwrite"]
            if command == "train-overwrite" else ["resume", str(run), "--no-progress"])
    status, out, err = run_cli(argv, capsys)
    one_error_line(status, out, err, r"holds a symbolic link")
    assert snapshot(tmp_path) == before


def test_atomic_writes_replace_a_link_and_appends_refuse_one(tmp_path):
    target = tmp_path / "target"
    target.write_text("outside")
    link = tmp_path / "summary.json"
    os.symlink(target, link)
    guard.write_atomic(str(link), "new")
    assert target.read_text() == "outside" and not link.is_symlink()
    assert link.read_text() == "new"
    os.symlink(target, tmp_path / "metrics.jsonl")
    with pytest.raises(OSError) as info:
        guard.open_append(str(tmp_path / "metrics.jsonl"))
    assert info.value.errno == errno.ELOOP
    assert target.read_text() == "outside"


def _valid_document():
    config = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=2048)
    return experiment.config_document(ppo.AGENT, config, ppo.HParams.create(),
                                      experiment.run_options(chunk_iterations=2))


def _edit(doc, path, value):
    *parents, last = path
    node = doc
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
SCHEMA_CASES = [
    ("num-seeds-float", ("run", "num_seeds"), 2.0, r"run\.num_seeds must be a positive integer"),
    ("eval-episodes-string", ("run", "eval_episodes"), "abc", r"run\.eval_episodes"),
    ("seed-beyond-int64", ("run", "seed"), 2 ** 64, r"run\.seed must be an integer in"),
    ("tensorboard-not-bool", ("run", "tensorboard"), 1, r"run\.tensorboard must be true or"),
    ("run-unknown-key", ("run", "extra"), 1, r"run\.extra is not a run option"),
    ("run-missing-key", ("run", "keep_checkpoints"), _DELETE,
     r"run\.keep_checkpoints is missing"),
    ("config-missing-key", ("config", "num_envs"), _DELETE, r"config\.num_envs is missing"),
    ("config-unknown-key", ("config", "frobs"), 3, r"config\.frobs is unknown"),
    ("config-int-as-float", ("config", "num_envs"), 4.0, r"config\.num_envs must be an integer"),
    ("config-beyond-int32", ("config", "total_timesteps"), 2 ** 40,
     r"total_timesteps must be at most"),
    ("config-sizes-string", ("config", "hidden_sizes"), "64", r"config\.hidden_sizes must be"),
    ("config-bool-as-int", ("config", "normalize_obs"), 0, r"config\.normalize_obs must be a"),
    ("config-range", ("config", "num_envs"), -4, r"num_envs must be a positive integer"),
    ("hparams-string", ("hparams", "gamma"), "0.99", r"gamma must be a real number"),
    ("hparams-missing", ("hparams", "gamma"), _DELETE, r"hparams\.gamma is missing"),
    ("hparams-range", ("hparams", "gamma"), 2.0, r"gamma must be in"),
    ("top-unknown-key", ("extra",), {}, r"key 'extra' is unknown"),
    ("top-missing-key", ("versions",), _DELETE, r"key 'versions' is missing"),
    ("env-mismatch", ("env",), "Acrobot-v1", r"env 'Acrobot-v1' differs from config\.env"),
    ("run-not-object", ("run",), [1], r"run must be an object"),
]


@pytest.mark.parametrize("path, value, pattern", [c[1:] for c in SCHEMA_CASES],
                         ids=[c[0] for c in SCHEMA_CASES])
def test_config_json_is_schema_checked_on_load(path, value, pattern, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    doc = _edit(_valid_document(), path, value)
    (run / "config.json").write_text(json.dumps(doc))
    before = snapshot(tmp_path)
    for argv in (["resume", str(run)], ["eval", str(run)]):
        status, out, err = run_cli(argv, capsys)
        one_error_line(status, out, err, pattern)
    assert snapshot(tmp_path) == before


def test_the_valid_document_passes_the_schema(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(_valid_document()))
    loaded = experiment.load_run(str(run), REGISTRY)
    assert loaded.config.num_envs == 4 and loaded.options["chunk_iterations"] == 2


def test_resuming_a_finished_run_keeps_its_compile_time_and_speed(finished, tmp_path,
                                                                  capsys):
    run = copy_run(finished, tmp_path / "run")
    original = json.loads((run / "summary.json").read_text())
    status, out, err = run_cli(["resume", str(run), "--no-progress"], capsys)
    assert status == 0, err
    again = json.loads((run / "summary.json").read_text())
    for key in ("compile_time_s", "train_time_s", "env_steps_per_s"):
        assert again[key] == pytest.approx(original[key], rel=1e-3), key
    assert again["compile_time_s"] > 0.05 and again["env_steps_per_s"] > 100
    assert again["resumed_from_iteration"] == TINY_ITERATIONS
    assert [s["from_iteration"] for s in again["segments"]] == [0]
    assert (run / "metrics.jsonl").read_bytes() == (finished / "metrics.jsonl").read_bytes()


# --- Faults as one line ---------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "metrics.jsonl")


def test_disk_full_while_logging_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setattr(logger, "_write_durably", _enospc)
    out_dir = tmp_path / "r"
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(out_dir)], capsys)
    one_error_line(status, "", err, r"No space left on device: metrics.jsonl", code=1)
    assert not [n for n in os.listdir(out_dir) if ".tmp" in n]


def test_a_checkpoint_save_that_fails_is_one_line_and_cleans_its_temporary_folder(
        tmp_path, capsys, monkeypatch):
    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save

    def full_disk_save(self, step, *args, **kwargs):
        if step >= 16:  # the second save fails part way
            os.makedirs(os.path.join(str(self.directory), f"{step}.orbax-checkpoint-tmp-1"))
            raise ValueError("write failed") from OSError(errno.ENOSPC, "No space left on "
                                                           "device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk_save)
    out_dir = tmp_path / "r"
    status, out, err = run_cli(["train", "ppo", *TINY, "--out", str(out_dir)], capsys)
    one_error_line(status, "", err, r"checkpoint .*checkpoints/16 could not be saved \(No "
                                     r"space left on device\); the newest earlier checkpoint "
                                     r"is intact", code=1)
    assert os.listdir(out_dir / "checkpoints") == ["8"]
    # ... and the run resumes from it.
    assert checkpoint.steps(str(out_dir / "checkpoints")) == [8]


def test_ctrl_c_during_a_checkpoint_save_waits_for_the_save(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save

    def interrupted_save(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives while orbax writes
        time.sleep(0.2)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", interrupted_save)
    saver = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), {"agent": "toy"})
    tree = {"state": {"w": jnp.arange(6.0)}, "run_keys": jax.random.split(jax.random.key(0), 2)}
    with pytest.raises(KeyboardInterrupt):
        saver.save(4, tree)
    saver.close()
    assert checkpoint.steps(str(tmp_path / "checkpoints")) == [4]
    assert os.listdir(tmp_path / "checkpoints") == ["4"]  # complete, no temporary folder
    restored, meta = checkpoint.restore(str(tmp_path / "checkpoints"), jax.eval_shape(
        lambda: tree))
    np.testing.assert_array_equal(restored["state"]["w"], np.arange(6.0))


def test_a_read_only_run_folder_on_resume_is_one_line_and_unchanged(finished, tmp_path,
                                                                    capsys, monkeypatch):
    run = copy_run(finished, tmp_path / "run")
    before = snapshot(run)

    def read_only(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(guard, "write_atomic", read_only)
    status, out, err = run_cli(["resume", str(run), "--no-progress"], capsys)
    one_error_line(status, out, err, r"Read-only file system: .*metrics.jsonl", code=1)
    assert snapshot(run) == before


# --- Watchdog -------------------------------------------------------------------------

@struct.dataclass
class Counter:
    step: jax.Array


def _count(state, key, hp):
    return Counter(step=state.step + 1), {"loss/total": jnp.float32(0.0)}


class SleepAt:
    def __init__(self, iteration, seconds):
        self.iteration, self.seconds = iteration, seconds

    def on_chunk(self, first, metrics, info):
        if info["iteration"] == self.iteration:
            time.sleep(self.seconds)  # the injected hang

    def on_end(self, result):
        pass


def test_the_watchdog_stops_a_hanging_chunk_and_writes_every_stack(tmp_path):
    stacks = tmp_path / "hang-stacks.txt"
    dog = guard.Watchdog(str(stacks), factor=3.0, floor_s=0.5)
    t0 = time.perf_counter()
    with pytest.raises(guard.HangError, match=r"chunk from iteration 7 ran over \d+ s .*"
                                              r"all thread stacks written to .*hang-stacks"):
        runner.run(lambda key, hp: Counter(step=jnp.int32(0)), _count, num_iterations=20,
                   steps_per_iteration=1, hparams=None, chunk_iterations=2, devices=1,
                   callbacks=[SleepAt(8, 60.0)], watchdog=dog)
    assert time.perf_counter() - t0 < 30  # stopped, not slept out
    text = stacks.read_text()
    assert "on_chunk" in text and "Thread" in text  # the sleeping callback is named
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None, signal.default_int_handler)


def test_the_watchdog_leaves_a_healthy_run_alone(tmp_path):
    dog = guard.Watchdog(str(tmp_path / "stacks"), factor=3.0, floor_s=5.0)
    result = runner.run(lambda key, hp: Counter(step=jnp.int32(0)), _count, num_iterations=6,
                        steps_per_iteration=1, hparams=None, chunk_iterations=2, devices=1,
                        watchdog=dog)
    assert int(result.state.step[0]) == 6
    assert not (tmp_path / "stacks").exists()


HANG_SCRIPT = textwrap.dedent("""
    import signal, sys, time
    import jax, jax.numpy as jnp
    from flax import struct
    from jaxrl import guard, runner

    @struct.dataclass
    class S:
        step: jax.Array

    def sleep_at_six(step):
        if int(step) == 6:
            # Wedged inside the compiled chunk, as XLA:CPU once was: with the watchdog's
            # signal blocked, this thread never returns to Python, like native code.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            time.sleep(120)
        return step

    def iteration(state, key, hp):
        step = jax.pure_callback(sleep_at_six, jax.ShapeDtypeStruct((), jnp.int32), state.step)
        return S(step=step + 1), {"loss/total": jnp.float32(0.0)}

    dog = guard.Watchdog(sys.argv[1], factor=3.0, floor_s=1.0, grace_s=2.0)
    runner.run(lambda k, hp: S(step=jnp.int32(0)), iteration, num_iterations=20,
               steps_per_iteration=1, hparams=None, chunk_iterations=2, devices=1,
               watchdog=dog)
    print("not stopped")
""")


@pytest.mark.slow
def test_the_watchdog_ends_a_process_wedged_in_native_code(tmp_path):
    stacks = tmp_path / "hang-stacks.txt"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", HANG_SCRIPT, str(stacks)],
                          capture_output=True, text=True, timeout=100)
    assert time.perf_counter() - t0 < 60
    one_error_line(proc.returncode, proc.stdout, proc.stderr,
                   r"ran over .*stacks written to .*hang-stacks.txt.*did not respond",
                   code=1)
    assert "sleep_at_six" in stacks.read_text()


# --- Processes: Ctrl-C at random moments, two writers, a size-limited disk ---------------

def _start_cli(argv, cache, **kwargs):
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.Popen([sys.executable, "-m", "jaxrl.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _interrupt_trial(finished, out, cache, delay, *, after_checkpoint=False):
    """`jaxrl train` SIGINTed after `delay` s (with `after_checkpoint`, `delay` s after its
    first checkpoint appeared: mid-training), then resumed if it can be: the run must end
    with the uninterrupted run's metrics, bit for bit. Returns what happened."""
    proc = _start_cli(["train", "ppo", *TINY, "--out", str(out)], cache)
    while after_checkpoint and proc.poll() is None and not checkpoint.steps(
            str(out / "checkpoints")):
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    # 130, or killed by SIGINT itself (what a shell also shows as 130) when it arrives
    # while the interpreter exits; -11 would be a segfault.
    assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, stderr)
    assert "Traceback" not in stderr and "Fatal Python" not in stderr, (delay, stderr)
    assert len(stderr.splitlines()) <= 1, (delay, stderr)
    if proc.returncode == -signal.SIGINT:
        assert stderr == "" and (out / "summary.json").exists(), (delay, stderr)
        outcome = "finished, then interrupted while exiting"
    elif proc.returncode == 0:
        outcome = "finished"
    elif checkpoint.steps(str(out / "checkpoints")):
        assert re.fullmatch(r"jaxrl: interrupted; `jaxrl resume .*` continues from the newest "
                            r"checkpoint \(iteration \d+\)\n", stderr), stderr
        resumed = _start_cli(["resume", str(out), "--no-progress"], cache)
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        outcome = "resumed"
    else:
        assert re.search(r"nothing to resume|before anything was written", stderr), stderr
        return "nothing to resume"
    assert (out / "metrics.jsonl").read_bytes() == (finished / "metrics.jsonl").read_bytes()
    return outcome


def test_ctrl_c_at_a_random_moment_is_one_line_and_resumes_exactly(finished, tmp_path,
                                                                   compilation_cache):
    rng = np.random.default_rng(21)
    outcome = _interrupt_trial(finished, tmp_path / "run", compilation_cache,
                               float(rng.uniform(0.0, 0.2)), after_checkpoint=True)
    print(f"SIGINT trial: {outcome}")


@pytest.mark.slow
def test_ctrl_c_at_many_random_moments(finished, tmp_path, compilation_cache):
    rng = np.random.default_rng(2021)
    outcomes = {}
    for i, delay in enumerate(rng.uniform(0.05, 16.0, size=16)):
        outcome = _interrupt_trial(finished, tmp_path / f"run-{i}", compilation_cache,
                                   float(delay))
        outcomes.setdefault(outcome, []).append(round(float(delay), 2))
    for i, delay in enumerate(rng.uniform(0.0, 0.5, size=4)):  # mid-training
        outcome = _interrupt_trial(finished, tmp_path / f"mid-{i}", compilation_cache,
                                   float(delay), after_checkpoint=True)
        outcomes.setdefault(outcome, []).append(f"checkpoint + {float(delay):.2f}")
    print(f"SIGINT trials: {outcomes}")
    assert len(outcomes) >= 2  # the delays reached more than one phase of a run


@pytest.mark.slow
def test_two_concurrent_train_processes_leave_one_consistent_run(finished, tmp_path,
                                                                 compilation_cache):
    out = tmp_path / "run"
    procs = [_start_cli(["train", "ppo", *TINY, "--seed", str(seed), "--out", str(out)],
                        compilation_cache) for seed in (1, 2)]
    results = [(p.returncode, *p.communicate(timeout=300)) for p in procs]
    results = [(p.returncode, o, e) for p, (_, o, e) in zip(procs, results)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    winner = [i for i, r in enumerate(results) if r[0] == 0][0]
    loser_err = results[1 - winner][2]
    one_error_line(2, "", loser_err, r"in use by another jaxrl process|already holds a run")
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["seed"] == (1, 2)[winner]
    ev = experiment.evaluate_run(str(out), REGISTRY, episodes=2)
    assert ev.iteration == TINY_ITERATIONS


@pytest.mark.slow
def test_a_size_limited_disk_is_one_line(tmp_path, compilation_cache):
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "run"
    proc = _start_cli(["train", "ppo", *TINY, "--out", str(out)], compilation_cache,
                      preexec_fn=limit)
    stdout, stderr = proc.communicate(timeout=300)
    one_error_line(proc.returncode, "", stderr, r"File too large", code=1)
    assert not [n for n in os.listdir(out) if ".tmp" in n]
