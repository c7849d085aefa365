"""Rollout: transitions follow gymnax 1.0 (final observations, flags); greedy evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs, rollout
from jaxrl.config import ConfigError


def always(action):
    return lambda params, obs, key: jnp.int32(action)


def make_env(env_id):
    env, params = envs.make(env_id)
    return envs.EpisodeStatistics(env), params


def test_transitions_keep_final_observation_and_flags():
    env, params = make_env("probe/one-step-delay")  # obs 0 -> obs 1 (terminal) -> reset to 0
    collect = rollout.make_rollout(env, params, always(0), 6)
    state, obs = rollout.reset_envs(env, params, jax.random.key(0), 3)
    _, next_obs, traj, episodes = jax.jit(collect)(None, state, obs, jax.random.key(1))
    assert traj.obs.shape == (6, 3, 1) and traj.reward.shape == (6, 3)
    np.testing.assert_array_equal(traj.obs[:, 0, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(traj.next_obs[:, 0, 0], [1, 1, 1, 1, 1, 1])  # pre-reset
    np.testing.assert_array_equal(traj.terminated[:, 0], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(traj.reward[:, 0], [0, 1, 0, 1, 0, 1])
    assert not traj.truncated.any()
    np.testing.assert_array_equal(next_obs[:, 0], [0, 0, 0])  # auto-reset after step 6
    m = rollout.episode_metrics(episodes)
    assert float(m["episode/count"]) == 9 and float(m["episode/return"]) == 1.0
    assert float(m["episode/length"]) == 2.0


def test_episode_metrics_are_nan_without_a_finished_episode():
    env, params = make_env("probe/time-limit-endless")  # 20-step limit
    collect = rollout.make_rollout(env, params, always(0), 5)
    state, obs = rollout.reset_envs(env, params, jax.random.key(0), 2)
    *_, episodes = collect(None, state, obs, jax.random.key(1))
    m = rollout.episode_metrics(episodes)
    assert float(m["episode/count"]) == 0 and np.isnan(m["episode/return"])


@pytest.mark.parametrize("max_steps, expected", [(21, 20.0), (20, 20.0), (19, np.nan)])
def test_evaluate_returns_first_episode_per_env(max_steps, expected):
    env, params = make_env("probe/time-limit-endless")
    evaluate = jax.jit(rollout.make_evaluate(env, params, always(0), 5, max_steps))
    returns = np.asarray(evaluate(None, jax.random.key(0)))
    np.testing.assert_array_equal(returns, np.full(5, expected, np.float32))


def test_evaluate_scores_the_policy_it_is_given():
    # probe/action-reward pays 1 iff the action says whether obs > 0. A policy reading the
    # observation scores 1 on every episode; "always 1" scores 1 exactly where obs > 0.
    env, params = make_env("probe/action-reward")
    smart = lambda p, obs, key: (obs[0] > 0).astype(jnp.int32)  # noqa: E731
    returns = rollout.make_evaluate(env, params, smart, 64, 2)(None, jax.random.key(3))
    np.testing.assert_array_equal(returns, np.ones(64))
    returns = np.asarray(rollout.make_evaluate(env, params, always(1), 64, 2)(
        None, jax.random.key(3)))
    assert set(np.unique(returns)) == {0.0, 1.0}


def test_experiment_rejects_negative_eval_episodes(tmp_path):
    from jaxrl import experiment
    from jaxrl.agents import ppo
    config = ppo.Config(num_envs=4, rollout_len=16, total_timesteps=128)
    with pytest.raises(ConfigError, match="eval_episodes"):
        experiment.train(ppo.AGENT, config, ppo.HParams.create(), str(tmp_path / "r"),
                         eval_episodes=-1, quiet=True)
