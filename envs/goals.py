"""Goal-conditioned pendulum: swing up to a goal angle and velocity and hold it there.

The task of the pendulum experiments of Levy et al. 2019 ("Learning Multi-Level
Hierarchies with Hindsight", arXiv 1712.00948): the gym pendulum (gymnax's `Pendulum-v1`
physics, reused, not copied) whose reward is sparse, -1 per step until the angle and the
angular velocity are both within a tolerance of the goal's (0 on that step, terminated).
A goal velocity near 0 at the goal angle is what "hold" means: the pendulum must arrive
slowly enough to stay. Registered as `GoalPendulum-v0` (goal upright and still) and
`GoalPendulum-Any-v0` (each episode's goal angle uniform on the circle, velocity 0).

The goal `(angle, velocity)` is drawn at every reset from a box around `params.goal` and
kept in the state, so a curriculum moves `params`. The env exposes the goal interface of
`jaxrl.envs.maze` (`goal_space`, `success`, `distance`, `achieved_goal`, `goal_reached`,
`goal_reward`, `obs_achieved`, `obs_goal`, `with_goal`) that hindsight relabelling uses.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from gymnax.environments.classic_control import pendulum

from jaxrl.config import ConfigError


@struct.dataclass
class GoalPendulumState(environment.EnvState):
    """Pendulum state plus this episode's goal."""

    theta: jax.Array  # float32 scalar, unbounded (wrapped only when compared)
    theta_dot: jax.Array  # float32 scalar
    goal: jax.Array  # [2] float32 (angle in [-pi, pi), velocity)
    time: int


@struct.dataclass(kw_only=True)
class GoalPendulumParams(environment.EnvParams):
    """Goal-pendulum parameters (all values, vmappable).

    Attributes:
      goal: [2] float32 centre of the goal box, (angle, velocity); angle 0 is upright.
      goal_spread: [2] float32 half-widths of the box each episode's goal is drawn from.
      angle_tolerance: success when the wrapped angle error is at most this (radians).
      speed_tolerance: ... and the velocity error at most this (radians per second).
      max_speed, max_torque, dt, g, m, l: gymnax `Pendulum-v1`'s physics.
      max_steps_in_episode: time limit (truncation).
    """

    goal: jax.Array
    goal_spread: jax.Array
    angle_tolerance: jax.Array = 0.2
    speed_tolerance: jax.Array = 0.6
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 - gymnax's name for the length
    max_steps_in_episode: int = 200


def wrap_angle(x: jax.Array) -> jax.Array:
    """Angles mapped to `[-pi, pi)`."""
    return (x + jnp.pi) % (2 * jnp.pi) - jnp.pi


