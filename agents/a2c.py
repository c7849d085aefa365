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

from jaxrl import actor_critic, optim, rollout
from jaxrl import config as cfg
from jaxrl.actor_critic import Batch, State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.agent import Agent, Setup
from jaxrl.config import hparam
from jaxrl.types import Params, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.OnPolicyConfig):
    """Static A2C configuration.

    The fields not listed are `jaxrl.actor_critic.OnPolicyConfig`'s; here `num_envs` are
    the paper's workers and `rollout_len` the `n` of its n-step returns.

    Attributes:
      shared_trunk: one torso for actor and critic (the paper's network) instead of two.
      optimizer: `rmsprop` (the paper's, decay 0.99, eps 1e-5) or `adam` (eps 1e-5).
      anneal_lr: decay the learning rate linearly to 0 over the run.
    """

    num_envs: int = 16
    rollout_len: int = 8
    total_timesteps: int = 1_000_000
    shared_trunk: bool = False
    optimizer: str = "rmsprop"
    anneal_lr: bool = True

    def __post_init__(self):
        super().__post_init__()
        cfg.check_choice("optimizer", self.optimizer, optim.OPTIMIZERS)


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
    return optim.make_optimizer(config.optimizer, hparams.learning_rate,
                                hparams.max_grad_norm,
                                config.num_iterations if config.anneal_lr else None,
                                skip_nonfinite=config.skip_nonfinite)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh parameters, optimizer state and `num_envs` reset environments."""
    return actor_critic.init(key, setup, optimizer(hparams, setup.config))


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """A2C objective on a `Batch` `[B, ...]`, as a loss to minimise (Mnih et al. 2016, S3).

    Returns `(total_loss, metrics)`: total = actor + vf_coef * value - ent_coef * entropy.
    The batch's `log_prob` is not used: A2C is on-policy.
    """
    dist, value = actor_critic.policy(params, batch.obs, setup)
    adv = batch.advantage
    if setup.config.normalize_advantages:
        adv = actor_critic.standardize(adv)
    # The advantage is a constant weight: the policy gradient is a weighted log-likelihood.
    actor_loss = -(dist.log_prob(batch.action) * jax.lax.stop_gradient(adv)).mean()
    value_loss = 0.5 * jnp.square(value - batch.target).mean()
    entropy = dist.entropy().mean()
    total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    return total, {"loss/total": total, "loss/actor": actor_loss, "loss/value": value_loss,
                   "loss/entropy": entropy}


def update(state: State, batch: Batch, hparams: HParams, setup: Setup):
    """One gradient step on the whole batch: `(state, metrics)` (`optim.gradient_step`)."""
    return optim.gradient_step(loss, state, batch, optimizer(hparams, setup.config),
                               hparams, setup)


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """Collect one rollout in every env copy, then take one gradient step on it.

    Returns `(state, metrics)`: learning metrics and `episode/*` statistics of the rollout.
    """
    state, traj, episodes = actor_critic.collect(state, key, setup)
    batch = actor_critic.make_batch(state.params, traj, hparams.gamma, hparams.gae_lambda,
                                    setup, reward_scale=hparams.reward_scale)
    state, metrics = update(state, batch, hparams, setup)
    return state, {**metrics, **rollout.episode_metrics(episodes)}


AGENT = Agent(name="a2c", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
