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

from jaxrl.config import ConfigError, check_choice
from jaxrl.types import EnvSpec, Params, PRNGKey

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh, "relu": nn.relu, "gelu": nn.gelu, "elu": nn.elu, "silu": nn.silu}


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


TORSOS = ("mlp", "cnn")


class CNN(nn.Module):
    """Image torso: 3x3 convolutions over `[..., H, W, C]`, flattened, then an MLP.

    Sized for small grids such as MinAtar's 10x10, as Young and Tian 2019 (one 16-channel
    3x3 convolution before the dense layers): `channels` convolutions with stride 1 and
    SAME padding, then `hidden_sizes` dense layers.
    """

    hidden_sizes: Sequence[int]
    activation: str = "relu"
    channels: Sequence[int] = (16,)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        batch = obs.shape[:-3]
        x = obs.reshape((-1,) + obs.shape[-3:]).astype(jnp.float32)
        for c in self.channels:
            x = act(nn.Conv(c, (3, 3), kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                            bias_init=nn.initializers.zeros)(x))
        return MLP(self.hidden_sizes, self.activation)(x.reshape(batch + (-1,)))


def _check(spec: EnvSpec, activation: str, torso: Any) -> None:
    """Raise `ConfigError` unless `activation` is known and `torso` is `mlp`, a module, or
    `cnn` on image observations."""
    check_choice("activation", activation, ACTIVATIONS)
    if isinstance(torso, nn.Module):
        return
    check_choice("torso", torso, TORSOS)
    if torso == "cnn" and len(spec.obs_shape) != 3:
        raise ConfigError(f"torso cnn needs image observations [H, W, C]; this env's are "
                          f"{spec.obs_shape} (use torso mlp)")


def features(torso: Any, hidden_sizes: Sequence[int], activation: str, obs: jax.Array,
             obs_ndim: int, name: str | None = None) -> jax.Array:
    """Features `[..., F]` of observations `[..., *obs_shape]` (call inside a compact module).

    Args:
      torso: `mlp` (flatten, then `MLP(hidden_sizes)`), `cnn` (`CNN(hidden_sizes)`), or a
        flax module, copied under `name` (each call site gets its own parameters).
      obs_ndim: trailing observation axes.
    """
    if isinstance(torso, nn.Module):
        return torso.copy(name=name)(obs)
    if torso == "cnn":
        return CNN(hidden_sizes, activation, name=name)(obs)
    return MLP(hidden_sizes, activation, name=name)(_flat_obs(obs, obs_ndim))


def _feature_dim(torso: Any, hidden_sizes: Sequence[int], activation: str,
                 spec: EnvSpec) -> int:
    """Width F of `features` for one observation of `spec` (traced abstractly, no FLOPs)."""
    if not isinstance(torso, nn.Module) and torso == "mlp":
        return hidden_sizes[-1]

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, obs):
            return features(torso, hidden_sizes, activation, obs, len(spec.obs_shape))

    dummy = jax.ShapeDtypeStruct(spec.obs_shape, jnp.float32)
    out = jax.eval_shape(lambda o: Probe().init_with_output(jax.random.key(0), o)[0], dummy)
    return int(out.shape[-1])


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
    obs_ndim: int = 1  # trailing observation axes
    torso: Any = "mlp"  # see `features`

    @nn.compact
    def __call__(self, obs: jax.Array):
        def torso(name):
            return features(self.torso, self.hidden_sizes, self.activation, obs,
                            self.obs_ndim, name)

        if self.shared_trunk:
            h_pi = h_v = torso(None)
        else:
            h_pi, h_v = torso("actor_torso"), torso("critic_torso")
        return PolicyHead(self.action_dim, self.discrete)(h_pi), ValueHead()(h_v)


