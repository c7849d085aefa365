"""Advantage actor-critic (A2C): synchronous, over vmapped envs, discrete or Gaussian.

Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning", algorithm S3,
in its synchronous form: `num_envs` workers act together for `rollout_len` steps, then one
gradient step on `-(log pi(a|s) A) + vf_coef * 0.5 (V(s) - G)^2 - ent_coef * H(pi(s))`.
The advantage is GAE (`gae_lambda < 1`) or, with `gae_lambda = 1`, the n-step return to the
end of the rollout minus V(s) (the paper's estimator), bootstrapped and cut at episode
ends like every estimator in `jaxrl.returns`. Actor and critic may share their torso.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import actor_critic, rollout, runner
from jaxrl import config as cfg
from jaxrl.actor_critic import Batch, State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.config import ConfigError, hparam
from jaxrl.types import Params, PRNGKey

@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.RolloutSizes):
    """Static A2C configuration.

    Attributes:
      env: registered environment id (`jaxrl list`).
      num_envs: parallel environment copies (workers) per seed (`N`).
      rollout_len: steps per env between updates (`T`, the n of n-step returns).
      total_timesteps: env steps per seed over the whole run.
      hidden_sizes: widths of the actor's and the critic's hidden layers.
      activation: hidden activation (`tanh`, `relu`, `gelu`, `elu`, `silu`).
      shared_trunk: one torso for actor and critic (the paper's network) instead of two.
      optimizer: `rmsprop` (the paper's, decay 0.99, eps 1e-5) or `adam` (eps 1e-5).
      anneal_lr: decay the learning rate linearly to 0 over the run.
      normalize_advantages: standardise advantages within each batch.
      normalize_obs: normalise observations by running statistics (per env copy).
      skip_nonfinite: skip updates whose gradient is NaN or infinite, counting them;
        fatal after this many in a row (0: off, every non-finite value stops the run).
    """

    env: str = "CartPole-v1"
    num_envs: int = 16
    rollout_len: int = 8
    total_timesteps: int = 1_000_000
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    optimizer: str = "rmsprop"
    anneal_lr: bool = True
    normalize_advantages: bool = False
    normalize_obs: bool = False
    skip_nonfinite: int = 0

    def __post_init__(self):
        actor_critic.check_config(self)
        cfg.check_choice("optimizer", self.optimizer, actor_critic.OPTIMIZERS)
        if self.normalize_advantages and self.batch_size < 2:
            raise ConfigError("num_envs * rollout_len must be at least 2 with "
                              "normalize_advantages (one normalised advantage is 0)")


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalar hyperparameters; a leading axis on every leaf sweeps them with `vmap`.

    Attributes:
      learning_rate: optimizer step size (annealed linearly to 0 when `anneal_lr`).
      gamma: discount factor.
      gae_lambda: GAE mixing parameter; 1 gives the paper's n-step advantage.
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      max_grad_norm: threshold of global gradient-norm clipping.
      reward_scale: multiplies rewards before advantages and value targets (logged
        episode returns stay unscaled); small values tame large value targets.
    """

    learning_rate: jax.Array = hparam(7e-4, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    gae_lambda: jax.Array = hparam(1.0, low=0.0, high=1.0)
    ent_coef: jax.Array = hparam(0.01, low=0.0)
    vf_coef: jax.Array = hparam(0.5, low=0.0)
    max_grad_norm: jax.Array = hparam(0.5, low=0.0, low_open=True)
    reward_scale: jax.Array = hparam(1.0, low=0.0, low_open=True)


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Global-norm clipping, then RMSprop or Adam with a traced (optionally annealed) rate.

    One optimizer update per iteration, so annealing runs over `num_iterations` updates.
    """
    return actor_critic.make_optimizer(
        config.optimizer, hparams.learning_rate, hparams.max_grad_norm,
        config.num_iterations if config.anneal_lr else None,
        skip_nonfinite=config.skip_nonfinite)


def init(key: PRNGKey, config: Config, hparams: HParams) -> State:
    """Fresh parameters, optimizer state and `num_envs` reset environments."""
    return actor_critic.init(key, config, optimizer(hparams, config))


def loss(params: Params, batch: Batch, hparams: HParams, config: Config):
    """A2C objective on a batch, as a loss to minimise.

    Args:
      params: network parameters.
      batch: `Batch` with leaves `[B, ...]` (its `log_prob` is not used: A2C is on-policy).

    Returns:
      `(total_loss, metrics)`: total = actor + vf_coef * value - ent_coef * entropy.
    """
    dist, value = actor_critic.policy(params, batch.obs, config)
    adv = batch.advantage
    if config.normalize_advantages:
        adv = actor_critic.standardize(adv)
    # The advantage is a constant weight: the policy gradient is a weighted log-likelihood.
    actor_loss = -(dist.log_prob(batch.action) * jax.lax.stop_gradient(adv)).mean()
    value_loss = 0.5 * jnp.square(value - batch.target).mean()
    entropy = dist.entropy().mean()
    total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    return total, {"loss/total": total, "loss/actor": actor_loss, "loss/value": value_loss,
                   "loss/entropy": entropy}


def update(state: State, batch: Batch, hparams: HParams, config: Config):
    """One gradient step on the whole batch; returns `(state, metrics)`."""
    return actor_critic.gradient_step(loss, state, batch, hparams, config,
                                      optimizer(hparams, config))


def iteration(state: State, key: PRNGKey, hparams: HParams, config: Config):
    """Collect one rollout in every env copy, then take one gradient step on it."""
    state, traj, episodes = actor_critic.collect(state, key, config)
    batch = actor_critic.make_batch(state.params, traj, hparams.gamma, hparams.gae_lambda,
                                    config, reward_scale=hparams.reward_scale)
    state, metrics = update(state, batch, hparams, config)
    return state, {**metrics, **rollout.episode_metrics(episodes)}


def make_parts(config: Config):
    """`(init, iteration)` closed over `config`, for `jaxrl.runner`."""
    return runner.bind(init, iteration, config)


def make_train(config: Config):
    """`train(key, hparams) -> (state, metrics[num_iterations])`, one pure function."""
    return runner.make_train(*make_parts(config), config.num_iterations)
