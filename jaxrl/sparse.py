"""Sparse-reward methods as add-ons (`jaxrl.agent.Addon`) for any built-in agent.

Each factory returns an `Addon` whose `transform` rewrites the rewards of every batch of
collected transitions before the agent learns from or stores them, with its state in
`state.addons[name]`, and whose `after` hook logs, per iteration, the mean reward that
reached it (`{name}/extrinsic_mean`) apart from the mean it added (`{name}/intrinsic_mean`),
plus its own losses. `episode/return` is logged by the env wrapper from the env's rewards,
so it stays the true return. Compose with `agent.extend("ppo-icm", icm(ICMConfig()))`.

* `potential_shaping(potential, gamma)`: `F = gamma * phi(s') - phi(s)`, zero potential at
  termination (Ng, Harada and Russell 1999), which leaves optimal policies unchanged.
* `bonus(fn)`: any per-transition bonus or penalty (a living cost, an event bonus); it may
  change the optimal policy.
* `icm(config)`: the Intrinsic Curiosity Module (Pathak et al. 2017).
* `rnd(config)`: Random Network Distillation (Burda et al. 2018).

Transitions have leaves `[T, N, ...]` (on-policy) or `[N, ...]` (replay agents); the
kernels below work on one flat batch `[B, ...]` and the add-ons flatten the leading axes.

Limits of the add-on contract: an add-on does not see the agent's hyperparameters, so a
shaping `gamma` is given to the add-on (it must equal the agent's) and its own settings
are Python numbers (not swept by a vmap over `HParams`). The agent
learns one reward with one value head: intrinsic rewards share the extrinsic discount and
stop at termination (Burda et al. 2018 keep a separate non-episodic intrinsic head).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import config as cfg
from jaxrl import networks, optim
from jaxrl.agent import Addon, Setup
from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec, Metrics, Params, PRNGKey, Transition


@struct.dataclass
class Tally:
    """Per-transition sums of logged quantities since the last `after` hook."""

    sums: dict  # name -> float32 scalar: sum over transitions of the quantity
    count: jax.Array  # float32 scalar: transitions counted


def empty_tally(names: tuple[str, ...]) -> Tally:
    """A zero `Tally` of the quantities `names`."""
    return Tally(sums={n: jnp.float32(0.0) for n in names}, count=jnp.float32(0.0))


def add_to_tally(tally: Tally, count: int, **means: jax.Array) -> Tally:
    """`tally` plus `count` transitions whose batch means are `means` (scalars)."""
    return Tally(sums={n: s + count * means[n] for n, s in tally.sums.items()},
                 count=tally.count + count)


def report(astate: Any, metrics: Metrics, key: PRNGKey, *, name: str):
    """The `after` hook shared by the add-ons: log the tally's means as `{name}/...`, then
    clear it. Means are NaN when no transition was counted (never a fake zero)."""
    del key
    tally = astate.tally
    safe = jnp.maximum(tally.count, 1.0)
    means = {f"{name}/{n}": jnp.where(tally.count > 0, s / safe, jnp.nan)
             for n, s in tally.sums.items()}
    return (astate.replace(tally=empty_tally(tuple(tally.sums))), {**metrics, **means})


def flatten_batch(tree: Any, batch_ndim: int) -> Any:
    """Leaves `[*batch, ...]` -> `[B, ...]`, `B` the product of the `batch_ndim` axes."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[batch_ndim:]), tree)


def add_rewards(transitions: Transition, extra: jax.Array, tally: Tally,
                **means: jax.Array) -> tuple[Transition, Tally]:
    """Add `extra` (flat `[B]`) to the rewards (`[*batch]`) and tally both and `means`."""
    reward = transitions.reward
    tally = add_to_tally(tally, reward.size, extrinsic_mean=reward.mean(),
                         intrinsic_mean=extra.mean(), **means)
    return transitions.replace(reward=reward + extra.reshape(reward.shape)), tally


@struct.dataclass
class RewardState:
    """State of a stateless reward add-on: only its tally."""

    tally: Tally