def make_actor_critic(spec: EnvSpec, hidden_sizes: Sequence[int] = (64, 64),
                      activation: str = "tanh", *, shared_trunk: bool = False,
                      torso: Any = "mlp") -> Network:
    """An actor-critic `Network` for `spec` with the given torso (see `features`).

    Returns:
      `Network` whose `apply(params, obs[..., *obs_shape])` gives
      `(policy_params, value[...])`; see `PolicyHead` for `policy_params`.
    """
    _check(spec, activation, torso)
    module = ActorCritic(action_dim=spec.action_dim, discrete=spec.discrete,
                         hidden_sizes=tuple(hidden_sizes), activation=activation,
                         shared_trunk=shared_trunk, obs_ndim=len(spec.obs_shape),
                         torso=torso)
    dummy = np.zeros(spec.obs_shape, np.float32)
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
    layer is the plain linear layer `x @ kernel + bias`. One input row (acting: one
    observation per env copy, each with its own noise) never forms the weight matrix:
    `((x * f(e_in)) @ sigma_w) * f(e_out)` is the noisy part, a second matmul of one row.
    Several rows sharing one noise (a replayed batch) form the noisy weights once and take
    one matmul: half the matmul flops of the factorised form.
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
        if int(np.prod(x.shape[:-1])) > 1:  # static: rows sharing this noise
            weights = kernel + sigma_kernel * (f_in[:, None] * f_out[None, :])
            return x @ weights + _trailing(bias + sigma_bias * f_out, x.ndim)
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
    torso: Any = "mlp"  # `mlp`: the layers below (noisy if asked); else see `features`
    feature_dim: int = 0  # F of a non-`mlp` torso (`_feature_dim`)

    def layer_sizes(self, obs_dim: int) -> dict[str, tuple[int, int]]:
        """`{layer name: (inputs, outputs)}` of every linear layer that may be noisy, in
        call order (the MLP torso's and the heads'; a `cnn` or module torso is plain)."""
        sizes, width = {}, obs_dim
        if self.torso != "mlp":
            width = self.feature_dim
        else:
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
        if self.torso != "mlp":
            x = features(self.torso, self.hidden_sizes, self.activation, obs, self.obs_ndim,
                         "features")
        else:
            x = _flat_obs(obs, self.obs_ndim)
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
                   sigma0: float = 0.5, torso: Any = "mlp") -> QNetworkFns:
    """A Q-network for a discrete-action `spec`: any mix of dueling, C51 and noisy layers.

    Args:
      spec: a discrete `EnvSpec`; observations of any rank are flattened.
      hidden_sizes, activation: the torso's widths and hidden activation (`ACTIVATIONS`).
      dueling: value and mean-subtracted advantage streams (`dueling_combine`).
      num_atoms: None for scalar Q-values `[..., A]`; K for C51 logits `[..., A, K]`.
      noisy: factorised-Gaussian `NoisyDense` layers; noise becomes an input.
      sigma0: initial noise scale of noisy layers (0.5 in the paper).
      torso: `mlp` (its layers noisy too when `noisy`), `cnn`, or a flax module (see
        `features`; then only the heads are noisy).
    """
    _check(spec, activation, torso)
    module = QNetwork(num_actions=spec.num_actions, hidden_sizes=tuple(hidden_sizes),
                      activation=activation, dueling=dueling, num_atoms=num_atoms,
                      noisy=noisy, sigma0=sigma0, obs_ndim=len(spec.obs_shape), torso=torso,
                      feature_dim=_feature_dim(torso, hidden_sizes, activation, spec))
    sizes = module.layer_sizes(int(np.prod(spec.obs_shape))) if noisy else {}
    dummy = np.zeros(spec.obs_shape, np.float32)
    zero = {name: (np.zeros((p,), np.float32), np.zeros((f,), np.float32))
            for name, (p, f) in sizes.items()}

    def init(key: PRNGKey) -> Params:
        return module.init(key, dummy, zero if noisy else None)

    def apply(params: Params, obs: jax.Array, noise: Any = None) -> jax.Array:
        return module.apply(params, obs, noise if noisy else None)

    return QNetworkFns(init=init, apply=apply,
                       sample_noise=lambda key: noisy_layer_noise(key, sizes),
                       zero_noise=zero)


# --- Continuous actions: critics Q(s, a), deterministic and squashed-Gaussian actors, NAF.
# Actions leave every actor inside the env's box `[low, high]`: a tanh output mapped by
# `scale_to_bounds`, so no action is ever clipped after the fact.

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # squashed-Gaussian log-std range (SAC practice)


def _flat_obs(obs: jax.Array, obs_ndim: int) -> jax.Array:
    return obs.reshape(obs.shape[: obs.ndim - obs_ndim] + (-1,)).astype(jnp.float32)


