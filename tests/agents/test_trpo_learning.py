"""TRPO learning checks: fixed seeds, issue 3's thresholds (`make test-slow`)."""

import pytest

from jaxrl.agents import trpo
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_default_config():
    per_seed = learning_check(trpo, trpo.Config(env="CartPole-v1", total_timesteps=500_000),
                              trpo.HParams.create())
    assert per_seed.mean() >= 475
