"""Proximal Policy Optimization: clipped surrogate (PPO2) or adaptive KL penalty (PPO1).

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7 (clipped surrogate)
and eq. 9 (the combined objective with a value loss and an entropy bonus), with the
implementation details of Huang et al. 2022, "The 37 Implementation Details of PPO":
orthogonal init, GAE, per-minibatch advantage normalisation, a clipped value loss, global
gradient-norm clipping, Adam with eps 1e-5 and optional linear learning-rate annealing.

Each iteration acts `rollout_len` steps in `num_envs` vmapped envs, computes values and
log-probabilities for the whole batch in one pass, estimates truncation-aware GAE
advantages, then runs `num_epochs` epochs of `num_minibatches` shuffled minibatches.

A `KLConfig` switches the actor objective to the paper's section 4 (the lecture's PPO1):
maximise `E[ratio * A] - beta * KL(pi_old || pi)`, with the exact KL between the action
distributions averaged over the batch's states. After each iteration, `beta` (part of the
training state) is doubled if the measured KL exceeds `kl_max` and halved below `kl_min`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax
from flax import struct

from jaxrl import actor_critic, losses, networks, rollout, runner
from jaxrl import config as cfg
from jaxrl.actor_critic import Batch, State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.config import ConfigError, hparam
from jaxrl.types import Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.RolloutSizes):
    """Static PPO configuration. Defaults are PureJaxRL's CartPole settings.

    Attributes:
      env: registered environment id (`jaxrl list`).
      num_envs: parallel environment copies per seed (`N`).
      rollout_len: steps per env per iteration (`T`).
      total_timesteps: env steps per seed over the whole run.
      num_epochs: passes over each batch.
      num_minibatches: minibatches per epoch; must divide `num_envs * rollout_len`.
      hidden_sizes: widths of the actor's and the critic's hidden layers.
      activation: hidden activation (`tanh`, `relu`, `gelu`, `elu`, `silu`).
      shared_trunk: one torso for actor and critic instead of two.
      anneal_lr: decay the learning rate linearly to 0 over the run.
      clip_value_loss: use the clipped value loss (else plain squared error).
      normalize_advantages: standardise advantages within each minibatch.
      normalize_obs: normalise observations by running statistics (per env copy).
      skip_nonfinite: skip updates whose gradient is NaN or infinite, counting them;
        fatal after this many in a row (0: off, every non-finite value stops the run).
    """

    env: str = "CartPole-v1"
    num_envs: int = 4
    rollout_len: int = 128
    total_timesteps: int = 500_000
    num_epochs: int = 4
    num_minibatches: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    anneal_lr: bool = True
    clip_value_loss: bool = True
    normalize_advantages: bool = True
    normalize_obs: bool = False
    skip_nonfinite: int = 0

    def __post_init__(self):
        actor_critic.check_config(self, ("num_epochs", "num_minibatches"))
        if self.clip_value_loss and isinstance(self, KLConfig):
            raise ConfigError("clip_value_loss is a clipped-PPO option; the adaptive-KL "
                              "variant uses the plain squared error (--no-clip-value-loss)")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"num_minibatches ({self.num_minibatches}) must divide num_envs * rollout_len "
                f"({self.num_envs} * {self.rollout_len} = {self.batch_size})")
        if self.normalize_advantages and self.batch_size // self.num_minibatches < 2:
            raise ConfigError("num_minibatches leaves minibatches of one transition, whose "
                              "normalised advantage is 0; use fewer minibatches or "
                              "--no-normalize-advantages")

    @property
    def num_updates(self) -> int:
        """Gradient steps in the run (for learning-rate annealing)."""
        return self.num_iterations * self.num_epochs * self.num_minibatches


@dataclasses.dataclass(frozen=True, kw_only=True)
class KLConfig(Config):
    """PPO with an adaptive KL penalty instead of clipping (PPO1), discrete or Gaussian.

    The same fields as `Config`; the value loss is the plain squared error. The penalty
    coefficient and its band are hyperparameters (`KLHParams`). Without clipping, more
    epochs per batch are what bring the measured KL up to the band; 10 epochs with a
    learning rate of 1e-3 solve CartPole on every seed we tried (`bench/RESULTS.md`).

    Attributes:
      num_epochs: passes over each batch.
      clip_value_loss: must stay False (no clipping in this variant).
    """

    num_epochs: int = 10
    clip_value_loss: bool = False


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalar hyperparameters; a leading axis on every leaf sweeps them with `vmap`.

    Attributes:
      learning_rate: Adam step size (annealed linearly to 0 when `anneal_lr`).
      gamma: discount factor.
      gae_lambda: GAE mixing parameter (0: one-step TD error, 1: Monte-Carlo).
      clip_eps: clipping radius of the surrogate (and of the clipped value loss).
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      max_grad_norm: threshold of global gradient-norm clipping.
    """

    learning_rate: jax.Array = hparam(2.5e-4, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    gae_lambda: jax.Array = hparam(0.95, low=0.0, high=1.0)
    clip_eps: jax.Array = hparam(0.2, low=0.0, low_open=True)
    ent_coef: jax.Array = hparam(0.01, low=0.0)
    vf_coef: jax.Array = hparam(0.5, low=0.0)
    max_grad_norm: jax.Array = hparam(0.5, low=0.0, low_open=True)


@struct.dataclass
class KLHParams(HParams):
    """`HParams` plus the adaptive KL penalty's; `clip_eps` is unused.

    Attributes:
      learning_rate: Adam step size (annealed linearly to 0 when `anneal_lr`).
      beta_init: initial penalty coefficient on KL(pi_old || pi).
      kl_min: below this measured KL, beta is divided by `kl_factor`.
      kl_max: above this measured KL, beta is multiplied by `kl_factor`.
      kl_factor: multiplicative step of beta (the paper's 2).
    """

    learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    beta_init: jax.Array = hparam(1.0, low=0.0, low_open=True)
    kl_min: jax.Array = hparam(0.01 / 1.5, low=0.0)
    kl_max: jax.Array = hparam(0.01 * 1.5, low=0.0, low_open=True)
    kl_factor: jax.Array = hparam(2.0, low=1.0, low_open=True)

    @classmethod
    def create(cls, **values: float) -> "KLHParams":
        """Validated hyperparameters; also requires `kl_min <= kl_max` (elementwise)."""
        hparams = super().create(**values)
        if np.any(np.asarray(hparams.kl_min) > np.asarray(hparams.kl_max)):
            raise ConfigError(
                f"kl_min ({np.array2string(np.asarray(hparams.kl_min), precision=6)}) must "
                f"not exceed kl_max ({np.array2string(np.asarray(hparams.kl_max), precision=6)})")
        return hparams


@struct.dataclass
class KLState(State):
    """`State` plus the adaptive penalty coefficient (float32 scalar)."""

    beta: jax.Array


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, learning rate traced from `hparams`."""
    return actor_critic.make_optimizer("adam", hparams.learning_rate, hparams.max_grad_norm,
                                       config.num_updates if config.anneal_lr else None,
                                       skip_nonfinite=config.skip_nonfinite)


def init(key: PRNGKey, config: Config, hparams: HParams) -> State:
    """Fresh parameters, optimizer state and `num_envs` reset environments (and `beta`)."""
    state = actor_critic.init(key, config, optimizer(hparams, config))
    if isinstance(config, KLConfig):
        state = actor_critic.extend_state(state, KLState, beta=hparams.beta_init)
    return state


def loss(params: Params, batch: Batch, hparams: HParams, config: Config,
         beta: jax.Array | float = 0.0):
    """PPO objective on a minibatch (eq. 9 of the paper, as a loss to minimise).

    Args:
      params: network parameters.
      batch: `Batch` with leaves `[B, ...]` (with `policy_params` for a `KLConfig`).
      beta: KL-penalty coefficient (`KLConfig` only; the state's `beta`).

    Returns:
      `(total_loss, metrics)`: total = actor + vf_coef * value - ent_coef * entropy, where
      actor is the clipped surrogate (eq. 7) or, for a `KLConfig`, the penalised
      surrogate `-(ratio * A) + beta * KL(pi_old || pi)` (eq. 8).
    """
    policy_params, value = actor_critic.heads(params, batch.obs, config)
    dist = networks.distribution(policy_params, setup(config).spec.discrete)
    log_prob = dist.log_prob(batch.action)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = batch.advantage
    if config.normalize_advantages:
        adv = actor_critic.standardize(adv)
    extra = {}
    if isinstance(config, KLConfig):
        kl = actor_critic.mean_kl(batch.policy_params, policy_params, config)
        actor_loss = -(ratio * adv).mean() + beta * kl
        extra = {"ppo/kl": kl}
    else:
        actor_loss = rlax.clipped_surrogate_pg_loss(ratio, adv, hparams.clip_eps)
    if config.clip_value_loss:
        value_loss = jax.vmap(losses.clipped_value_loss, in_axes=(0, 0, 0, None))(
            value, batch.value, batch.target, hparams.clip_eps).mean()
    else:
        value_loss = 0.5 * jnp.square(value - batch.target).mean()
    entropy = dist.entropy().mean()
    total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    metrics = {
        "loss/total": total,
        "loss/actor": actor_loss,
        "loss/value": value_loss,
        "loss/entropy": entropy,
        # The low-variance KL estimator (ratio - 1) - log ratio (Schulman 2020, "k3").
        "ppo/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "ppo/clip_frac": (jnp.abs(ratio - 1.0) > hparams.clip_eps).mean(),
        **extra,
    }
    return total, metrics


def update(state: State, batch: Batch, hparams: HParams, config: Config):
    """One gradient step on one minibatch.

    Returns:
      `(state, metrics)` with the loss metrics and `opt/grad_norm`.
    """
    loss_fn = loss
    if isinstance(config, KLConfig):
        loss_fn = functools.partial(loss, beta=state.beta)
    return actor_critic.gradient_step(loss_fn, state, batch, hparams, config,
                                      optimizer(hparams, config))


def learn(state: State, batch: Batch, key: PRNGKey, hparams: HParams, config: Config):
    """`num_epochs` epochs of `update` over shuffled minibatches of a `[B]` batch.

    Returns:
      `(state, metrics)`, metrics averaged over all minibatch updates.
    """

    def epoch(state, epoch_key):
        perm = jax.random.permutation(epoch_key, config.batch_size)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), batch)
        return jax.lax.scan(lambda st, mb: update(st, mb, hparams, config), state, minibatches)

    state, metrics = jax.lax.scan(epoch, state, jax.random.split(key, config.num_epochs))
    return state, jax.tree.map(jnp.mean, metrics)


def make_batch(params: Params, traj: Transition, hparams: HParams, config: Config) -> Batch:
    """`actor_critic.make_batch` with PPO's `gamma` and `gae_lambda`: `[T, N]` -> `[T*N]`."""
    return actor_critic.make_batch(params, traj, hparams.gamma, hparams.gae_lambda, config,
                                   keep_policy=isinstance(config, KLConfig))


def adapt_beta(state: KLState, batch: Batch, hparams: KLHParams, config: KLConfig):
    """Measure `KL(pi_old || pi_new)` over the batch's states and adapt `beta` (section 4).

    Returns:
      `(state, metrics)` with the new `beta`, and `ppo/beta` (the one used in this
      iteration's updates) and `ppo/iteration_kl` (the measured KL).
    """
    new_policy, _ = actor_critic.heads(state.params, batch.obs, config)
    kl = actor_critic.mean_kl(batch.policy_params, new_policy, config)
    beta = losses.adaptive_kl_coefficient(state.beta, kl, hparams.kl_min, hparams.kl_max,
                                          hparams.kl_factor)
    return state.replace(beta=beta), {"ppo/beta": state.beta, "ppo/iteration_kl": kl}


def iteration(state: State, key: PRNGKey, hparams: HParams, config: Config):
    """Collect one rollout in every env copy, then learn from it.

    Returns:
      `(state, metrics)`: learning metrics and `episode/*` statistics of the rollout.
    """
    rollout_key, learn_key = jax.random.split(key)
    state, traj, episodes = actor_critic.collect(state, rollout_key, config)
    batch = make_batch(state.params, traj, hparams, config)
    state, metrics = learn(state, batch, learn_key, hparams, config)
    if isinstance(config, KLConfig):
        state, kl_metrics = adapt_beta(state, batch, hparams, config)
        metrics = {**metrics, **kl_metrics}
    return state, {**metrics, **rollout.episode_metrics(episodes)}


def make_parts(config: Config):
    """`(init, iteration)` closed over `config`, for `jaxrl.runner`."""
    return runner.bind(init, iteration, config)


def make_train(config: Config):
    """`train(key, hparams) -> (state, metrics[num_iterations])`, one pure function."""
    return runner.make_train(*make_parts(config), config.num_iterations)
