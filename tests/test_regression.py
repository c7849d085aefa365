"""Every registered agent computes what it computed before the agent contract.

`tests/regression/*.npz` were recorded on commit 5d8e3c7 (`tests/regression/record.py`),
before agents became `Agent` records built once per config: a short fixed-seed run of
each agent, its metrics and final parameters. The same run through today's API must give
the same numbers, bitwise on CPU: the refactor moved code, not arithmetic.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest

from jaxrl import agents, runner

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regression")
sys.path.insert(0, HERE)
from cases import CASES, flatten  # noqa: E402


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_equals_the_recorded_one(case):
    name, kwargs, hparams = CASES[case]
    agent = agents.get(name)
    config = agent.Config(**kwargs)
    state, metrics = jax.jit(runner.make_train(agent, config))(
        jax.random.key(0), agent.HParams.create(**hparams))
    got = {f"metrics/{k}": np.asarray(v) for k, v in metrics.items()}
    got.update({f"params{k}": v for k, v in flatten(state.params).items()})
    recorded = np.load(os.path.join(HERE, f"{case}.npz"))
    assert sorted(got) == sorted(recorded.files)
    for k in recorded.files:
        np.testing.assert_array_equal(got[k], recorded[k], err_msg=f"{case}: {k}")