def scale_to_bounds(t: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Map `t [..., A]` in `[-1, 1]^A` affinely onto the box `[low, high]` (each `[A]`)."""
    low, high = _trailing(jnp.asarray(low), t.ndim), _trailing(jnp.asarray(high), t.ndim)
    return low + 0.5 * (t + 1.0) * (high - low)


class _Torso(nn.Module):
    """The torso fields every continuous-action network shares (see `features`)."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    obs_ndim: int = 1
    torso: Any = "mlp"

    def features(self, obs: jax.Array, name: str | None = None) -> jax.Array:
        return features(self.torso, self.hidden_sizes, self.activation, obs, self.obs_ndim,
                        name)


class Critic(_Torso):
    """`Q(s, a)`: an MLP on the concatenated observation and action, `-> [...]`.

    The observation is broadcast to the action's batch axes, so one observation `[*obs]`
    with many candidate actions `[N, A]` gives `[N]` values (sampling-based argmax). An
    `mlp` torso sees the raw observation, any other torso its features.
    """

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        if self.torso == "mlp":
            x = _flat_obs(obs, self.obs_ndim)
        else:
            x = self.features(obs, "obs_torso")
        batch = jnp.broadcast_shapes(x.shape[:-1], action.shape[:-1])
        x = jnp.concatenate([jnp.broadcast_to(x, batch + x.shape[-1:]),
                             jnp.broadcast_to(action, batch + action.shape[-1:])], axis=-1)
        return ValueHead()(MLP(self.hidden_sizes, self.activation)(x))


class Critics(_Torso):
    """`num` independent critics with stacked parameters: `-> [num, ...]` (twin Q for TD3/SAC).

    One `nn.vmap` over the parameter axis, so the twins cost one batched matmul per layer
    rather than two separate networks.
    """

    num: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        stacked = nn.vmap(Critic, variable_axes={"params": 0}, split_rngs={"params": True},
                          in_axes=None, out_axes=0, axis_size=self.num)
        return stacked(self.hidden_sizes, self.activation, self.obs_ndim, self.torso,
                       name="critic")(obs, action)


class _BoxNetwork(_Torso, kw_only=True):
    """A network whose output includes actions in the box."""

    action_dim: int
    low: tuple[float, ...]
    high: tuple[float, ...]

    def to_box(self, h: jax.Array) -> jax.Array:
        """A linear layer, a tanh, and the affine map onto the box: `[..., A]`."""
        t = jnp.tanh(_dense(self.action_dim, 0.01)(h))
        return scale_to_bounds(t, jnp.asarray(self.low), jnp.asarray(self.high))


class DeterministicActor(_BoxNetwork):
    """`mu(s)`: an MLP, a tanh and the affine map onto the action box, `-> [..., A]`."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.to_box(self.features(obs))


class SquashedGaussianActor(_Torso, kw_only=True):
    """Pre-squash Gaussian parameters `(mean, log_std)`, each `[..., A]`.

    The log standard deviation depends on the state and is mapped smoothly into
    `[LOG_STD_MIN, LOG_STD_MAX]` by a tanh; `squashed_sample` (jaxrl.continuous) turns the
    pair into an action in the box and its log-probability.
    """

    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array):
        h = self.features(obs)
        mean = _dense(self.action_dim, 0.01)(h)
        raw = _dense(self.action_dim, 0.01)(h)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class NAF(_BoxNetwork):
    """Normalized advantage function head: `(V(s) [...], mu(s) [..., A], L(s) [..., A, A])`.

    Gu et al. 2016, "Continuous Deep Q-Learning with Model-based Acceleration", eq. 2-4:
    `Q(s, a) = V(s) - 1/2 (a - mu)^T P (a - mu)` with `P = L L^T`, `L` lower-triangular
    with an exponentiated (so positive) diagonal, hence `P` positive-definite and
    `argmax_a Q = mu(s)`; `mu` is squashed into the action box, so the closed-form argmax
    is also the argmax over the box. `naf_q` (jaxrl.continuous) evaluates the formula.
    """

    @nn.compact
    def __call__(self, obs: jax.Array):
        a = self.action_dim
        h = self.features(obs)
        value = ValueHead()(h)
        mu = self.to_box(h)
        entries = _dense(a * (a + 1) // 2, 0.01)(h)
        rows, cols = np.tril_indices(a)
        lower = jnp.zeros(h.shape[:-1] + (a, a), h.dtype).at[..., rows, cols].set(entries)
        # exp keeps the diagonal positive; clipping keeps P finite early in training.
        diag = jnp.exp(jnp.clip(jnp.diagonal(lower, axis1=-2, axis2=-1), -10.0, 5.0))
        eye = jnp.eye(a, dtype=bool).reshape((1,) * (lower.ndim - 2) + (a, a))
        chol = jnp.where(eye, jnp.broadcast_to(diag[..., None, :], lower.shape), lower)
        return value, mu, chol


def make_continuous_network(spec: EnvSpec, kind: str, hidden_sizes: Sequence[int] = (256, 256),
                            activation: str = "relu", *, num_critics: int = 1,
                            torso: Any = "mlp") -> Network:
    """A network for a continuous-action (Box) `spec` with the given torso (see `features`).

    Args:
      kind: `critic` (`apply(params, obs, action) -> [num_critics, ...]`), `deterministic`
        (`apply(params, obs) -> action [..., A]` inside the box), `gaussian`
        (`apply(params, obs) -> (mean, log_std)`, each `[..., A]`, before the tanh squash)
        or `naf` (`apply(params, obs) -> (value [...], mu [..., A], L [..., A, A])`).
      num_critics: independent critics stacked on a leading axis (`critic` only).

    Returns:
      `Network(init, apply)`, `init(key) -> params`.
    """
    if spec.discrete:
        raise ValueError("continuous-action networks need a Box action space")
    _check(spec, activation, torso)
    common = dict(hidden_sizes=tuple(hidden_sizes), activation=activation,
                  obs_ndim=len(spec.obs_shape), torso=torso)
    box = dict(action_dim=spec.action_dim, low=spec.action_low, high=spec.action_high)
    if kind == "critic":
        module = Critics(num=num_critics, **common)
    elif kind == "deterministic":
        module = DeterministicActor(**box, **common)
    elif kind == "gaussian":
        module = SquashedGaussianActor(action_dim=spec.action_dim, **common)
    elif kind == "naf":
        module = NAF(**box, **common)
    else:
        raise ValueError(f"unknown continuous network kind {kind!r}")
    obs = np.zeros(spec.obs_shape, np.float32)
    action = np.zeros((spec.action_dim,), np.float32)
    args = (obs, action) if kind == "critic" else (obs,)
    return Network(init=lambda key: module.init(key, *args), apply=module.apply)