def shaping_term(phi_tm1: jax.Array, phi_t: jax.Array, terminated_t: jax.Array,
                 gamma: float) -> jax.Array:
    """Potential-based shaping `F = gamma * phi(s_t) - phi(s_tm1)` with `phi(terminal) = 0`.

    Ng, Harada and Russell 1999, theorem 1: adding `F` keeps the optimal policies. For an
    episodic task the potential of an absorbing state must be 0, so `phi_t` is dropped on
    a terminated step. A truncated step keeps `phi_t` (the state is not terminal).

    Args:
      phi_tm1: [B] potential of the state the action was taken from.
      phi_t: [B] potential of the state it led to (before any auto-reset).
      terminated_t: [B] bool, true termination.
      gamma: the agent's discount (the theorem needs the same one).

    Returns:
      [B] shaping rewards.
    """
    chex.assert_rank([phi_tm1, phi_t, terminated_t], 1)
    chex.assert_equal_shape([phi_tm1, phi_t, terminated_t])
    return gamma * jnp.where(terminated_t, 0.0, phi_t) - phi_tm1


def check_gamma(gamma: Any) -> float:
    """`gamma` as a float, or `ConfigError` unless it is a real number in [0, 1]."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma <= 1:
        raise ConfigError(f"gamma must be a number in [0, 1] (the agent's discount), got "
                          f"{gamma!r}")
    return float(gamma)


def check_name(name: Any) -> None:
    """Raise `ConfigError` unless `name` (an add-on's name and metric prefix) is a
    non-empty string."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")


def _reward_addon(name: str, extra: Callable[[Transition], jax.Array]) -> Addon:
    """An add-on that adds `extra(flat transitions) -> [B]` to the rewards and logs it."""
    check_name(name)

    def init(key: PRNGKey, setup: Setup) -> RewardState:
        return RewardState(tally=empty_tally(("extrinsic_mean", "intrinsic_mean")))

    def transform(astate: RewardState, transitions: Transition, key: PRNGKey,
                  setup: Setup):
        flat = flatten_batch(transitions, transitions.reward.ndim)
        transitions, tally = add_rewards(transitions, extra(flat), astate.tally)
        return transitions, astate.replace(tally=tally)

    return Addon(name, init=init, transform=transform,
                 after=lambda a, m, k, setup: report(a, m, k, name=name))


def potential_shaping(potential: Callable[[jax.Array], jax.Array], gamma: float, *,
                      name: str = "shaping") -> Addon:
    """Add potential-based shaping rewards (see `shaping_term`) to every transition.

    Args:
      potential: `phi(obs[*obs_shape]) -> scalar`, a pure function of one observation as
        the agent sees it (normalised, with `normalize_obs`).
      gamma: must equal the agent's discount for the optimal policy to be kept (the add-on
        does not see the agent's hyperparameters).
      name: the add-on's name and metric prefix.
    """
    gamma = check_gamma(gamma)
    if not callable(potential):
        raise ConfigError(f"potential must be a function of one observation, got {potential!r}")

    def extra(flat: Transition) -> jax.Array:
        phi = jax.vmap(lambda o: jnp.asarray(potential(o), jnp.float32).reshape(()))
        return shaping_term(phi(flat.obs), phi(flat.next_obs), flat.terminated, gamma)

    return _reward_addon(name, extra)


def bonus(fn: Callable[[Transition], jax.Array], *, name: str = "bonus") -> Addon:
    """Add `fn(transition)` to every transition's reward: a plain bonus or penalty.

    Unlike potential shaping this may change the optimal policy (a living cost rewards
    ending episodes early, an event bonus may be farmed).

    Args:
      fn: `fn(t) -> scalar` of one `Transition` (leaves without batch axes).
      name: the add-on's name and metric prefix.
    """
    if not callable(fn):
        raise ConfigError(f"fn must be a function of one transition, got {fn!r}")

    def extra(flat: Transition) -> jax.Array:
        per_step = lambda t: jnp.broadcast_to(jnp.asarray(fn(t), jnp.float32), ())  # noqa: E731
        return jax.vmap(per_step)(flat)

    return _reward_addon(name, extra)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetConfig:
    """Fields the learned add-ons share.

    Attributes:
      feature_dim: width of the features (ICM's encoder output, RND's embedding).
      hidden_sizes: hidden layers of every network of the add-on.
      activation: hidden activation (`jaxrl.networks.ACTIVATIONS`).
      torso: `mlp` or `cnn` (for `[H, W, C]` observations), or a flax module, applied to
        observations before the hidden layers (see `jaxrl.agent.BaseConfig.torso`).
      learning_rate: Adam step size of the add-on's own optimizer.
      num_updates: gradient steps on each batch the add-on sees.
      coef: the reward the agent learns from is `extrinsic + coef * intrinsic`.
    """

    feature_dim: int = 32
    hidden_sizes: tuple[int, ...] = (64,)
    activation: str = "relu"
    torso: Any = "mlp"
    learning_rate: float = 1e-3
    num_updates: int = 1
    coef: float = 0.01

    def __post_init__(self):
        cfg.check_positive_int(self, ("feature_dim", "num_updates"))
        if self.hidden_sizes != ():
            cfg.check_sizes("hidden_sizes", self.hidden_sizes)
        cfg.check_choice("activation", self.activation, networks.ACTIVATIONS)
        if not isinstance(self.torso, nn.Module):
            cfg.check_choice("torso", self.torso, networks.TORSOS)
        self.check_number("learning_rate", low=0.0, low_open=True)
        self.check_number("coef", low=0.0)

    def check_number(self, name: str, *, low: float | None = None, high: float | None = None,
                     low_open: bool = False) -> None:
        """Raise `ConfigError` unless field `name` is a real number in the range."""
        value = getattr(self, name)
        bounds = (low, high, low_open, False)
        bad = (isinstance(value, bool) or not isinstance(value, (int, float))
               or (low is not None and (value < low or (low_open and value == low)))
               or (high is not None and value > high))
        if bad:
            raise ConfigError(f"{name} must be a number {cfg.describe_range(*bounds)}, got "
                              f"{value!r}")


