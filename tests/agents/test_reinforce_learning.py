"""REINFORCE learning check: fixed seeds, issue 3's threshold (`make test-slow`)."""

import pytest

from jaxrl.agents import reinforce
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_reward_to_go_with_value_baseline():
    config, hparams = reinforce.AGENT.settings("CartPole-v1")
    assert (config.weight, config.baseline) == ("reward_to_go", "value")
    per_seed = learning_check(reinforce.AGENT, config, hparams)
    assert per_seed.mean() >= 400
