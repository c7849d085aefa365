"""Shared types: the `Transition` pytree, type aliases, and the static `EnvSpec`.

A `Transition` follows gymnax 1.0's step: it keeps `terminated` and `truncated` apart, and
`next_obs` is the observation the action led to (`info["final_observation"]`), not the
observation after an automatic reset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
from flax import struct

PRNGKey = jax.Array
Params = Any
Metrics = dict[str, jax.Array]
EnvState = Any
EnvParams = Any


@struct.dataclass
class Transition:
    """One environment step, or a batch of them (leading axes `[T, N]` from a rollout).

    Attributes:
      obs: [..., *obs_shape] observation the action was taken from (`obs_tm1`).
      action: [..., *action_shape] action taken (int32 for discrete actions).
      reward: [...] reward received after the action (`r_t`).
      terminated: [...] bool, the episode reached a true terminal state.
      truncated: [...] bool, the episode was cut by a time limit (not terminal).
      next_obs: [..., *obs_shape] observation the action led to, before any auto-reset.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment's spaces, read once from gymnax.

    Attributes:
      obs_shape: shape of one observation.
      discrete: True for a `Discrete` action space, False for a `Box`.
      num_actions: number of discrete actions (0 for continuous).
      action_shape: shape of one action (`()` for discrete).
      action_low: lower bound per action dimension (continuous only; `()` otherwise).
      action_high: upper bound per action dimension (continuous only; `()` otherwise).
    """

    obs_shape: tuple[int, ...]
    discrete: bool
    num_actions: int = 0
    action_shape: tuple[int, ...] = ()
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()

    @property
    def action_dim(self) -> int:
        """Width of the policy head: `num_actions` if discrete, else the action size."""
        return self.num_actions if self.discrete else math.prod(self.action_shape)
