"""A2C learning checks: fixed seeds, honest thresholds (`make test-slow`).

Thresholds are issue 3's; the final return is the CLI's (`jaxrl.testing.learning_check`).
"""

import pytest

from jaxrl.agents import a2c
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def test_cartpole_default_config():
    config = a2c.Config(env="CartPole-v1", total_timesteps=1_000_000)
    per_seed = learning_check(a2c.AGENT, config, a2c.HParams.create())
    assert per_seed.mean() >= 450


def test_pendulum_continuous():
    # Issue 3: A2C on Pendulum-v1 >= -400 within 1e6 (settings in bench/RESULTS.md).
    config = a2c.Config(env="Pendulum-v1", total_timesteps=1_000_000, num_envs=8,
                        rollout_len=8, optimizer="adam", anneal_lr=False,
                        normalize_advantages=True, normalize_obs=True)
    hparams = a2c.HParams.create(learning_rate=1e-3, gamma=0.9, gae_lambda=0.95,
                                 reward_scale=0.1, ent_coef=0.0)
    per_seed = learning_check(a2c.AGENT, config, hparams)
    assert per_seed.mean() >= -400
