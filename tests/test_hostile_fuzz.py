"""Property-based fuzz of the command line: every agent's flags, hostile values.

`jaxrl.cli.main(argv)` is called in-process with argv drawn by Hypothesis: any command,
any agent (or a misspelt one), any of the agent's flags (every `Config` and `HParams`
field and every run option) with values at the extremes, of the wrong type, negative,
beyond int32 and int64, `nan`/`inf` strings, empty, plus unknown flags and stray
positionals; `--out` a new folder, a folder holding a run, a regular file, an empty
string or the default. The invariant: exit status 0 or 2, no traceback, at most one line
on stderr, and no file that existed before changed or removed.

Training examples carry `--dry-run` (validation, the memory estimate and every read-only
check of the folder, no training), so the default suite stays small:
`JAXRL_FUZZ_EXAMPLES` examples (default 60). The long run, whose count is recorded in
`bench/RESULTS.md`:

    JAXRL_FUZZ_EXAMPLES=3000 JAXRL_FUZZ_TRAIN=0.02 nice -n 10 \\
        .venv/bin/python -m pytest -p no:xdist -q tests/test_hostile_fuzz.py

`JAXRL_FUZZ_TRAIN` is the fraction of training examples run for real (with a tiny budget
appended, never with `--overwrite` on the folder that holds a run).
"""

import contextlib
import dataclasses
import io
import json
import os

import hypothesis
import pytest
from hypothesis import strategies as st

from jaxrl import agents, cli, experiment
from jaxrl.agents import ppo

EXAMPLES = int(os.environ.get("JAXRL_FUZZ_EXAMPLES", "60"))
TRAIN_FRACTION = float(os.environ.get("JAXRL_FUZZ_TRAIN", "0"))

VALUES = ["0", "1", "-1", "2", "3", "7", "64", "0.5", "1.5", "-0.5", "1e-12", "1e20", "-1e20",
          "2147483647", "2147483648", "-2147483649", "9223372036854775807",
          "9223372036854775808", "18446744073709551616", "1000000000000", "nan", "NaN", "inf",
          "-inf", "abc", "", " ", "true", "None", "0x10", "1_000", "١", "CartPole-v1",
          "Pendulum-v1", "MNISTBandit-bsuite", "probe/constant-reward", "relu", "cnn", "mlp"]
RUN_FLAGS = ["--num-seeds", "--seed", "--devices", "--seed-batch", "--chunk-iterations",
             "--eval-episodes", "--checkpoint-every", "--keep-checkpoints", "--wandb-project",
             "--watchdog-factor", "--watchdog-floor-s"]
RUN_SWITCHES = ["--tensorboard", "--no-progress", "--overwrite", "--no-tuned"]
OTHER = ["--frobnicate", "-x", "--", "--num-envs=", "--help-me", "extra", "--no-num-envs"]
TINY_BUDGET = {"--total-timesteps": "64", "--num-envs": "2", "--rollout-len": "8",
               "--buffer-size": "32", "--minibatch-size": "4", "--learning-starts": "0",
               "--train-frequency": "4", "--num-minibatches": "2", "--hidden-sizes": "8",
               "--num-samples": "4", "--cem-elites": "2", "--value-minibatches": "2"}


def _agent_flags(name):
    """`{flag: plausible values}`: the field's default and small valid-looking values, so
    that examples also get past validation into the env, the network and the estimate."""
    agent = agents.get(name)
    flags = {}
    for cls in (agent.Config, agent.HParams):
        for field in dataclasses.fields(cls):
            flag = "--" + field.name.replace("_", "-")
            default = field.default
            if isinstance(default, bool):
                flags[flag] = flags["--no-" + flag[2:]] = []
            elif isinstance(default, tuple):
                flags[flag] = [" ".join(map(str, default)), "8", "16 16"]
            elif isinstance(default, (int, float)):
                flags[flag] = [str(default), "1", "2", "4", "16", "0.1", "0.9"]
            else:
                flags[flag] = [str(default)]
    return flags


FLAGS = {name: _agent_flags(name) for name in agents.ENTRIES}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A folder holding a run folder (valid config.json, metrics, a junk checkpoint), a
    regular file and an empty folder: what must survive every example unchanged."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "old-run"
    run.mkdir()
    config = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=2048)
    (run / "config.json").write_text(json.dumps(experiment.config_document(
        ppo.AGENT, config, ppo.HParams.create(), experiment.run_options(chunk_iterations=2))))
    (run / "metrics.jsonl").write_text(
        '{"iteration":1,"env_steps":64,"episode/return":[20.0]}\n')
    (run / "checkpoints" / "2").mkdir(parents=True)
    (run / "checkpoints" / "2" / "state").write_text("not a checkpoint")
    (root / "a-file").write_text("precious")
    (root / "empty").mkdir()
    return root