class Head(nn.Module):
    """`MLP(hidden_sizes)` then a linear layer: `[..., in] -> [..., features]`."""

    features: int
    hidden_sizes: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.features)(networks.MLP(self.hidden_sizes, self.activation)(x))


class Embedding(nn.Module):
    """Observations `[..., *obs_shape]` -> features `[..., feature_dim]`: the torso, then
    `Head` (linear output, so features are not squashed)."""

    feature_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str
    torso: Any
    obs_ndim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = networks.features(self.torso, self.hidden_sizes, self.activation, obs,
                              self.obs_ndim, name="torso")
        return nn.Dense(self.feature_dim)(h)


def embedding(config: NetConfig, spec: EnvSpec) -> Embedding:
    """The `Embedding` module `config` describes for observations of `spec`."""
    return Embedding(config.feature_dim, config.hidden_sizes, config.activation,
                     config.torso, len(spec.obs_shape))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ICMConfig(NetConfig):
    """Intrinsic Curiosity Module settings (Pathak et al. 2017); others are `NetConfig`'s.

    Attributes:
      beta: weight of the forward loss against the inverse loss, `(1 - beta) * L_I +
        beta * L_F` (the paper's 0.2).
      eta: intrinsic reward scale, `r_i = eta / 2 * ||phi_hat(s_t) - phi(s_t)||^2`.
      forward_trains_encoder: let the forward loss train the encoder too (the paper's
        joint objective, eq. 7). Off by default: features come from the inverse model only,
        as in Burda et al. 2019 ("Large-Scale Study of Curiosity-Driven Learning"), which
        keeps the forward loss from shrinking the features to make prediction easy.
    """

    beta: float = 0.2
    eta: float = 1.0
    forward_trains_encoder: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.check_number("beta", low=0.0, high=1.0)
        self.check_number("eta", low=0.0)
        cfg.check_bool(self, ("forward_trains_encoder",))


class ICMNetwork(nn.Module):
    """Encoder `phi`, inverse model and forward model of ICM (Pathak et al. 2017, fig. 2).

    `__call__(obs[B, ...], action[B, ...], next_obs[B, ...])` returns `(phi_t[B, F],
    phi_hat_t[B, F], inverse[B, A])`: the next state's features (the forward target),
    the forward model's prediction of them from `(phi(s_tm1), a_tm1)`, and the inverse
    model's logits (discrete) or action estimate (continuous) from `(phi(s_tm1), phi(s_t))`.
    """

    encoder: Embedding
    action_dim: int
    discrete: bool
    forward_trains_encoder: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, next_obs: jax.Array):
        phi_tm1, phi_t = self.encoder(obs), self.encoder(next_obs)  # one encoder, shared
        enc = self.encoder
        inverse = Head(self.action_dim, enc.hidden_sizes, enc.activation, name="inverse")(
            jnp.concatenate([phi_tm1, phi_t], axis=-1))
        if self.discrete:
            a = jax.nn.one_hot(action, self.action_dim)
        else:
            a = action.reshape(action.shape[:1] + (-1,)).astype(jnp.float32)
        if not self.forward_trains_encoder:
            phi_tm1, phi_t = jax.lax.stop_gradient(phi_tm1), jax.lax.stop_gradient(phi_t)
        phi_hat_t = Head(enc.feature_dim, enc.hidden_sizes, enc.activation, name="forward")(
            jnp.concatenate([phi_tm1, a], axis=-1))
        return phi_t, phi_hat_t, inverse


