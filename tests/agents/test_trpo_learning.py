"""TRPO learning checks: fixed seeds, issue 3's thresholds (`make test-slow`)."""

import pytest

from jaxrl.agents import trpo
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_default_config():
    per_seed = learning_check(trpo.AGENT, *trpo.AGENT.settings("CartPole-v1"))
    assert per_seed.mean() >= 475


def test_pendulum_continuous():
    # Issue 3: TRPO on Pendulum-v1 >= -400 within 1e6 (settings in jaxrl/data/tuned).
    per_seed = learning_check(trpo.AGENT, *trpo.AGENT.settings("Pendulum-v1"))
    assert per_seed.mean() >= -400
