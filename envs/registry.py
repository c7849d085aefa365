"""The environment registry: every gymnax environment plus jaxrl's own, by id.

`make(env_id)` returns `(env, env_params)` like `gymnax.make`, but an unknown id raises a
`ConfigError` that lists close matches instead of gymnax's bare `ValueError`. `register`
adds a factory and refuses an id that is already taken, ours or gymnax's.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import gymnax
import numpy as np
from gymnax.environments import spaces

from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register(env_id: str, factory: Callable[..., Any]) -> None:
    """Register `factory(**kwargs) -> gymnax Environment` under `env_id`.

    Raises:
      ConfigError: `env_id` is empty, not a string, or already registered here or in gymnax.
    """
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"env_id must be a non-empty string, got {env_id!r}")
    if not callable(factory):
        raise ConfigError(f"factory for {env_id!r} must be callable, got {factory!r}")
    if env_id in _FACTORIES or env_id in gymnax.registered_envs:
        raise ConfigError(f"env_id {env_id!r} is already registered; choose another name")
    _FACTORIES[env_id] = factory


def list_envs() -> list[str]:
    """All registered ids: gymnax's first, then jaxrl's own."""
    return list(gymnax.registered_envs) + sorted(_FACTORIES)


def check_env_id(env_id: str) -> None:
    """Raise `ConfigError` naming close matches if `env_id` is not registered."""
    known = list_envs()
    if env_id not in known:
        close = difflib.get_close_matches(str(env_id), known, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `jaxrl list`)"
        raise ConfigError(f"env {env_id!r} is not a registered environment{hint}")


def make(env_id: str, **kwargs: Any):
    """Build a registered environment.

    Returns:
      `(env, env_params)`: a gymnax `Environment` and its default parameters.
    """
    check_env_id(env_id)
    if env_id in _FACTORIES:
        env = _FACTORIES[env_id](**kwargs)
        return env, env.default_params
    return gymnax.make(env_id, **kwargs)


def env_spec(env: Any, env_params: Any) -> EnvSpec:
    """Read the static `EnvSpec` of an environment from its spaces."""
    obs_space = env.observation_space(env_params)
    act_space = env.action_space(env_params)
    obs_shape = tuple(int(d) for d in obs_space.shape)
    if isinstance(act_space, spaces.Discrete):
        return EnvSpec(obs_shape=obs_shape, discrete=True, num_actions=int(act_space.n))
    if isinstance(act_space, spaces.Box):
        shape = tuple(int(d) for d in act_space.shape)
        low = np.broadcast_to(np.asarray(act_space.low, np.float32), shape).reshape(-1)
        high = np.broadcast_to(np.asarray(act_space.high, np.float32), shape).reshape(-1)
        return EnvSpec(obs_shape=obs_shape, discrete=False, action_shape=shape,
                       action_low=tuple(map(float, low)), action_high=tuple(map(float, high)))
    raise ConfigError(f"action space {type(act_space).__name__} is not supported; "
                      "allowed: Discrete, Box")
