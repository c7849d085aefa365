"""Proximal Policy Optimization: clipped surrogate (PPO2) or adaptive KL penalty (PPO1).

Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7 (clipped surrogate)
and eq. 9 (the combined objective with a value loss and an entropy bonus), with the
implementation details of Huang et al. 2022, "The 37 Implementation Details of PPO":
orthogonal init, GAE, per-minibatch advantage normalisation, a clipped value loss, global
gradient-norm clipping, Adam with eps 1e-5 and optional linear learning-rate annealing.

`objective = "kl"` switches the actor objective to the paper's section 4 (PPO1):
maximise `E[ratio * A] - beta * KL(pi_old || pi)`, with the exact KL between the action
distributions averaged over the batch's states and `beta`, part of the training state,
adapted after each iteration (`adapt_beta`).
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

from jaxrl import actor_critic, losses, networks, optim, rollout
from jaxrl import config as cfg
from jaxrl.actor_critic import Batch, State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError, hparam
from jaxrl.types import Params, PRNGKey, Transition

OBJECTIVES = ("clip", "kl")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.OnPolicyConfig):
    """Static PPO configuration. Defaults are PureJaxRL's CartPole settings.

    The fields not listed are `jaxrl.actor_critic.OnPolicyConfig`'s.

    Attributes:
      objective: `clip` (the clipped surrogate, PPO2) or `kl` (an adaptive KL penalty,
        PPO1; its coefficient and band are hyperparameters).
      num_epochs: passes over each batch.
      num_minibatches: minibatches per epoch; must divide `num_envs * rollout_len`.
      shared_trunk: one torso for actor and critic instead of two.
      anneal_lr: decay the learning rate linearly to 0 over the run.
      clip_value_loss: use the clipped value loss (else plain squared error; `clip` only).
    """

    num_envs: int = 4
    rollout_len: int = 128
    total_timesteps: int = 500_000
    objective: str = "clip"
    num_epochs: int = 4
    num_minibatches: int = 4
    shared_trunk: bool = False
    anneal_lr: bool = True
    clip_value_loss: bool = True
    normalize_advantages: bool = True

    def __post_init__(self):
        super().__post_init__()
        cfg.check_choice("objective", self.objective, OBJECTIVES)
        cfg.check_positive_int(self, ("num_epochs", "num_minibatches"))
        if self.clip_value_loss and self.objective == "kl":
            raise ConfigError("clip_value_loss is a clipped-PPO option; the adaptive-KL "
                              "objective uses the plain squared error (--no-clip-value-loss)")
        self.check_divides("num_minibatches")
        if (self.normalize_advantages
                and self.steps_per_iteration // self.num_minibatches < 2):
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

    `Config` with `objective` `kl`, the plain squared-error value loss, and 10 epochs:
    without clipping, more epochs per batch are what bring the measured KL up to the band
    (`bench/RESULTS.md` has the seeds we tried).
    """

    objective: str = "kl"
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
      beta_init: `kl` objective: initial penalty coefficient on KL(pi_old || pi).
      kl_min: `kl` objective: below this measured KL, beta is divided by `kl_factor`.
      kl_max: `kl` objective: above this measured KL, beta is multiplied by `kl_factor`.
      kl_factor: `kl` objective: multiplicative step of beta (the paper's 2).
    """

    learning_rate: jax.Array = hparam(2.5e-4, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    gae_lambda: jax.Array = hparam(0.95, low=0.0, high=1.0)
    clip_eps: jax.Array = hparam(0.2, low=0.0, low_open=True)
    ent_coef: jax.Array = hparam(0.01, low=0.0)
    vf_coef: jax.Array = hparam(0.5, low=0.0)
    max_grad_norm: jax.Array = hparam(0.5, low=0.0, low_open=True)
    beta_init: jax.Array = hparam(1.0, low=0.0, low_open=True)
    kl_min: jax.Array = hparam(0.01 / 1.5, low=0.0)
    kl_max: jax.Array = hparam(0.01 * 1.5, low=0.0, low_open=True)
    kl_factor: jax.Array = hparam(2.0, low=1.0, low_open=True)

    @classmethod
    def create(cls, **values: float) -> "HParams":
        """Validated hyperparameters; also requires `kl_min <= kl_max` (elementwise)."""
        hparams = super().create(**values)
        if np.any(np.asarray(hparams.kl_min) > np.asarray(hparams.kl_max)):
            raise ConfigError(
                f"kl_min ({np.array2string(np.asarray(hparams.kl_min), precision=6)}) must "
                f"not exceed kl_max ({np.array2string(np.asarray(hparams.kl_max), precision=6)})")
        return hparams


@struct.dataclass
class KLHParams(HParams):
    """`HParams` for the `kl` objective: a larger default step size (`clip_eps` unused).

    Attributes:
      learning_rate: Adam step size (annealed linearly to 0 when `anneal_lr`).
    """

    learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)


@struct.dataclass
class KLState(State):
    """`State` plus the adaptive penalty coefficient (float32 scalar)."""

    beta: jax.Array


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, learning rate traced from `hparams`."""
    return optim.make_optimizer("adam", hparams.learning_rate, hparams.max_grad_norm,
                                config.num_updates if config.anneal_lr else None,
                                skip_nonfinite=config.skip_nonfinite)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh parameters, optimizer state and `num_envs` reset environments (and `beta`)."""
    state = actor_critic.init(key, setup, optimizer(hparams, setup.config))
    if setup.config.objective == "kl":
        state = actor_critic.extend_state(state, KLState, beta=hparams.beta_init)
    return state


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup,
         beta: jax.Array | float = 0.0):
    """PPO objective on a minibatch (eq. 9 of the paper, as a loss to minimise).

    Args:
      batch: `Batch` with leaves `[B, ...]` (with `policy_params` for the `kl` objective).
      beta: KL-penalty coefficient (`kl` objective only; the state's `beta`).

    Returns:
      `(total_loss, metrics)`: total = actor + vf_coef * value - ent_coef * entropy, where
      actor is the clipped surrogate (eq. 7) or, for the `kl` objective, the penalised
      surrogate `-(ratio * A) + beta * KL(pi_old || pi)` (eq. 8).
    """
    config = setup.config
    policy_params, value = actor_critic.heads(params, batch.obs, setup)
    dist = networks.distribution(policy_params, setup.spec.discrete)
    log_prob = dist.log_prob(batch.action)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = batch.advantage
    if config.normalize_advantages:
        adv = actor_critic.standardize(adv)
    extra = {}
    if config.objective == "kl":
        kl = actor_critic.mean_kl(batch.policy_params, policy_params, setup)
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
    return total, {
        "loss/total": total, "loss/actor": actor_loss, "loss/value": value_loss,
        "loss/entropy": entropy,
        # The low-variance KL estimator (ratio - 1) - log ratio (Schulman 2020, "k3").
        "ppo/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "ppo/clip_frac": (jnp.abs(ratio - 1.0) > hparams.clip_eps).mean(), **extra}


def update(state: State, batch: Batch, hparams: HParams, setup: Setup):
    """One gradient step on one minibatch: `(state, metrics)` (`optim.gradient_step`)."""
    loss_fn = loss
    if setup.config.objective == "kl":
        loss_fn = functools.partial(loss, beta=state.beta)
    return optim.gradient_step(loss_fn, state, batch, optimizer(hparams, setup.config),
                               hparams, setup)


def make_batch(params: Params, traj: Transition, hparams: HParams, setup: Setup) -> Batch:
    """`actor_critic.make_batch` with PPO's `gamma` and `gae_lambda`: `[T, N]` -> `[T*N]`."""
    return actor_critic.make_batch(params, traj, hparams.gamma, hparams.gae_lambda, setup,
                                   keep_policy=setup.config.objective == "kl")


def adapt_beta(state: KLState, batch: Batch, hparams: HParams, setup: Setup):
    """Measure `KL(pi_old || pi_new)` over the batch's states and adapt `beta` (section 4).

    Returns:
      `(state, metrics)` with the new `beta`, and `ppo/beta` (the one used in this
      iteration's updates) and `ppo/iteration_kl` (the measured KL).
    """
    new_policy, _ = actor_critic.heads(state.params, batch.obs, setup)
    kl = actor_critic.mean_kl(batch.policy_params, new_policy, setup)
    beta = losses.adaptive_kl_coefficient(state.beta, kl, hparams.kl_min, hparams.kl_max,
                                          hparams.kl_factor)
    return state.replace(beta=beta), {"ppo/beta": state.beta, "ppo/iteration_kl": kl}


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """Collect one rollout in every env copy, then `num_epochs` epochs of minibatch updates.

    Returns `(state, metrics)`: learning metrics and `episode/*` statistics of the rollout.
    """
    config = setup.config
    rollout_key, learn_key = jax.random.split(key)
    state, traj, episodes = actor_critic.collect(state, rollout_key, setup)
    batch = make_batch(state.params, traj, hparams, setup)
    state, metrics = actor_critic.minibatch_epochs(
        state, batch, learn_key, lambda st, mb: update(st, mb, hparams, setup),
        config.num_epochs, config.num_minibatches)
    if config.objective == "kl":
        state, kl_metrics = adapt_beta(state, batch, hparams, setup)
        metrics = {**metrics, **kl_metrics}
    return state, {**metrics, **rollout.episode_metrics(episodes)}


AGENT = Agent(name="ppo", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
KL_AGENT = AGENT.variant("ppo-kl", config=KLConfig, hparams=KLHParams)
