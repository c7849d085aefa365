"""Networks: Flax Linen modules seen by agents only through `Network(init, apply)`.

An MLP torso, categorical and Gaussian policy heads, a value head, and an actor-critic that
either shares its torso or keeps separate actor and critic MLPs. Policy heads return the
parameters of the action distribution; `distribution` turns them into a distrax object.
For value-based agents, a Q-network (`make_q_network`: plain, dueling and/or C51 heads)
built from plain or factorised-Gaussian noisy layers whose noise is an explicit input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import chex
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


def scale_noise(eps: jax.Array) -> jax.Array:
    """`f(x) = sgn(x) sqrt(|x|)`: factorised noise's transform (Fortunato et al. 2018, eq. 11)."""
    return jnp.sign(eps) * jnp.sqrt(jnp.abs(eps))


def _trailing(v: jax.Array, ndim: int) -> jax.Array:
    # [F] -> [1, ..., 1, F]: explicit, so strict rank promotion accepts the broadcast.
    return v.reshape((1,) * (ndim - 1) + v.shape)


class NoisyDense(nn.Module):
    """Factorised-Gaussian noisy linear layer, with the noise an explicit input.

    Fortunato et al. 2018, "Noisy Networks for Exploration", eq. 9-11 (factorised noise):
    `y = (mu_w + sigma_w * (f(e_in) f(e_out)^T)) x + mu_b + sigma_b * f(e_out)`, with
    `f = scale_noise` and `mu ~ U[-1/sqrt(p), 1/sqrt(p)]`, `sigma = sigma0 / sqrt(p)` at
    init (section 3.2, p inputs). The noise is not drawn inside the module: the caller
    passes `noise = (e_in [p], e_out [F])` of standard normals (see `noisy_layer_noise`),
    so it can hold one draw per environment for a whole episode. With zero noise the
    layer is the plain linear layer `x @ kernel + bias`. The weight matrix is never
    formed: `((x * f(e_in)) @ sigma_w) * f(e_out)` is the noisy part, so a batch of
    inputs sharing one noise costs two matmuls.
    """

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, noise: tuple[jax.Array, jax.Array]) -> jax.Array:
        p = x.shape[-1]
        bound = 1.0 / np.sqrt(p)
        uniform = lambda key, shape: jax.random.uniform(key, shape, jnp.float32,  # noqa: E731
                                                        -bound, bound)
        sigma = nn.initializers.constant(self.sigma0 / np.sqrt(p))
        kernel = self.param("kernel", uniform, (p, self.features))
        bias = self.param("bias", uniform, (self.features,))
        sigma_kernel = self.param("sigma_kernel", sigma, (p, self.features))
        sigma_bias = self.param("sigma_bias", sigma, (self.features,))
        eps_in, eps_out = noise
        f_in, f_out = scale_noise(eps_in), scale_noise(eps_out)
        mean = x @ kernel + _trailing(bias, x.ndim)
        noisy = ((x * _trailing(f_in, x.ndim)) @ sigma_kernel + _trailing(sigma_bias, x.ndim)) \
            * _trailing(f_out, x.ndim)
        return mean + noisy


def dueling_combine(value: jax.Array, advantage: jax.Array) -> jax.Array:
    """Q from a state value and advantages, the advantages mean-subtracted over actions.

    Wang et al. 2016, "Dueling Network Architectures for Deep RL", eq. 9:
    `Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')`. For a distributional head the same is
    done on the logits of each atom (Hessel et al. 2018, "Rainbow", section 3).

    Args:
      value: [..., K] state value per atom (K = 1 for scalar Q-values).
      advantage: [..., A, K] advantages per action and atom.

    Returns:
      [..., A, K] Q-values (K = 1) or Q-logits.
    """
    chex.assert_rank(advantage, value.ndim + 1)
    return value[..., None, :] + advantage - advantage.mean(axis=-2, keepdims=True)


