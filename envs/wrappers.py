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
        # Only called for missing attributes; refusing `_env` and dunders keeps copy/pickle
        # (which probe them before `__init__` ran) from recursing forever.
        if name == "_env" or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
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
    count: jax.Array  # int32 scalar: observations seen (int, so it never stops growing)
    last_obs: jax.Array  # [*obs_shape] the raw observation last returned (normalised)


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
        state = state.replace(last_obs=obs)
        count = state.count + 1
        n = count.astype(jnp.float32)
        delta = obs - state.mean
        mean = state.mean + delta / n
        # Welford: var * (n - 1) + delta * (obs - mean) is the new sum of squared deviations.
        m2 = state.var * (n - 1.0) + delta * (obs - mean)
        return state.replace(mean=mean, var=m2 / n, count=count)

    def normalize(self, state: NormalizeObservationState, obs: jax.Array) -> jax.Array:
        """`obs` normalised and clipped with the statistics in `state`."""
        z = (obs - state.mean) / jnp.sqrt(state.var + self.epsilon)
        return jnp.clip(z, -self.clip, self.clip)

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        obs = obs.astype(jnp.float32)
        state = NormalizeObservationState(
            env_state, jnp.zeros_like(obs), jnp.zeros_like(obs), jnp.int32(0), obs)
        state = self._update(state, obs)
        return self.normalize(state, obs), state

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        state = self._update(state.replace(env_state=env_state), obs.astype(jnp.float32))
        final = info["final_observation"].astype(jnp.float32)
        info = {**info, "final_observation": self.normalize(state, final)}
        return self.normalize(state, obs), state, reward, terminated, truncated, info


def transplant_statistics(target: Any, source: Any, *, pooled: bool = True) -> Any:
    """Give every env copy in `target` the statistics pooled over all copies in `source`.

    Both are (possibly nested) wrapper states with a leading env axis `[N, ...]`; each
    `NormalizeObservationState` in `target` gets the mean and variance of the union of the
    observations counted in `source` (Chan et al.'s parallel combination), so an evaluation
    sees inputs on the scale the policy was trained on. Other state is left as it is.
    With `pooled=False` (same `N` in both), copy `i` keeps copy `i`'s own statistics and
    its `GuardFiniteState` record: a reset that must not forget what was learned.
    """
    if isinstance(target, NormalizeObservationState) and not pooled:
        return target.replace(
            env_state=transplant_statistics(target.env_state, source.env_state, pooled=False),
            mean=source.mean, var=source.var, count=source.count)
    if isinstance(target, NormalizeObservationState):
        # [N, 1, ...]: one weight per env copy, broadcast over the observation axes.
        n = source.count.astype(jnp.float32).reshape((-1,) + (1,) * (source.mean.ndim - 1))
        total = jnp.maximum(n.sum(), 1.0)
        mean = (source.mean * n).sum(0) / total
        var = ((source.var + jnp.square(source.mean - mean[None])) * n).sum(0) / total
        num = target.mean.shape[0]
        return target.replace(
            env_state=transplant_statistics(target.env_state, source.env_state),
            mean=jnp.broadcast_to(mean, target.mean.shape),
            var=jnp.broadcast_to(var, target.var.shape),
            count=jnp.full((num,), source.count.sum(), jnp.int32))
    if isinstance(target, GuardFiniteState) and not pooled:
        # A restart is not a new run: keep the step count and the first bad event.
        return target.replace(
            env_state=transplant_statistics(target.env_state, source.env_state, pooled=False),
            steps=source.steps, bad_step=source.bad_step, bad_action=source.bad_action)
    if hasattr(target, "env_state") and hasattr(source, "env_state"):
        return target.replace(env_state=transplant_statistics(
            target.env_state, source.env_state, pooled=pooled))
    return target


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


@struct.dataclass
class GuardFiniteState:
    """The first non-finite observation or reward of one env copy, around the inner state."""

    env_state: Any
    steps: jax.Array       # int32 scalar: steps this copy took since the start of the run
    bad_step: jax.Array    # int32 scalar: `steps` when a non-finite value first came; -1: none
    bad_action: jax.Array  # [*action_shape] the action taken on that step (zeros if none)


class GuardFinite(Wrapper):
    """Record the first step on which the env returned a non-finite observation or reward.

    Observations and rewards pass through unchanged (the agent's own guards still fire);
    the state keeps the copy's step count since the start of the run (not reset by the
    auto-reset inside `step`), and, from the first NaN/inf on, that step's number and the
    action taken on it. Step 0 is the observation from `reset`. The host reads the record
    between chunks (`jaxrl.runner.check_finite`) and names the env copy, step and action.
    Put it directly around the raw env, so it sees raw observations and actions.
    """

    def __init__(self, env: Any, params: Any = None):
        super().__init__(env)
        space = env.action_space(params if params is not None else env.default_params)
        self._action_shape = tuple(int(d) for d in space.shape)
        self._action_dtype = jnp.dtype(space.dtype)

    @staticmethod
    def _finite(obs: jax.Array, reward: jax.Array | None = None) -> jax.Array:
        ok = jnp.all(jnp.isfinite(obs))
        return ok if reward is None else ok & jnp.all(jnp.isfinite(reward))

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        bad = ~self._finite(obs)
        return obs, GuardFiniteState(
            env_state, jnp.int32(0), jnp.where(bad, 0, -1).astype(jnp.int32),
            jnp.zeros(self._action_shape, self._action_dtype))

    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params)
        steps = state.steps + 1
        ok = self._finite(obs, reward)
        if "final_observation" in info:  # on an auto-reset step `obs` is the reset one
            ok = ok & self._finite(info["final_observation"])
        first = (state.bad_step < 0) & ~ok
        # Cast: the record must keep the carry's dtype whatever dtype the agent acts in.
        action = jnp.asarray(action).astype(self._action_dtype)
        new_state = GuardFiniteState(
            env_state, steps, jnp.where(first, steps, state.bad_step),
            jnp.where(first, action, state.bad_action))
        return obs, new_state, reward, terminated, truncated, info


def find_guard_state(env_state: Any) -> GuardFiniteState | None:
    """The `GuardFiniteState` nested in a (possibly wrapped) env state, or None."""
    while env_state is not None:
        if isinstance(env_state, GuardFiniteState):
            return env_state
        env_state = getattr(env_state, "env_state", None)
    return None
