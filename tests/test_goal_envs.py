"""Goal-conditioned envs (`jaxrl.envs.goals`, the goal interface of `jaxrl.envs.maze`):
the reward and termination every step returns agree with `goal_reward` / `goal_reached`
on the goal read back from the observation, goals round-trip through observations, and
the goal pendulum follows gymnax's pendulum physics with a sparse goal test."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
import gymnax  # noqa: E402,I001 - after jaxrl, which sets XLA flags first
from jaxrl.config import ConfigError
from jaxrl.envs.goals import GoalPendulum, GoalPendulumState
from jaxrl.envs.maze import DiscreteMaze, PointMaze

KEY = jax.random.key(0)
STEPS = 300

GOAL_ENVS = {
    # A start and goal close enough that random actions reach the goal sometimes.
    "point": lambda: (lambda e: (e, e.make_params(start=(0.2, 0.2), goal=(0.3, 0.3),
                                                  goal_radius=0.1)))(PointMaze()),
    "point01": lambda: (lambda e: (e, e.make_params(goal=(0.25, 0.2), goal_radius=0.1,
                                                    zero_one_reward=True)))(PointMaze()),
    "grid_image": lambda: (lambda e: (e, e.make_params(goal=(1, 3))))(DiscreteMaze(size=5)),
    "grid_flat": lambda: (lambda e: (e, e.make_params(goal=(3, 3))))(
        DiscreteMaze(size=5, observation="flat")),
    # Wide tolerances so a random torque sequence succeeds now and then.
    "pendulum": lambda: (lambda e: (e, e.make_params(goal=(3.0, 0.0), goal_spread=(0.2, 0.5),
                                                     angle_tolerance=1.5,
                                                     speed_tolerance=4.0)))(GoalPendulum()),
}


@functools.lru_cache(maxsize=None)
def random_rollout(name):
    """`STEPS` auto-resetting steps with uniform actions: per step the pre-reset
    observation, reward, terminated flag, and the pre-step observation."""
    env, params = GOAL_ENVS[name]()

    def step(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        action = env.action_space(params).sample(act_key)
        next_obs, state, reward, terminated, truncated, info = env.step(
            step_key, state, action, params)
        return (next_obs, state), (obs, info["final_observation"], reward, terminated)

    @jax.jit
    def run(key):
        reset_key, run_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)
        return jax.lax.scan(step, (obs, state), jax.random.split(run_key, STEPS))[1]

    return env, params, jax.tree.map(np.asarray, run(KEY))


@pytest.mark.parametrize("name", sorted(GOAL_ENVS))
def test_step_reward_and_termination_agree_with_goal_functions(name):
    env, params, (obs, final_obs, reward, terminated) = random_rollout(name)
    achieved = jax.vmap(env.obs_achieved)(final_obs)
    goal = jax.vmap(env.obs_goal)(final_obs)
    expected_reward = jax.vmap(env.goal_reward, in_axes=(0, 0, None))(achieved, goal, params)
    reached = jax.vmap(env.goal_reached, in_axes=(0, 0, None))(achieved, goal, params)
    np.testing.assert_allclose(reward, expected_reward, atol=1e-6)
    np.testing.assert_array_equal(terminated, reached)
    # Both outcomes occur, so the agreement is not vacuous.
    assert 0 < terminated.sum() < STEPS


@pytest.mark.parametrize("name", sorted(GOAL_ENVS))
def test_goals_round_trip_through_observations(name):
    env, params, (obs, _, _, _) = random_rollout(name)
    goals = jax.vmap(env.obs_goal)(obs)
    other = jnp.roll(jax.vmap(env.obs_achieved)(obs), 1, axis=0)  # some other valid goals
    relabelled = jax.vmap(env.with_goal)(obs, other)
    np.testing.assert_allclose(jax.vmap(env.obs_goal)(relabelled), other, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(env.with_goal)(obs, goals), obs, atol=1e-6)
    # The rest of the observation is untouched: the achieved goal is the same.
    np.testing.assert_allclose(jax.vmap(env.obs_achieved)(relabelled),
                               jax.vmap(env.obs_achieved)(obs), atol=1e-6)
    assert jax.vmap(env.goal_space(params).contains)(goals).all()


@pytest.mark.parametrize("name", sorted(GOAL_ENVS))
def test_success_matches_goal_reached_on_the_state(name):
    env, params = GOAL_ENVS[name]()
    obs, state = env.reset(KEY, params)
    np.testing.assert_allclose(env.obs_achieved(obs), env.achieved_goal(state), atol=1e-6)
    assert bool(env.success(state, params)) == bool(
        env.goal_reached(env.achieved_goal(state), env.obs_goal(obs), params))


def test_pendulum_follows_gymnax_physics():
    env, params = GoalPendulum(), GoalPendulum().default_params
    ref = gymnax.environments.classic_control.pendulum.Pendulum()
    ref_params = ref.default_params
    obs, state = env.reset(KEY, params)
    ref_state = ref.reset_env(jax.random.split(KEY)[0], ref_params)[1]
    np.testing.assert_allclose([state.theta, state.theta_dot],
                               [ref_state.theta, ref_state.theta_dot])
    for torque in [2.0, -1.0, 0.5, 3.0]:
        obs, state, *_ = env.step_env(KEY, state, jnp.asarray([torque]), params)
        ref_obs, ref_state, *_ = ref.step_env(KEY, ref_state, jnp.asarray([torque]), ref_params)
        np.testing.assert_allclose(obs[:3], ref_obs, rtol=1e-6)


@pytest.mark.parametrize("theta,theta_dot,reached", [
    (2 * np.pi + 0.1, 0.5, True),   # wrapped angle error 0.1, speed error 0.5
    (-0.19, -0.59, True),
    (0.25, 0.0, False),             # angle error above 0.2
    (0.0, 0.7, False),              # speed error above 0.6
    (np.pi, 0.0, False),            # hanging down
])
def test_pendulum_goal_test_by_hand(theta, theta_dot, reached):
    env = GoalPendulum()
    params = env.default_params  # goal upright and still, tolerances 0.2 and 0.6
    state = GoalPendulumState(theta=jnp.float32(theta), theta_dot=jnp.float32(theta_dot),
                              goal=jnp.zeros(2, jnp.float32), time=0)
    assert bool(env.success(state, params)) == reached
    assert float(env.goal_reward(env.achieved_goal(state), state.goal, params)) == (
        0.0 if reached else -1.0)


def test_pendulum_draws_goals_inside_the_spread():
    env = GoalPendulum()
    params = env.make_params(goal=(1.0, -2.0), goal_spread=(0.5, 1.0))
    goals = jax.vmap(lambda k: env.reset(k, params)[1].goal)(jax.random.split(KEY, 256))
    assert (np.abs(np.asarray(goals) - [1.0, -2.0]) <= [0.5 + 1e-6, 1.0 + 1e-6]).all()
    assert np.asarray(goals).std(axis=0).min() > 0.2


def test_pendulum_is_registered_and_validates():
    env, params = envs.make("GoalPendulum-v0")
    assert envs.env_spec(env, params).obs_shape == (5,)
    np.testing.assert_allclose(params.goal_spread, [0.0, 0.0])
    _, params = envs.make("GoalPendulum-Any-v0")
    np.testing.assert_allclose(params.goal_spread, [np.pi, 0.0])
    for kwargs in [dict(goal=(0.0,)), dict(goal_spread=(-1.0, 0.0)),
                   dict(angle_tolerance=0.0), dict(max_steps_in_episode=0),
                   dict(goal=(0.0, 7.5), goal_spread=(0.0, 1.0))]:
        with pytest.raises(ConfigError):
            GoalPendulum().make_params(**kwargs)
