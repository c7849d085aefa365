"""Tests for the `jaxrl` command line: `list`, one-line user errors, and a full `train` run.

Every user error must end the process with exit status 2 and exactly one stderr line,
`jaxrl: error: ...`, naming the offending field, and with no traceback; and it must be
caught before anything is written to the run folder.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from jaxrl import cli, envs, runner
from jaxrl.agents import REGISTRY

# Tiny but valid: 2048 / (4 * 16) = 32 iterations. A bad flag placed after these wins.
TINY = ["--total-timesteps", "2048", "--num-envs", "4", "--rollout-len", "16", "--no-progress"]
HAPPY = ["train", "ppo", "--env", "CartPole-v1", "--num-seeds", "2", "--total-timesteps", "4096",
         "--num-envs", "4", "--rollout-len", "64", "--no-progress"]
HAPPY_ITERATIONS = 4096 // (4 * 64)
SUMMARY_KEYS = {"agent", "env", "num_seeds", "total_timesteps", "final_return_mean",
                "final_return_std", "per_seed_final_return", "wall_time_s", "compile_time_s",
                "env_steps_per_s"}


def test_list_prints_agents_and_environments(capsys):
    assert cli.main(["list"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = [line.strip() for line in out.splitlines()]
    assert "agents:" in lines and "environments:" in lines
    agents = lines[lines.index("agents:") + 1:lines.index("environments:")]
    assert [line.split()[0] for line in agents] == list(REGISTRY)
    assert "ppo" in [line.split()[0] for line in agents]
    listed = lines[lines.index("environments:") + 1:]
    assert listed == envs.list_envs()
    assert "CartPole-v1" in listed and "probe/constant-reward" in listed


def test_help_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


# (id, argv after `jaxrl`, a regex the error line must match: the field or flag it names)
BAD_INPUTS = [
    ("unknown-command", ["frobnicate"], r"command.*frobnicate"),
    ("unknown-agent", ["train", "dqnn"], r"agent.*dqnn"),
    ("missing-agent", ["train", "--env", "CartPole-v1"], r"agent"),
    ("missing-agent-bare", ["train"], r"agent"),
    ("unknown-env", ["train", "ppo", *TINY, "--env", "CartPol-v1"],
     r"env.*CartPol-v1.*CartPole-v1"),
    ("num-envs-zero", ["train", "ppo", *TINY, "--num-envs", "0"], r"num[-_]envs"),
    ("num-envs-negative", ["train", "ppo", *TINY, "--num-envs", "-3"], r"num[-_]envs"),
    ("num-envs-not-int", ["train", "ppo", *TINY, "--num-envs", "abc"], r"num[-_]envs"),
    ("total-timesteps-below-batch", ["train", "ppo", *TINY, "--total-timesteps", "10"],
     r"total[-_]timesteps"),
    ("minibatches-not-dividing", ["train", "ppo", *TINY, "--num-envs", "4", "--rollout-len",
                                  "128", "--num-minibatches", "3"], r"num[-_]minibatches.*512"),
    ("learning-rate-zero", ["train", "ppo", *TINY, "--learning-rate", "0"], r"learning[-_]rate"),
    ("learning-rate-negative", ["train", "ppo", *TINY, "--learning-rate", "-1"],
     r"learning[-_]rate"),
    ("gamma-above-one", ["train", "ppo", *TINY, "--gamma", "1.5"], r"gamma"),
    ("gae-lambda-negative", ["train", "ppo", *TINY, "--gae-lambda", "-0.1"], r"gae[-_]lambda"),
    ("clip-eps-zero", ["train", "ppo", *TINY, "--clip-eps", "0"], r"clip[-_]eps"),
    ("ent-coef-negative", ["train", "ppo", *TINY, "--ent-coef", "-1"], r"ent[-_]coef"),
    ("max-grad-norm-zero", ["train", "ppo", *TINY, "--max-grad-norm", "0"], r"max[-_]grad[-_]norm"),
    ("activation-unknown", ["train", "ppo", *TINY, "--activation", "sigmoid"],
     r"activation.*sigmoid"),
    ("hidden-sizes-zero", ["train", "ppo", *TINY, "--hidden-sizes", "0", "64"],
     r"hidden[-_]sizes"),
    ("num-seeds-zero", ["train", "ppo", *TINY, "--num-seeds", "0"], r"num[-_]seeds"),
    ("devices-too-many", ["train", "ppo", *TINY, "--devices", "99"], r"devices"),
    ("seed-negative", ["train", "ppo", *TINY, "--seed", "-1"], r"seed"),
    ("seed-batch-zero", ["train", "ppo", *TINY, "--seed-batch", "0"], r"seed[-_]batch"),
    ("chunk-iterations-zero", ["train", "ppo", *TINY, "--chunk-iterations", "0"],
     r"chunk[-_]iterations"),
    ("eval-episodes-negative", ["train", "ppo", *TINY, "--eval-episodes", "-1"],
     r"eval[-_]episodes"),
    ("unknown-flag", ["train", "ppo", *TINY, "--foo", "1"], r"--foo"),
    ("list-extra", ["list", "extra"], r"list.*extra"),
    ("discrete-agent-on-continuous-env", ["train", "dqn", "--env", "Pendulum-v1"],
     r"Pendulum-v1.*continuous.*ddpg, td3 or sac"),
    ("continuous-agent-on-discrete-env", ["train", "sac", "--env", "CartPole-v1"],
     r"CartPole-v1.*discrete action space.*continuous"),
    ("cem-iters-negative", ["train", "cq-sample", "--cem-iters", "-1"], r"cem[-_]iters"),
    ("checkpoint-every-zero", ["train", "ppo", *TINY, "--checkpoint-every", "0"],
     r"checkpoint[-_]every"),
    ("keep-checkpoints-zero", ["train", "ppo", *TINY, "--keep-checkpoints", "0"],
     r"keep[-_]checkpoints"),
    ("resume-missing-run-dir", ["resume"], r"RUN_DIR"),
    ("resume-no-such-run", ["resume", "no-such-run"], r"run folder.*no-such-run.*not exist"),
    ("eval-no-such-run", ["eval", "no-such-run"], r"run folder.*no-such-run.*not exist"),
    ("eval-episodes-zero", ["eval", "no-such-run", "--episodes", "0"], r"episodes.*0"),
    ("eval-episodes-negative", ["eval", "no-such-run", "--episodes", "-5"], r"episodes"),
    ("eval-episodes-not-int", ["eval", "no-such-run", "--episodes", "many"], r"--episodes"),
    ("eval-checkpoint-not-int", ["eval", "no-such-run", "--checkpoint", "last"],
     r"--checkpoint"),
    ("plot-missing-out", ["plot", "no-such-run"], r"--out"),
    ("plot-missing-run", ["plot", "--out", "c.png"], r"RUN_DIR"),
    ("plot-no-such-run", ["plot", "no-such-run", "--out", "c.png"],
     r"run folder.*no-such-run.*not exist"),
    ("plot-bad-x", ["plot", "no-such-run", "--out", "c.png", "--x", "time"], r"--x.*time"),
    ("plot-out-folder-missing", ["plot", "no-such-run", "--out", "missing/c.png"],
     r"out.*missing.*does not exist"),
    ("plot-out-bad-extension", ["plot", "no-such-run", "--out", "curves.xyz"],
     r"out.*curves.xyz.*must end in"),
]


def _check_one_error_line(status, out, err, pattern):
    assert status == 2, (status, out, err)
    assert "Traceback" not in out + err
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("jaxrl: error: "), lines[0]
    assert re.search(pattern, lines[0]), (pattern, lines[0])


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_error_line_with_status_2(argv, pattern, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder would land here, not in the checkout
    out_dir = tmp_path / "run"
    if argv[:2] == ["train", "ppo"]:
        argv = [*argv[:2], "--out", str(out_dir), *argv[2:]]
    status = cli.main(argv)
    out, err = capsys.readouterr()
    _check_one_error_line(status, out, err, pattern)
    assert not out_dir.exists(), "the error was raised after the run folder was created"
    assert os.listdir(tmp_path) == []


def test_out_under_a_regular_file_is_one_error_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    status = cli.main(["train", "ppo", *TINY, "--out", str(blocker / "run")])
    out, err = capsys.readouterr()
    _check_one_error_line(status, out, err, r"out.*a-file")
    assert blocker.read_text() == "not a folder"


def test_out_holding_a_run_needs_overwrite(tmp_path, capsys):
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "metrics.jsonl").write_text('{"iteration": 1}\n')
    status = cli.main(["train", "ppo", *TINY, "--out", str(old)])
    out, err = capsys.readouterr()
    _check_one_error_line(status, out, err, r"out.*old-run.*--overwrite")
    assert (old / "metrics.jsonl").read_text() == '{"iteration": 1}\n'
    assert sorted(os.listdir(old)) == ["metrics.jsonl"]


def _console_script():
    script = os.path.join(os.path.dirname(sys.executable), "jaxrl")
    return [script] if os.path.exists(script) else None


@pytest.mark.parametrize("launcher", ["module", "console-script"])
def test_real_process_gets_status_2_and_one_line(launcher, tmp_path):
    if launcher == "module":
        cmd = [sys.executable, "-m", "jaxrl.cli"]
    else:
        cmd = _console_script()
        if cmd is None:
            pytest.skip("no `jaxrl` console script next to this interpreter")
    proc = subprocess.run([*cmd, "train", "ppo", "--num-envs", "0", "--out",
                           str(tmp_path / "run")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    _check_one_error_line(proc.returncode, proc.stdout, proc.stderr, r"num[-_]envs")
    assert not (tmp_path / "run").exists()


def _run_twice(root):
    """The happy-path command run twice at the same time: in this process, and in another
    (`python -m jaxrl.cli`), into two folders."""
    out_a, out_b = root / "run", root / "run-again"
    other = subprocess.Popen([sys.executable, "-m", "jaxrl.cli", *HAPPY, "--out", str(out_b)],
                             cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli.main([*HAPPY, "--out", str(out_a)])
        other_out, other_err = other.communicate(timeout=300)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    return (status, stdout.getvalue(), stderr.getvalue(), out_a,
            other.returncode, other_err, out_b)


# One test, not two sharing a module fixture: under `pytest -n 2` a shared fixture may be
# built once per worker, and each build is two compilations of a PPO run.
def test_train_writes_the_run_folder_and_is_reproducible(tmp_path):
    status, stdout, stderr, out, other_status, other_err, out_again = _run_twice(tmp_path)
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert f"run folder: {out}" in stdout
    _check_run_folder(out)
    assert other_status == 0, other_err
    assert "Traceback" not in other_err
    _check_identical_runs(out, out_again)


def _check_run_folder(out):
    assert {"config.json", "metrics.jsonl", "learning_curve.png", "summary.json"} <= set(
        os.listdir(out))

    config = json.loads((out / "config.json").read_text())
    assert config["agent"] == "ppo" and config["env"] == "CartPole-v1"
    assert config["config"]["num_envs"] == 4 and config["config"]["rollout_len"] == 64
    assert config["config"]["total_timesteps"] == 4096
    assert config["run"]["num_seeds"] == 2

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == HAPPY_ITERATIONS
    assert [r["iteration"] for r in rows] == list(range(1, HAPPY_ITERATIONS + 1))
    assert [r["env_steps"] for r in rows] == [256 * i for i in range(1, HAPPY_ITERATIONS + 1)]
    for row in rows:
        metrics = {k: v for k, v in row.items() if k not in ("iteration", "env_steps")}
        assert {"episode/return", "loss/total"} <= set(metrics)
        for name, values in metrics.items():
            assert isinstance(values, list) and len(values) == 2, (name, values)
            assert all(v is None or isinstance(v, float) for v in values), (name, values)
    # CartPole episodes are short: every iteration of 256 steps completes some per seed.
    assert all(v is not None and v >= 1.0 for r in rows for v in r["episode/return"])

    with open(out / "learning_curve.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["agent"] == "ppo" and summary["env"] == "CartPole-v1"
    assert summary["num_seeds"] == 2 and summary["total_timesteps"] == 4096
    per_seed = summary["per_seed_final_return"]
    assert len(per_seed) == 2 and all(isinstance(x, float) for x in per_seed)
    assert summary["final_return_mean"] == pytest.approx(sum(per_seed) / 2, rel=1e-6)
    assert summary["final_return_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2,
                                                        rel=1e-6, abs=1e-9)
    # The final return comes from the last 5% of the 16 iterations, i.e. the last one.
    last = rows[-1]["episode/return"]
    assert per_seed == pytest.approx(last, rel=1e-6)
    assert summary["wall_time_s"] >= summary["compile_time_s"] > 0
    assert summary["env_steps_per_s"] > 0


def _check_identical_runs(out_a, out_b):
    a = (out_a / "metrics.jsonl").read_bytes()
    b = (out_b / "metrics.jsonl").read_bytes()
    assert len(a.splitlines()) == HAPPY_ITERATIONS
    assert a == b
    summary_a = json.loads((out_a / "summary.json").read_text())
    summary_b = json.loads((out_b / "summary.json").read_text())
    assert summary_a["per_seed_final_return"] == summary_b["per_seed_final_return"]
    # Two seeds are two different runs, not one run twice.
    rows = [json.loads(line) for line in a.splitlines()]
    assert any(r["loss/total"][0] != r["loss/total"][1] for r in rows)


def _fake_run(path, *, metrics=False, checkpoint_junk=False, checkpoint_damaged=False,
              config_text=None):
    """A run folder written by hand: config.json of a tiny PPO run, optionally a metrics
    row, a checkpoint folder that holds junk instead of a checkpoint, or a checkpoint of
    the run (all zeros) whose array data is then overwritten."""
    import jax
    import jax.numpy as jnp

    from jaxrl import checkpoint, experiment, runner
    from jaxrl.agents import ppo
    from jaxrl.config import to_dict

    path.mkdir()
    config = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=2048)
    (path / "config.json").write_text(config_text if config_text is not None else json.dumps(
        experiment.config_document(ppo.AGENT, config, ppo.HParams.create(),
                                   experiment.run_options(chunk_iterations=2))))
    if metrics:
        (path / "metrics.jsonl").write_text(
            '{"iteration":1,"env_steps":64,"episode/return":[20.0]}\n')
    if checkpoint_junk:
        (path / "checkpoints" / "2").mkdir(parents=True)
        (path / "checkpoints" / "2" / "state").write_text("not a checkpoint")
    if checkpoint_damaged:
        run = experiment.load_run(str(path), REGISTRY)
        state, keys = runner.state_shapes(runner.parts(ppo.AGENT, config)[0], run.hparams)

        def zeros(s):
            if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(jnp.zeros((*s.shape, 2), jnp.uint32))
            return jnp.zeros(s.shape, s.dtype)

        saver = checkpoint.Checkpointer(str(path / "checkpoints"),
                                        experiment._checkpoint_meta(run))
        saver.save(2, jax.tree.map(zeros, {"state": state, "run_keys": keys}))
        saver.close()
        # Only the array data (OCDBT's `d/` folders): damaging the JSON side files too made
        # the error depend on which file orbax happened to read first.
        damaged = 0
        for root, _, files in os.walk(path / "checkpoints" / "2" / "state"):
            if os.path.basename(root) != "d":
                continue
            for name in files:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"\0damaged")
                damaged += 1
        assert damaged, "no array data files found to damage"


# (id, how to build RUN, argv with RUN for the folder, the regex the error line must match)
BAD_RUN_FOLDERS = [
    ("resume-folder-without-config", {}, ["resume", "EMPTY"], r"EMPTY.*no config.json"),
    ("resume-unreadable-config", {"config_text": "{"}, ["resume", "RUN"],
     r"config.json is unreadable"),
    ("resume-unknown-agent-in-config", {"config_text": json.dumps(
        {"agent": "dqnn", "config": {}, "hparams": {}, "run": {"seed": 0, "num_seeds": 1}})},
     ["resume", "RUN"], r"agent 'dqnn' is unknown"),
    ("resume-without-checkpoint", {"metrics": True}, ["resume", "RUN"],
     r"run folder.*RUN.*has no checkpoint"),
    ("eval-without-checkpoint", {"metrics": True}, ["eval", "RUN"], r"has no checkpoint"),
    ("resume-corrupted-checkpoint", {"checkpoint_junk": True}, ["resume", "RUN"],
     r"checkpoint .*RUN/checkpoints/2 is unreadable or corrupted"),
    ("eval-corrupted-checkpoint", {"checkpoint_junk": True}, ["eval", "RUN"],
     r"checkpoint .*RUN/checkpoints/2 is unreadable or corrupted"),
    ("eval-damaged-array-data", {"checkpoint_damaged": True}, ["eval", "RUN"],
     # tensorstore's status code depends on which damaged block it reads first.
     r"checkpoint .*RUN/checkpoints/2 is unreadable or corrupted \(ValueError: "
     r"(DATA_LOSS|OUT_OF_RANGE): .*delete it to use an earlier one$"),
    ("eval-unknown-checkpoint", {"checkpoint_junk": True},
     ["eval", "RUN", "--checkpoint", "5"], r"checkpoint 5 is not in .*available: 2"),
    ("plot-without-metrics", {}, ["plot", "RUN", "--out", "OUT/c.png"],
     r"RUN.*no metrics.jsonl"),
    ("plot-unknown-metric", {"metrics": True},
     ["plot", "RUN", "--out", "OUT/c.png", "--metric", "loss/foo"],
     r"metric 'loss/foo'.*allowed: episode/return"),
    ("plot-wall-time-without-timing", {"metrics": True},
     ["plot", "RUN", "--out", "OUT/c.png", "--x", "wall_time"], r"timing.jsonl.*--x env_steps"),
    ("plot-out-is-a-folder", {"metrics": True}, ["plot", "RUN", "--out", "OUT"],
     r"out.*not writable|out.*must end in"),
    ("plot-out-is-a-png-folder", {"metrics": True}, ["plot", "RUN", "--out", "OUT/dir.png"],
     r"out.*dir.png.*not writable"),
]


def _snapshot(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
                  for d, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize("build, argv, pattern", [c[1:] for c in BAD_RUN_FOLDERS],
                         ids=[c[0] for c in BAD_RUN_FOLDERS])
def test_bad_run_folder_is_one_error_line_and_changes_nothing(build, argv, pattern, tmp_path,
                                                              capsys):
    run, empty, out = tmp_path / "RUN", tmp_path / "EMPTY", tmp_path / "OUT"
    _fake_run(run, **build)
    empty.mkdir()
    out.mkdir()
    (out / "dir.png").mkdir()
    before = _snapshot(tmp_path)
    names = {"RUN": str(run), "EMPTY": str(empty), "OUT": str(out)}
    argv = [names.get(a, a.replace("OUT/", f"{out}/")) for a in argv]
    status = cli.main(argv)
    stdout, err = capsys.readouterr()
    _check_one_error_line(status, stdout, err, pattern)
    assert _snapshot(tmp_path) == before