def forward_loss(phi_hat_t: jax.Array, phi_t: jax.Array) -> jax.Array:
    """`L_F = 1/2 ||phi_hat_t - phi_t||^2` per example (Pathak et al. 2017, eq. 5).

    Args:
      phi_hat_t: [B, F] predicted features.
      phi_t: [B, F] features of the state reached.

    Returns:
      [B] losses; the intrinsic reward is `eta` times them (eq. 6).
    """
    chex.assert_rank([phi_hat_t, phi_t], 2)
    chex.assert_equal_shape([phi_hat_t, phi_t])
    return 0.5 * jnp.square(phi_hat_t - phi_t).sum(-1)


def inverse_loss(inverse: jax.Array, action: jax.Array, discrete: bool) -> jax.Array:
    """`L_I` per example: cross-entropy of the action taken under the inverse model's
    logits (discrete, as in the paper, eq. 3), or `1/2 ||a_hat - a||^2` (continuous: the
    Gaussian log-likelihood with unit variance, up to a constant; our choice).

    Args:
      inverse: [B, A] logits or action estimates.
      action: [B] int actions, or [B, *action_shape] continuous actions.

    Returns:
      [B] losses.
    """
    chex.assert_rank(inverse, 2)
    if discrete:
        return -jnp.take_along_axis(jax.nn.log_softmax(inverse), action[:, None], -1)[:, 0]
    action = action.reshape(inverse.shape).astype(jnp.float32)
    return 0.5 * jnp.square(inverse - action).sum(-1)


def icm_loss(params: Params, batch: Transition, network: ICMNetwork, beta: float):
    """ICM's training loss `(1 - beta) * L_I + beta * L_F` on a flat batch (eq. 7).

    Args:
      batch: `Transition` with leaves `[B, ...]` (obs, action, next_obs are used).

    Returns:
      `(loss, metrics)` with `loss_forward` and `loss_inverse` (batch means).
    """
    phi_t, phi_hat_t, inverse = network.apply(params, batch.obs, batch.action, batch.next_obs)
    l_f = forward_loss(phi_hat_t, phi_t).mean()
    l_i = inverse_loss(inverse, batch.action, network.discrete).mean()
    return (1.0 - beta) * l_i + beta * l_f, {"loss_forward": l_f, "loss_inverse": l_i}


def icm_reward(params: Params, batch: Transition, network: ICMNetwork,
               eta: float) -> jax.Array:
    """Curiosity `r_i = eta / 2 * ||phi_hat(s_t) - phi(s_t)||^2`, `[B]` (eq. 6)."""
    phi_t, phi_hat_t, _ = network.apply(params, batch.obs, batch.action, batch.next_obs)
    return eta * forward_loss(phi_hat_t, phi_t)


