"""`jaxrl.results.load`: run folders (multi-seed, resumed) as one tidy table."""

import json
import os
import sys

import numpy as np
import pytest

from jaxrl import experiment, results, testing
from jaxrl.agents import REGISTRY, ppo
from jaxrl.config import ConfigError

CONFIG = ppo.Config(env="CartPole-v1", num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 6,
                    num_minibatches=2, num_epochs=1, hidden_sizes=(8,))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    whole, cut = str(root / "whole"), str(root / "cut")
    hparams = ppo.HParams.create()
    experiment.train(ppo.AGENT, CONFIG, hparams, whole, num_seeds=3, seed=5,
                     chunk_iterations=2, progress=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        experiment.train(ppo.AGENT, CONFIG, hparams, cut, num_seeds=2, chunk_iterations=2,
                         progress=False, quiet=True, callbacks=[testing.StopAt(2)])
    experiment.resume(cut, REGISTRY, progress=False, quiet=True)
    return whole, cut


def test_load_gives_one_row_per_run_seed_and_iteration(runs):
    whole, cut = runs
    frame = results.load([whole, cut])
    assert len(frame) == (3 + 2) * CONFIG.num_iterations
    for column in ("run", "agent", "env", "seed", "iteration", "env_steps", "wall_time",
                   "episode/return", "loss/total"):
        assert column in frame.columns, column
    first = frame[frame.run == whole]
    assert sorted(first.seed.unique()) == [5, 6, 7]
    assert (first.agent == "ppo").all() and (first.env == "CartPole-v1").all()
    # The values are those of metrics.jsonl, seed by seed.
    with open(os.path.join(whole, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    for s in range(3):
        got = first[first.seed == 5 + s].sort_values("iteration")
        want = [np.nan if r["loss/total"][s] is None else r["loss/total"][s] for r in rows]
        np.testing.assert_allclose(got["loss/total"], want)
        np.testing.assert_array_equal(got.env_steps, [r["env_steps"] for r in rows])
        assert np.all(np.diff(got.wall_time) >= 0)
    # The resumed run reads as one run, every iteration once.
    second = frame[frame.run == cut]
    assert sorted(second.groupby("seed").iteration.count()) == [CONFIG.num_iterations] * 2


def test_load_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="metrics.jsonl"):
        results.load(str(tmp_path))


def test_missing_pandas_is_one_line_naming_the_extra(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r"jaxrl\[results\]"):
        results.load(runs[0])
