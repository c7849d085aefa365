"""Environment wrappers over gymnax 1.0's auto-resetting `step`.

Each wrapper overrides `reset` and `step` (the auto-resetting ones), delegates everything
else to the wrapped env, and keeps its own array state in a struct that nests the inner
state in a named field. Wrappers compose: `EpisodeStatistics(ClipAction(env))`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from jaxrl.config import ConfigError


class Wrapper:
    """Base wrapper: forwards `reset`, `step` and every other attribute to `env`."""

    def __init__(self, env: Any):
        if not (hasattr(env, "step") and hasattr(env, "reset")):
            raise ConfigError(f"env must be a gymnax Environment, got {type(env).__name__}")
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    @property
    def default_params(self):
        return self._env.default_params

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        return self._env.step(key, state, action, params)


@struct.dataclass
class EpisodeStatisticsState:
    """Running return and length of the current episode, around the inner state."""

    env_state: Any
    episode_return: jax.Array  # float32 scalar, undiscounted return so far
    episode_length: jax.Array  # int32 scalar, steps so far


class EpisodeStatistics(Wrapper):
    """Report the undiscounted return and length of each completed episode in `info`.

    `info["episode/done"]` is True on the step that ended an episode (terminated or
    truncated); `info["episode/return"]` and `info["episode/length"]` hold that episode's
    totals on such steps and 0 elsewhere, so loggers average them over `episode/done` only
    and never log zeros before the first episode ends.
    """

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        return obs, EpisodeStatisticsState(env_state, jnp.float32(0.0), jnp.int32(0))

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        ret = state.episode_return + reward.astype(jnp.float32)
        length = state.episode_length + 1
        info = {**info,
                "episode/done": done,
                "episode/return": jnp.where(done, ret, 0.0),
                "episode/length": jnp.where(done, length, 0)}
        new_state = EpisodeStatisticsState(
            env_state, jnp.where(done, 0.0, ret), jnp.where(done, 0, length))
        return obs, new_state, reward, terminated, truncated, info


class FlattenObservation(Wrapper):
    """Flatten observations (and `info["final_observation"]`) to one axis."""

    def observation_space(self, params):
        space = self._env.observation_space(params)
        size = int(np.prod(space.shape))
        low = np.broadcast_to(np.asarray(space.low), space.shape).reshape(-1)
        high = np.broadcast_to(np.asarray(space.high), space.shape).reshape(-1)
        return spaces.Box(low, high, (size,), space.dtype)

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return obs.reshape(-1), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params)
        info = {**info, "final_observation": info["final_observation"].reshape(-1)}
        return obs.reshape(-1), state, reward, terminated, truncated, info


@struct.dataclass
class NormalizeObservationState:
    """Running mean and variance of observations (Welford/Chan merge), around the inner state."""

    env_state: Any
    mean: jax.Array   # [*obs_shape]
    var: jax.Array    # [*obs_shape]
    count: jax.Array  # float32 scalar; starts at a small epsilon so the first update is defined


class NormalizeObservation(Wrapper):
    """Normalise observations by running statistics kept in the env state.

    The statistics are per environment copy (each vmapped env keeps its own), updated with
    every observation the agent sees. `info["final_observation"]` is normalised with the same
    statistics as the observation returned alongside it, so `next_obs` stays consistent.
    Output is `clip((obs - mean) / sqrt(var + eps), -clip, clip)`.
    """

    def __init__(self, env: Any, *, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__(env)
        if not (isinstance(clip, (int, float)) and clip > 0):
            raise ConfigError(f"clip must be a positive number, got {clip!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon > 0):
            raise ConfigError(f"epsilon must be a positive number, got {epsilon!r}")
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    def _update(self, state: NormalizeObservationState, obs: jax.Array):
        count = state.count + 1.0
        delta = obs - state.mean
        mean = state.mean + delta / count
        m2 = state.var * state.count + delta * (obs - mean)
        return state.replace(mean=mean, var=m2 / count, count=count)

    def _normalize(self, state: NormalizeObservationState, obs: jax.Array) -> jax.Array:
        z = (obs - state.mean) / jnp.sqrt(state.var + self.epsilon)
        return jnp.clip(z, -self.clip, self.clip)

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        obs = obs.astype(jnp.float32)
        state = NormalizeObservationState(
            env_state, jnp.zeros_like(obs), jnp.ones_like(obs), jnp.float32(1e-4))
        state = self._update(state, obs)
        return self._normalize(state, obs), state

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        state = self._update(state.replace(env_state=env_state), obs.astype(jnp.float32))
        final = info["final_observation"].astype(jnp.float32)
        info = {**info, "final_observation": self._normalize(state, final)}
        return self._normalize(state, obs), state, reward, terminated, truncated, info


class ClipAction(Wrapper):
    """Clip continuous actions to the action space's bounds before the inner step.

    The agent keeps the unclipped action (its log-probability is what the policy gradient
    needs); only the environment sees the clipped one.
    """

    def __init__(self, env: Any, params: Any = None):
        super().__init__(env)
        space = env.action_space(params if params is not None else env.default_params)
        if not isinstance(space, spaces.Box):
            raise ConfigError(
                f"ClipAction needs a continuous (Box) action space, got {type(space).__name__}")
        self.low = np.asarray(space.low, np.float32)
        self.high = np.asarray(space.high, np.float32)

    def step(self, key, state, action, params=None):
        return self._env.step(key, state, jnp.clip(action, self.low, self.high), params)
