"""Networks: Flax Linen modules seen by agents only through `Network(init, apply)`.

An MLP torso, categorical and Gaussian policy heads, a value head, and an actor-critic that
either shares its torso or keeps separate actor and critic MLPs. Policy heads return the
parameters of the action distribution; `distribution` turns them into a distrax object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.config import check_choice
from jaxrl.types import EnvSpec, Params, PRNGKey

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
}


class Network(NamedTuple):
    """A pure pair of functions: `init(key, obs) -> params`, `apply(params, obs) -> outputs`."""

    init: Callable[[PRNGKey, jax.Array], Params]
    apply: Callable[..., Any]


def _dense(features: int, scale: float) -> nn.Dense:
    # Orthogonal init with per-layer gains (Engstrom et al. 2020, "Implementation Matters"):
    # sqrt(2) for hidden layers, 0.01 for the policy output, 1 for the value output.
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale),
                    bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """Fully connected torso: `[..., in] -> [..., hidden_sizes[-1]]`."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(_dense(width, np.sqrt(2.0))(x))
        return x


class PolicyHead(nn.Module):
    """Distribution parameters: logits `[..., A]` if discrete, else (mean, log_std) `[..., A]`.

    The Gaussian log standard deviation is a state-independent learned vector, as in PPO.
    """

    action_dim: int
    discrete: bool

    @nn.compact
    def __call__(self, h: jax.Array):
        out = _dense(self.action_dim, 0.01)(h)
        if self.discrete:
            return out
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return out, jnp.broadcast_to(log_std, out.shape)


class ValueHead(nn.Module):
    """State value `[..., in] -> [...]`."""

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        return _dense(1, 1.0)(h)[..., 0]


class ActorCritic(nn.Module):
    """Policy and value from one observation batch: `[..., *obs] -> (policy_params, [...])`.

    With `shared_trunk` one torso feeds both heads; otherwise the actor and the critic each
    have their own MLP (the usual choice for PPO on small control tasks).
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    obs_ndim: int = 1  # trailing observation axes, flattened before the torso

    @nn.compact
    def __call__(self, obs: jax.Array):
        x = obs.reshape(obs.shape[: obs.ndim - self.obs_ndim] + (-1,))
        if self.shared_trunk:
            h = MLP(self.hidden_sizes, self.activation)(x)
            return PolicyHead(self.action_dim, self.discrete)(h), ValueHead()(h)
        h_pi = MLP(self.hidden_sizes, self.activation, name="actor_torso")(x)
        h_v = MLP(self.hidden_sizes, self.activation, name="critic_torso")(x)
        return PolicyHead(self.action_dim, self.discrete)(h_pi), ValueHead()(h_v)


def make_actor_critic(spec: EnvSpec, hidden_sizes: Sequence[int] = (64, 64),
                      activation: str = "tanh", *, shared_trunk: bool = False) -> Network:
    """An actor-critic `Network` for `spec`; observations of any rank are flattened.

    Returns:
      `Network` whose `apply(params, obs[..., *obs_shape])` gives
      `(policy_params, value[...])`; see `PolicyHead` for `policy_params`.
    """
    check_choice("activation", activation, ACTIVATIONS)
    module = ActorCritic(action_dim=spec.action_dim, discrete=spec.discrete,
                         hidden_sizes=tuple(hidden_sizes), activation=activation,
                         shared_trunk=shared_trunk, obs_ndim=len(spec.obs_shape))
    dummy = np.zeros(spec.obs_shape, np.float32)  # NumPy: safe to build under a trace
    return Network(init=lambda key, obs=dummy: module.init(key, obs), apply=module.apply)


def distribution(policy_params, discrete: bool) -> distrax.Distribution:
    """The action distribution for one observation (or a batch) from `PolicyHead` output.

    Discrete: `Categorical(logits)`. Continuous: diagonal Gaussian with event shape `[A]`.
    """
    if discrete:
        return distrax.Categorical(logits=policy_params)
    mean, log_std = policy_params
    return distrax.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(log_std))