class GoalPendulum(environment.Environment[GoalPendulumState, GoalPendulumParams]):
    """A pendulum that must reach and hold a goal angle and velocity (see the module).

    Observation `[5]` float32: `(cos theta, sin theta, theta_dot, goal_angle, goal_velocity)`.
    Action `[1]` torque in `[-max_torque, max_torque]`. Goals are `[2]` (angle, velocity).
    """

    def __init__(self, *, goal=(0.0, 0.0), goal_spread=(0.0, 0.0),
                 max_steps_in_episode: int = 200):
        self._physics = pendulum.Pendulum()
        self._goal, self._goal_spread = goal, goal_spread
        self._max_steps = max_steps_in_episode
        self.make_params()

    def make_params(self, goal=None, *, goal_spread=None,
                    angle_tolerance: float = 0.2, speed_tolerance: float = 0.6,
                    max_steps_in_episode: int | None = None) -> GoalPendulumParams:
        """Validated `GoalPendulumParams` (host code); unset goal and spread take the
        constructor's.

        Raises:
          ConfigError: a goal or spread that is not two numbers, a goal speed or spread
            beyond `max_speed`, a non-positive tolerance, or a non-positive time limit.
        """
        goal = np.asarray(self._goal if goal is None else goal, np.float32)
        spread = np.asarray(self._goal_spread if goal_spread is None else goal_spread,
                            np.float32)
        for name, value in (("goal", goal), ("goal_spread", spread)):
            if value.shape != (2,) or not np.isfinite(value).all():
                raise ConfigError(f"{name} must be two finite numbers (angle, velocity), got "
                                  f"{value.tolist()}")
        if (spread < 0).any() or abs(goal[1]) + spread[1] > 8.0:
            raise ConfigError(f"goal_spread must be non-negative and keep goal velocities "
                              f"within the max speed 8, got goal {goal.tolist()} spread "
                              f"{spread.tolist()}")
        for name, value in (("angle_tolerance", angle_tolerance),
                            ("speed_tolerance", speed_tolerance)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        limit = self._max_steps if max_steps_in_episode is None else max_steps_in_episode
        if type(limit) is not int or limit <= 0:
            raise ConfigError(f"max_steps_in_episode must be a positive int, got {limit!r}")
        return GoalPendulumParams(goal=jnp.asarray(goal), goal_spread=jnp.asarray(spread),
                                  angle_tolerance=jnp.float32(angle_tolerance),
                                  speed_tolerance=jnp.float32(speed_tolerance),
                                  max_steps_in_episode=limit)

    @property
    def default_params(self) -> GoalPendulumParams:
        return self.make_params()

    @property
    def name(self) -> str:
        return "GoalPendulum-v0"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params=None) -> spaces.Box:
        params = self.default_params if params is None else params
        return spaces.Box(-params.max_torque, params.max_torque, (1,), jnp.float32)

    def observation_space(self, params) -> spaces.Box:
        high = jnp.asarray([1.0, 1.0, params.max_speed, jnp.pi, params.max_speed],
                           jnp.float32)
        return spaces.Box(-high, high, (5,), jnp.float32)

    def goal_space(self, params=None) -> spaces.Box:
        """Goals are `[2]` float32 (angle in `[-pi, pi]`, velocity in `[-8, 8]`)."""
        high = jnp.asarray([jnp.pi, 8.0], jnp.float32)
        return spaces.Box(-high, high, (2,), jnp.float32)

    def get_obs(self, state: GoalPendulumState, params=None, key=None) -> jax.Array:
        return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot,
                          state.goal[0], state.goal[1]]).astype(jnp.float32)

    def achieved_goal(self, state: GoalPendulumState) -> jax.Array:
        """The goal this state achieves: `[2]` (wrapped angle, velocity)."""
        return jnp.stack([wrap_angle(state.theta), state.theta_dot])

    def goal_error(self, achieved: jax.Array, goal: jax.Array) -> jax.Array:
        """`[2]` absolute (wrapped angle, velocity) differences of two goals."""
        return jnp.abs(jnp.stack([wrap_angle(achieved[0] - goal[0]), achieved[1] - goal[1]]))

    def goal_reached(self, achieved: jax.Array, goal: jax.Array,
                     params: GoalPendulumParams) -> jax.Array:
        """bool scalar: both errors within their tolerances."""
        error = self.goal_error(achieved, goal)
        return (error[0] <= params.angle_tolerance) & (error[1] <= params.speed_tolerance)

    def goal_reward(self, achieved: jax.Array, goal: jax.Array,
                    params: GoalPendulumParams) -> jax.Array:
        """float32 scalar: 0 if `achieved` reaches `goal`, else -1."""
        return self.goal_reached(achieved, goal, params).astype(jnp.float32) - 1.0

    def obs_achieved(self, obs: jax.Array) -> jax.Array:
        """The achieved goal `[2]` an observation `[5]` shows."""
        return jnp.stack([jnp.arctan2(obs[1], obs[0]), obs[2]])

    def obs_goal(self, obs: jax.Array) -> jax.Array:
        """The goal `[2]` an observation `[5]` shows."""
        return obs[3:]

    def with_goal(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """The observation `obs [5]` would be with goal `goal [2]`."""
        return obs.at[3:].set(goal)

    def distance(self, state: GoalPendulumState, params: GoalPendulumParams) -> jax.Array:
        """float32 scalar: the Euclidean norm of the (wrapped angle, velocity) error."""
        return jnp.linalg.norm(self.goal_error(self.achieved_goal(state), state.goal))

    def success(self, state: GoalPendulumState, params: GoalPendulumParams) -> jax.Array:
        """bool scalar: the state reaches this episode's goal."""
        return self.goal_reached(self.achieved_goal(state), state.goal, params)

    def _physics_params(self, params: GoalPendulumParams) -> pendulum.EnvParams:
        return pendulum.EnvParams(max_speed=params.max_speed, max_torque=params.max_torque,
                                  dt=params.dt, g=params.g, m=params.m, l=params.l,
                                  max_steps_in_episode=params.max_steps_in_episode)

    def reset_env(self, key: jax.Array, params: GoalPendulumParams):
        start_key, goal_key = jax.random.split(key)
        _, start = self._physics.reset_env(start_key, self._physics_params(params))
        offset = jax.random.uniform(goal_key, (2,), jnp.float32, -1.0, 1.0) * params.goal_spread
        goal = params.goal + offset
        goal = jnp.stack([wrap_angle(goal[0]), goal[1]])
        state = GoalPendulumState(theta=start.theta, theta_dot=start.theta_dot, goal=goal,
                                  time=0)
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: GoalPendulumState, action: jax.Array,
                 params: GoalPendulumParams):
        inner = pendulum.EnvState(theta=state.theta, theta_dot=state.theta_dot,
                                  last_u=jnp.float32(0.0), time=state.time)
        _, inner, _, _, _ = self._physics.step_env(key, inner, jnp.asarray(action),
                                                   self._physics_params(params))
        state = state.replace(theta=inner.theta, theta_dot=inner.theta_dot, time=inner.time)
        reward = self.goal_reward(self.achieved_goal(state), state.goal, params)
        return self.get_obs(state), state, reward, self.success(state, params), {}


GOAL_ENVS = {
    "GoalPendulum-v0": GoalPendulum,
    # Every episode a goal angle drawn uniformly on the circle, to be reached slowly.
    "GoalPendulum-Any-v0": functools.partial(GoalPendulum, goal_spread=(float(np.pi), 0.0)),
}
