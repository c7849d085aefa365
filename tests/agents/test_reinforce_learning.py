"""REINFORCE learning check: fixed seeds, issue 3's threshold (`make test-slow`)."""

import pytest

from jaxrl.agents import reinforce
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_reward_to_go_with_value_baseline():
    config = reinforce.Config(env="CartPole-v1", weight="reward_to_go", baseline="value",
                              total_timesteps=1_000_000)
    per_seed = learning_check(reinforce.AGENT, config, reinforce.HParams.create())
    assert per_seed.mean() >= 400
