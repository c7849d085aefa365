"""Non-finite guard of the runner, and the TensorBoard sink that never stops training."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl import cli, logger, runner


@struct.dataclass
class ToyState:
    params: jax.Array  # float32 scalar
    step: jax.Array  # int32 scalar


@struct.dataclass
class ToyHParams:
    poison_at: jax.Array  # iteration (0-based) at which this seed's loss turns NaN; -1: never
    poison_params: jax.Array  # 1.0: poison the parameters instead of the loss


def toy_init(key, hp):
    return ToyState(params=jnp.float32(0.0), step=jnp.int32(0))


def toy_iteration(state, key, hp):
    hit = state.step == hp.poison_at
    loss = jnp.where(hit & (hp.poison_params == 0), jnp.nan, 0.0)  # independent of params
    params = jnp.where(hit & (hp.poison_params == 1), jnp.inf, state.params + 1.0)
    return (ToyState(params=params, step=state.step + 1),
            {"loss/total": loss, "episode/return": jnp.float32(jnp.nan)})


class Recorder:
    def __init__(self):
        self.firsts, self.aborted = [], False

    def on_chunk(self, first, metrics, info):
        self.firsts.append(first)

    def on_end(self, result):
        pass

    def on_abort(self):
        self.aborted = True


def run_toy(poison_at, poison_params, chunk=4):
    hp = ToyHParams(poison_at=jnp.array(poison_at, jnp.int32),
                    poison_params=jnp.array(poison_params, jnp.float32))
    rec = Recorder()
    runner.run(toy_init, toy_iteration, num_iterations=12, steps_per_iteration=1, hparams=hp,
               num_seeds=3, hparams_batched=True, chunk_iterations=chunk, devices=1,
               callbacks=[rec])
    return rec


def test_nan_loss_names_seed_and_iteration_and_keeps_earlier_chunks():
    rec = None
    with pytest.raises(runner.NonFiniteError,
                       match=r"seed 1 at iteration 6: loss/total$") as info:
        rec = run_toy([-1, 5, 9], [0.0, 0.0, 0.0])
    assert "seed 2" not in str(info.value)  # the earliest failure is reported


def test_callbacks_see_only_good_chunks_and_are_aborted():
    hp = ToyHParams(poison_at=jnp.array([-1, 5, -1], jnp.int32),
                    poison_params=jnp.zeros(3, jnp.float32))
    rec = Recorder()
    with pytest.raises(runner.NonFiniteError):
        runner.run(toy_init, toy_iteration, num_iterations=12, steps_per_iteration=1,
                   hparams=hp, num_seeds=3, hparams_batched=True, chunk_iterations=4,
                   devices=1, callbacks=[rec])
    assert rec.firsts == [0] and rec.aborted  # the chunk holding iteration 6 is not logged


def test_non_finite_parameters_name_the_leaf():
    with pytest.raises(runner.NonFiniteError, match=r"seed 2 by iteration 8 \(chunk from iteration 5\): state\.params$"):
        run_toy([-1, -1, 6], [0.0, 0.0, 1.0])


def test_a_healthy_run_passes_the_guard():
    run_toy([-1, -1, -1], [0.0, 0.0, 0.0])


def test_cli_reports_a_diverged_ppo_run_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "ppo", "--num-envs", "4", "--rollout-len", "16",
                     "--total-timesteps", "1024", "--learning-rate", "1e30",
                     "--max-grad-norm", "1e30", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("jaxrl: error: training stopped: non-finite")
    assert "seed 0 at iteration 1:" in err[0] and "Traceback" not in err[0]
    # The first chunk already diverged: no metrics file (a rerun may reuse the folder),
    # no summary, and the folder holds only the config.
    assert sorted(os.listdir(out)) == ["config.json"]


def test_tensorboard_sink_writes_events(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = logger.TensorBoardLogger(str(tmp_path / "tb"), steps_per_iteration=10)
    tb.on_chunk(0, {"loss/total": np.array([[1.0, 2.0], [3.0, np.nan]]),
                    "episode/return": np.full((2, 2), np.nan)}, {})
    tb.on_end(None)
    files = os.listdir(tmp_path / "tb")
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert os.path.getsize(tmp_path / "tb" / files[0]) > 0


def test_tensorboard_failure_warns_and_never_raises(tmp_path, monkeypatch):
    tbx = pytest.importorskip("tensorboardX")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tbx.SummaryWriter, "add_scalar", broken)
    tb = logger.TensorBoardLogger(str(tmp_path / "tb"), steps_per_iteration=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tb.on_chunk(0, {"loss/total": np.ones((1, 3))}, {})
        tb.on_chunk(3, {"loss/total": np.ones((1, 3))}, {})  # disabled: no second warning
        tb.on_end(None)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "disk full" in messages[0]
