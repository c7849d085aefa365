"""Continuous-action learning checks: fixed seeds, honest thresholds (`make test-slow`).

Each check trains 4 vmapped seeds through the same host loop as `jaxrl train` and reads the
final return as the CLI does: the mean return of the training episodes completed in the
last 5% of iterations (`jaxrl.testing.learning_check`), i.e. of the exploring policy.
Thresholds: on Pendulum-v1, SAC, TD3 and DDPG >= -250 within 1e5 env steps,
NAF >= -300 within 2e5, sampling and gradient-ascent Q-learning >= -400 within 2e5; on
MountainCarContinuous-v0, SAC or TD3 with action noise >= 80 within 3e5.
"""

import pytest

from jaxrl.agents import REGISTRY
from jaxrl.testing import learning_check

pytestmark = pytest.mark.slow


def final_returns(name, env):
    """Per-seed final returns, 4 seeds, with the settings `jaxrl train` uses."""
    agent = REGISTRY[name]
    return learning_check(agent, *agent.settings(env), num_seeds=4, seed=0)


@pytest.mark.parametrize("name", ["sac", "td3", "ddpg"])
def test_actor_critics_pendulum(name):
    assert final_returns(name, "Pendulum-v1").mean() >= -250


def test_naf_pendulum():
    assert final_returns("naf", "Pendulum-v1").mean() >= -300


@pytest.mark.parametrize("name", ["cq-sample", "cq-grad"])
def test_continuous_q_learning_pendulum(name):
    assert final_returns(name, "Pendulum-v1").mean() >= -400


def test_td3_mountain_car_continuous_with_ou_noise():
    # OU exploration noise (jaxrl/data/tuned/ddpg.toml); the final return is of the noisy
    # training episodes.
    assert final_returns("td3", "MountainCarContinuous-v0").mean() >= 80