class QNetwork(nn.Module):
    """Q-values `[..., A]` or C51 logits `[..., A, K]` from observations `[..., *obs]`.

    An MLP torso, then a plain head (one linear layer to `A` or `A * K` outputs) or a
    dueling head (a value and an advantage layer combined by `dueling_combine`). With
    `noisy`, every linear layer is a `NoisyDense` (Rainbow replaces them all) and
    `__call__` needs `noise`, a dict of `(e_in, e_out)` per layer (`layer_sizes`).
    """

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "relu"
    dueling: bool = False
    num_atoms: int | None = None  # None: scalar Q-values; K: C51 logits over K atoms
    noisy: bool = False
    sigma0: float = 0.5
    obs_ndim: int = 1

    def layer_sizes(self, obs_dim: int) -> dict[str, tuple[int, int]]:
        """`{layer name: (inputs, outputs)}` of every linear layer, in call order."""
        sizes, width = {}, obs_dim
        for i, h in enumerate(self.hidden_sizes):
            sizes[f"torso_{i}"] = (width, h)
            width = h
        k = self.num_atoms or 1
        if self.dueling:
            sizes["value"] = (width, k)
            sizes["advantage"] = (width, self.num_actions * k)
        else:
            sizes["q"] = (width, self.num_actions * k)
        return sizes

    def _linear(self, name: str, features: int, scale: float, x, noise):
        if self.noisy:
            return NoisyDense(features, self.sigma0, name=name)(x, noise[name])
        return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale),
                        bias_init=nn.initializers.zeros, name=name)(x)

    @nn.compact
    def __call__(self, obs: jax.Array, noise: Any = None) -> jax.Array:
        if self.noisy and noise is None:
            raise ValueError("a noisy QNetwork needs its noise (see noisy_layer_noise)")
        x = obs.reshape(obs.shape[: obs.ndim - self.obs_ndim] + (-1,)).astype(jnp.float32)
        act = ACTIVATIONS[self.activation]
        for i, h in enumerate(self.hidden_sizes):
            x = act(self._linear(f"torso_{i}", h, np.sqrt(2.0), x, noise))
        k = self.num_atoms or 1
        batch = x.shape[:-1]
        if self.dueling:
            value = self._linear("value", k, 1.0, x, noise)
            adv = self._linear("advantage", self.num_actions * k, 1.0, x, noise)
            q = dueling_combine(value, adv.reshape(batch + (self.num_actions, k)))
        else:
            q = self._linear("q", self.num_actions * k, 1.0, x, noise).reshape(
                batch + (self.num_actions, k))
        return q if self.num_atoms else q[..., 0]


class QNetworkFns(NamedTuple):
    """A Q-network's pure functions.

    Attributes:
      init: `init(key) -> params`.
      apply: `apply(params, obs[..., *obs_shape], noise) -> q [..., A] or logits [..., A, K]`;
        `noise` is ignored (may be None) unless the network is noisy.
      sample_noise: `sample_noise(key) -> noise`, one standard-normal draw for every noisy
        layer (an empty dict for a plain network); vmap it for one draw per env copy.
      zero_noise: the all-zero noise (the mean network), also an empty dict if not noisy.
    """

    init: Callable[[PRNGKey], Params]
    apply: Callable[..., jax.Array]
    sample_noise: Callable[[PRNGKey], Any]
    zero_noise: Any


def noisy_layer_noise(key: PRNGKey, sizes: dict[str, tuple[int, int]]) -> dict:
    """Independent standard normals `(e_in [p], e_out [F])` for each layer in `sizes`.

    One draw of all `sum(p + F)` numbers, then sliced: one random-bits computation instead
    of two per layer keeps the compiled program (and its compile time) small.
    """
    flat = jax.random.normal(key, (sum(p + f for p, f in sizes.values()),), jnp.float32)
    out, start = {}, 0
    for name, (p, f) in sizes.items():
        out[name] = (flat[start:start + p], flat[start + p:start + p + f])
        start += p + f
    return out


def make_q_network(spec: EnvSpec, hidden_sizes: Sequence[int] = (64, 64),
                   activation: str = "relu", *, dueling: bool = False,
                   num_atoms: int | None = None, noisy: bool = False,
                   sigma0: float = 0.5) -> QNetworkFns:
    """A Q-network for a discrete-action `spec`: any mix of dueling, C51 and noisy layers.

    Args:
      spec: a discrete `EnvSpec`; observations of any rank are flattened.
      hidden_sizes: torso widths.
      activation: hidden activation (see `ACTIVATIONS`).
      dueling: value and mean-subtracted advantage streams (`dueling_combine`).
      num_atoms: None for scalar Q-values `[..., A]`; K for C51 logits `[..., A, K]`.
      noisy: factorised-Gaussian `NoisyDense` layers; noise becomes an input.
      sigma0: initial noise scale of noisy layers (0.5 in the paper).

    Returns:
      `QNetworkFns(init, apply, sample_noise, zero_noise)`.
    """
    check_choice("activation", activation, ACTIVATIONS)
    module = QNetwork(num_actions=spec.num_actions, hidden_sizes=tuple(hidden_sizes),
                      activation=activation, dueling=dueling, num_atoms=num_atoms,
                      noisy=noisy, sigma0=sigma0, obs_ndim=len(spec.obs_shape))
    sizes = module.layer_sizes(int(np.prod(spec.obs_shape))) if noisy else {}
    dummy = np.zeros(spec.obs_shape, np.float32)  # NumPy: safe to build under a trace
    zero = {name: (np.zeros((p,), np.float32), np.zeros((f,), np.float32))
            for name, (p, f) in sizes.items()}

    def init(key: PRNGKey) -> Params:
        return module.init(key, dummy, zero if noisy else None)

    def apply(params: Params, obs: jax.Array, noise: Any = None) -> jax.Array:
        return module.apply(params, obs, noise if noisy else None)

    return QNetworkFns(init=init, apply=apply,
                       sample_noise=lambda key: noisy_layer_noise(key, sizes),
                       zero_noise=zero)