def _snapshot(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(d, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = "dir"
    return out


@st.composite
def argvs(draw, root):
    command = draw(st.sampled_from(["train"] * 8 + ["resume", "eval", "plot", "list",
                                                     "bogus", ""]))
    counter = draw(st.integers(0, 10 ** 9))
    new = str(root / f"new-{counter}")
    old = str(root / "old-run")
    places = [new, old, str(root / "a-file"), str(root / "a-file" / "run"), "",
              str(root / "empty"), str(root / "no-such")]
    if command == "train":
        name = draw(st.sampled_from(list(agents.ENTRIES) + ["dqnn", "PPO"]))
        argv = ["train", name]
        plausible = {**FLAGS.get(name, FLAGS["ppo"]), **{f: ["0", "1", "2", "3"]
                                                         for f in RUN_FLAGS}}
        flags = list(plausible) + RUN_SWITCHES + OTHER
        for _ in range(draw(st.integers(0, 6))):
            flag = draw(st.sampled_from(flags))
            argv.append(flag)
            if flag in RUN_SWITCHES or flag in OTHER or not plausible.get(flag):
                continue
            if draw(st.booleans()):
                argv += draw(st.sampled_from(plausible[flag])).split()
                continue
            count = draw(st.sampled_from([1, 1, 1, 2, 0]))
            argv += [draw(st.sampled_from(VALUES)) for _ in range(count)]
        out = draw(st.sampled_from(places + [None]))
        if out is not None:
            argv += ["--out", out]
        real = TRAIN_FRACTION and draw(st.integers(0, 9999)) < TRAIN_FRACTION * 10000
        if real:
            for flag, value in TINY_BUDGET.items():
                if flag in plausible:
                    argv += [flag, value]
            argv += ["--no-tuned", "--no-progress"]
            if out in (old, None) or "--overwrite" in argv:
                argv = [a for a in argv if a != "--overwrite"]
        else:
            argv.append("--dry-run")
        return argv
    if command in ("resume", "eval"):
        argv = [command, draw(st.sampled_from(places))]
        for _ in range(draw(st.integers(0, 2))):
            argv += [draw(st.sampled_from(["--episodes", "--checkpoint", "--seed",
                                           "--no-progress", "--frobnicate"])),
                     draw(st.sampled_from(VALUES))]
        if command == "eval":
            argv = [a for a in argv if a != "--no-progress"]
        return argv
    if command == "plot":
        return ["plot", draw(st.sampled_from(places)), "--out",
                str(root / f"plot-{counter}.{draw(st.sampled_from(['png', 'xyz', '']))}"),
                *draw(st.lists(st.sampled_from(["--x", "wall_time", "--metric",
                                                 "loss/foo", "time"]), max_size=3))]
    return [command] + draw(st.lists(st.sampled_from(VALUES), max_size=2))


def _call(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = cli.main(argv)
        except SystemExit as e:  # argparse's --help
            status = e.code
    return status, stdout.getvalue(), stderr.getvalue()


def test_the_command_line_survives_hostile_argv(tree, monkeypatch):
    monkeypatch.chdir(tree)  # the default --out lands here
    seen = {"examples": 0, "status 0": 0, "status 2": 0}
    original = _snapshot(tree)

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(argv=argvs(tree))
    def check(argv):
        before = _snapshot(tree)
        status, out, err = _call(argv)
        seen["examples"] += 1
        seen[f"status {status}"] = seen.get(f"status {status}", 0) + 1
        if argv[:1] == ["train"] and "--dry-run" not in argv and status == 0:
            seen["trained"] = seen.get("trained", 0) + 1
        assert status in (0, 2), (argv, status, out, err)
        assert "Traceback" not in out + err, (argv, err)
        assert len(err.splitlines()) <= 1, (argv, err)
        if status == 2:
            assert err.startswith("jaxrl: error: "), (argv, err)
        after = _snapshot(tree)
        changed = sorted(k for k, v in before.items() if after.get(k) != v)
        # A run this fuzz trained may be continued (`resume`) or replaced (`--overwrite`)
        # by a later example that succeeds: only inside that folder, never the originals.
        writer = status == 0 and (argv[:1] == ["resume"] or "--overwrite" in argv)
        target = (argv[1] if argv[:1] == ["resume"] else
                  argv[argv.index("--out") + 1] if "--out" in argv[:-1] else None)
        if writer and target:
            prefix = os.path.relpath(target, tree) + os.sep
            changed = [k for k in changed if k in original or not k.startswith(prefix)]
        assert not changed, (argv, changed)

    check()
    assert seen["examples"] >= min(EXAMPLES, 10)
    print(f"fuzz: {seen['examples']} examples passed ({seen['status 0']} exit 0, "
          f"{seen['status 2']} exit 2, {seen.get('trained', 0)} trained for real)")
