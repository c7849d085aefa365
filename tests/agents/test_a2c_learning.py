"""A2C learning checks: fixed seeds, honest thresholds (`make test-slow`).

Thresholds are issue 3's; the final return is the CLI's (`jaxrl.testing.learning_check`).
"""

import pytest

from jaxrl.agents import a2c
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_default_config():
    per_seed = learning_check(a2c, a2c.Config(env="CartPole-v1", total_timesteps=1_000_000),
                              a2c.HParams.create())
    assert per_seed.mean() >= 450