@struct.dataclass
class LearnedState:
    """State of a learned reward add-on (ICM, RND); `optim.gradient_step` updates it."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: gradient steps taken
    tally: Tally
    fixed: Params = None  # RND's random target network; None for ICM
    obs_moments: Any = None  # RND's observation statistics (`Moments`)
    reward_moments: Any = None  # RND's intrinsic-reward statistics (`Moments`)


def fit(state: LearnedState, loss_fn: Callable, batch: Any, learning_rate: float,
        num_updates: int, *args: Any) -> tuple[LearnedState, Metrics]:
    """`num_updates` Adam steps of `loss_fn(params, batch, *args)` on one batch.

    Returns:
      `(state, metrics)`: the metrics of the first step (the loss before this batch's
      updates, comparable across iterations).
    """
    tx = optax.adam(learning_rate)

    def one(state, _):
        return optim.gradient_step(loss_fn, state, batch, tx, *args)

    state, metrics = jax.lax.scan(one, state, None, length=num_updates)
    return state, jax.tree.map(lambda m: m[0], metrics)


def icm_network(config: ICMConfig, spec: Any) -> ICMNetwork:
    """The ICM models `config` describes for an env of `spec`."""
    return ICMNetwork(embedding(config, spec), spec.action_dim, spec.discrete,
                      config.forward_trains_encoder)


def icm(config: ICMConfig | None = None, *, name: str = "icm") -> Addon:
    """The Intrinsic Curiosity Module as an add-on (Pathak et al. 2017).

    On every batch: the intrinsic reward is computed with the current models, added as
    `reward + coef * r_i`, then the models take `num_updates` Adam steps on the batch.
    Logs `{name}/extrinsic_mean`, `{name}/intrinsic_mean` (after `coef`),
    `{name}/loss_forward` and `{name}/loss_inverse`.
    """
    config = ICMConfig() if config is None else config
    if not isinstance(config, ICMConfig):
        raise ConfigError(f"config must be an ICMConfig, got {type(config).__name__}")
    check_name(name)

    def init(key: PRNGKey, setup: Setup) -> LearnedState:
        spec = setup.spec
        obs = jnp.zeros((1,) + spec.obs_shape, jnp.float32)
        action = (jnp.zeros((1,), jnp.int32) if spec.discrete
                  else jnp.zeros((1,) + spec.action_shape, jnp.float32))
        params = icm_network(config, spec).init(key, obs, action, obs)
        return LearnedState(
            params=params, opt_state=optax.adam(config.learning_rate).init(params),
            step=jnp.int32(0), tally=empty_tally(
                ("extrinsic_mean", "intrinsic_mean", "loss_forward", "loss_inverse")))

    def transform(astate: LearnedState, transitions: Transition, key: PRNGKey,
                  setup: Setup):
        flat = flatten_batch(transitions, transitions.reward.ndim)
        net = icm_network(config, setup.spec)
        r_i = icm_reward(astate.params, flat, net, config.eta)
        astate, metrics = fit(astate, icm_loss, flat, config.learning_rate,
                              config.num_updates, net, config.beta)
        transitions, tally = add_rewards(transitions, config.coef * r_i, astate.tally,
                                         loss_forward=metrics["loss_forward"],
                                         loss_inverse=metrics["loss_inverse"])
        return transitions, astate.replace(tally=tally)

    return Addon(name, init=init, transform=transform,
                 after=lambda a, m, k, setup: report(a, m, k, name=name))


@struct.dataclass
class Moments:
    """Running mean and (population) variance over all samples seen, per feature."""

    mean: jax.Array  # [*shape]
    var: jax.Array  # [*shape]
    count: jax.Array  # float32 scalar


def init_moments(shape: tuple[int, ...] = ()) -> Moments:
    """Statistics of no samples (mean 0, variance 1, count 0)."""
    return Moments(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32),
                   jnp.float32(0.0))


def update_moments(moments: Moments, x: jax.Array) -> Moments:
    """Merge a batch `x[B, *shape]` into `moments` (Chan, Golub and LeVeque 1979).

    The result is the mean and population variance of every sample seen; with no sample
    seen before, the batch's own (the prior variance of 1 has weight 0).
    """
    x = x.astype(jnp.float32)
    n_b = jnp.float32(x.shape[0])
    mean_b, var_b = x.mean(0), x.var(0)
    total = moments.count + n_b
    delta = mean_b - moments.mean
    mean = moments.mean + delta * n_b / total
    m2 = (moments.var * moments.count + var_b * n_b
          + jnp.square(delta) * moments.count * n_b / total)
    return Moments(mean=mean, var=m2 / total, count=total)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNDConfig(NetConfig):
    """Random Network Distillation settings (Burda et al. 2018); others are `NetConfig`'s.

    Attributes:
      obs_clip: normalised observations are clipped to `[-obs_clip, obs_clip]` (paper: 5).
      update_proportion: fraction of each batch the predictor trains on (paper: 0.25, to
        keep the predictor from learning faster with more parallel envs).
      epsilon: added to variances before the square root.
    """

    hidden_sizes: tuple[int, ...] = (64, 64)
    coef: float = 0.5
    obs_clip: float = 5.0
    update_proportion: float = 1.0
    epsilon: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        self.check_number("obs_clip", low=0.0, low_open=True)
        self.check_number("update_proportion", low=0.0, high=1.0, low_open=True)
        self.check_number("epsilon", low=0.0, low_open=True)


def normalize_obs(moments: Moments, obs: jax.Array, clip: float,
                  epsilon: float) -> jax.Array:
    """`clip((obs - mean) / sqrt(var + epsilon), -clip, clip)`, `obs` `[B, *shape]`."""
    z = (obs.astype(jnp.float32) - moments.mean[None]) / jnp.sqrt(moments.var[None] + epsilon)
    return jnp.clip(z, -clip, clip)


def normalize_rewards(moments: Moments, error: jax.Array,
                      epsilon: float) -> tuple[jax.Array, Moments]:
    """Merge the errors `[B]` into the running statistics, then divide them by the running
    standard deviation of every intrinsic reward seen so far (mean not subtracted).

    Burda et al. 2018 (section 2.4) divide by the running standard deviation of the
    discounted intrinsic *return*; we use that of the rewards, which needs no per-env
    accumulator and so works the same for `[T, N]` and `[N]` batches.

    Returns:
      `([B] normalised rewards, moments)`.
    """
    chex.assert_rank(error, 1)
    moments = update_moments(moments, error)
    # Until two different errors were seen the variance is 0: leave the scale alone then
    # rather than divide by sqrt(epsilon).
    std = jnp.where(moments.var > 0, jnp.sqrt(moments.var + epsilon), 1.0)
    return error / std, moments


def rnd_error(params: Params, target_params: Params, network: Embedding,
              obs: jax.Array) -> jax.Array:
    """Predictor error `mean_f (f_hat(x) - f(x))^2` per example, `[B]` (Burda et al. eq. 1
    averaged over the embedding), for normalised observations `obs[B, ...]`."""
    target = jax.lax.stop_gradient(network.apply(target_params, obs))
    return jnp.square(network.apply(params, obs) - target).mean(-1)


def rnd_loss(params: Params, batch: tuple, network: Embedding):
    """The predictor's loss: the masked mean error on `batch = (target_params, obs, mask)`.

    Returns:
      `(loss, {"loss": loss})`.
    """
    target_params, obs, mask = batch
    error = rnd_error(params, target_params, network, obs)
    loss = (error * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    return loss, {"loss": loss}


def rnd(config: RNDConfig | None = None, *, name: str = "rnd") -> Addon:
    """Random Network Distillation as an add-on (Burda et al. 2018).

    On every batch: the observations reached (`next_obs`) update the observation
    statistics and are normalised; the error of the trained predictor against the fixed
    random target is the novelty, normalised by the running standard deviation of all
    novelties (see `normalize_rewards`) and added as `reward + coef * r_i`; then the
    predictor takes `num_updates` Adam steps on a random `update_proportion` of the batch.
    Logs `{name}/extrinsic_mean`, `{name}/intrinsic_mean` (after `coef`),
    `{name}/error_mean` (before normalisation) and `{name}/loss`.
    """
    config = RNDConfig() if config is None else config
    if not isinstance(config, RNDConfig):
        raise ConfigError(f"config must be an RNDConfig, got {type(config).__name__}")
    check_name(name)

    def init(key: PRNGKey, setup: Setup) -> LearnedState:
        network = embedding(config, setup.spec)
        predictor_key, target_key = jax.random.split(key)
        obs = jnp.zeros((1,) + setup.spec.obs_shape, jnp.float32)
        params = network.init(predictor_key, obs)
        return LearnedState(
            params=params, opt_state=optax.adam(config.learning_rate).init(params),
            step=jnp.int32(0), fixed=network.init(target_key, obs),
            obs_moments=init_moments(setup.spec.obs_shape), reward_moments=init_moments(),
            tally=empty_tally(("extrinsic_mean", "intrinsic_mean", "error_mean", "loss")))

    def transform(astate: LearnedState, transitions: Transition, key: PRNGKey,
                  setup: Setup):
        network = embedding(config, setup.spec)
        next_obs = flatten_batch(transitions.next_obs, transitions.reward.ndim)
        obs_moments = update_moments(astate.obs_moments, next_obs)
        obs = normalize_obs(obs_moments, next_obs, config.obs_clip, config.epsilon)
        error = rnd_error(astate.params, astate.fixed, network, obs)
        r_i, reward_moments = normalize_rewards(astate.reward_moments, error, config.epsilon)
        mask = jax.random.bernoulli(key, config.update_proportion, error.shape)
        astate, metrics = fit(astate, rnd_loss, (astate.fixed, obs, mask.astype(jnp.float32)),
                              config.learning_rate, config.num_updates, network)
        transitions, tally = add_rewards(transitions, config.coef * r_i, astate.tally,
                                         error_mean=error.mean(), loss=metrics["loss"])
        return transitions, astate.replace(tally=tally, obs_moments=obs_moments,
                                           reward_moments=reward_moments)

    return Addon(name, init=init, transform=transform,
                 after=lambda a, m, k, setup: report(a, m, k, name=name))
