"""The Weights & Biases sink: logs means over seeds at env steps, and never stops training."""

import json
import sys
import types
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import cli, logger, runner


class FakeRun:
    def __init__(self, fail_log=False):
        self.logged, self.finished, self.fail_log = [], 0, fail_log

    def log(self, row, step):
        if self.fail_log:
            raise ConnectionError("wandb is down")
        self.logged.append((step, row))

    def finish(self):
        self.finished += 1


@pytest.fixture
def fake_wandb(monkeypatch):
    """Install a fake `wandb` module; returns a function giving it a run that may fail."""
    module = types.ModuleType("wandb")
    module.init_kwargs = []

    def install(fail_log=False):
        module.run = FakeRun(fail_log)

        def init(**kwargs):
            module.init_kwargs.append(kwargs)
            return module.run

        module.init = init
        monkeypatch.setitem(sys.modules, "wandb", module)
        return module

    return install


def test_logs_the_mean_over_seeds_at_env_steps_and_finishes(fake_wandb):
    wandb = fake_wandb()
    sink = logger.WandbLogger(10, project="p", name="n", config={"a": 1})
    sink.on_chunk(2, {"loss/total": np.array([[1.0, 2.0], [3.0, 6.0]]),
                      "episode/return": np.array([[np.nan, 4.0], [np.nan, np.nan]])}, {})
    sink.on_end(None)
    assert wandb.init_kwargs == [{"project": "p", "name": "n", "config": {"a": 1},
                                  "dir": None}]
    # Iterations 3 and 4 (1-based) at 10 env steps each; a metric no seed has is left out.
    assert wandb.run.logged == [(30, {"loss/total": 2.0}),
                                (40, {"loss/total": 4.0, "episode/return": 4.0})]
    assert wandb.run.finished == 1


def test_a_missing_package_warns_once_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink = logger.WandbLogger(1)
        sink.on_chunk(0, {"loss/total": np.ones((1, 2))}, {})
        sink.on_end(None)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "jaxrl[wandb]" in messages[0]


@struct.dataclass
class ToyState:
    step: jnp.ndarray  # int32 scalar


def toy_init(key, hp):
    return ToyState(step=jnp.int32(0))


def toy_iteration(state, key, hp):
    return state.replace(step=state.step + 1), {"loss/total": state.step.astype(jnp.float32)}


def test_a_failing_backend_warns_once_and_training_completes(fake_wandb, tmp_path):
    wandb = fake_wandb(fail_log=True)
    path = tmp_path / "metrics.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sinks = [logger.JsonlLogger(str(path), 4), logger.WandbLogger(4)]
        result = runner.run(toy_init, toy_iteration, num_iterations=6, steps_per_iteration=4,
                            hparams=None, num_seeds=2, chunk_iterations=2, devices=1,
                            callbacks=sinks)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "wandb is down" in messages[0]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 7))
    np.testing.assert_array_equal(result.metrics["loss/total"], [np.arange(6)] * 2)
    assert wandb.run.finished == 0  # disabled after the failure: nothing more is called


def test_cli_flag_logs_a_training_run(fake_wandb, tmp_path):
    wandb = fake_wandb()
    out = tmp_path / "run"
    code = cli.main(["train", "ppo", "--num-envs", "2", "--rollout-len", "8",
                     "--total-timesteps", "32", "--num-epochs", "1", "--num-minibatches", "1",
                     "--wandb-project", "proj", "--out", str(out), "--no-progress"])
    assert code == 0
    assert [kw["project"] for kw in wandb.init_kwargs] == ["proj"]
    assert [step for step, _ in wandb.run.logged] == [16, 32]  # env steps per seed
    assert "loss/total" in wandb.run.logged[0][1] and wandb.run.finished == 1
    options = json.loads((out / "config.json").read_text())["run"]
    assert options["wandb"] is True and options["wandb_project"] == "proj"
