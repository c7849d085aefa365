"""REINFORCE: the vanilla policy gradient on complete episodes, discrete or Gaussian.

Williams 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
Reinforcement Learning"; Sutton & Barto 2018, sections 13.3-13.4. The gradient estimate is
`(1/E) sum_episodes sum_t (G_t - b_t) grad log pi(a_t | s_t)` over `E` complete episodes,
implemented as a weighted log-likelihood ("weighted classification"). `Config.weight`
chooses `G_t` (reward-to-go: an action does not change earlier rewards), `Config.baseline`
`b_t` (a running mean of past batches' weights is a constant, so the estimate stays
unbiased).

Each iteration restarts every env copy, acts `rollout_len` steps, and keeps only the
episodes that ended inside the window (a mask, not a Python loop, handles their different
lengths); the unfinished tail of each copy is discarded. Choose `rollout_len` at least the
env's episode limit so that every copy finishes at least one episode. A time-limited
episode counts with the return it collected: REINFORCE has no critic to bootstrap with.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import actor_critic, optim, returns, rollout
from jaxrl import config as cfg
from jaxrl.actor_critic import State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.agent import Agent, Setup
from jaxrl.config import hparam
from jaxrl.types import Params, PRNGKey, Transition

WEIGHTS = ("return", "reward_to_go", "discounted_reward_to_go")
BASELINES = ("none", "mean", "value")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.OnPolicyConfig):
    """Static REINFORCE configuration.

    The fields not listed are `jaxrl.actor_critic.OnPolicyConfig`'s. Here `rollout_len`
    is the window in which episodes must end (episodes unfinished by then are dropped, so
    use at least the env's episode limit), every simulated step counts towards
    `total_timesteps`, and `normalize_advantages` standardises `G_t - b_t` over the
    batch's valid steps. The critic is only a baseline: actor and critic never share a
    torso.

    Attributes:
      weight: what multiplies each log-probability: `return` (whole episode),
        `reward_to_go` or `discounted_reward_to_go` (with `gamma`).
      baseline: `none`, `mean` (running mean of past weights) or `value` (learned V(s)).
      optimizer: `adam` or `rmsprop`.
    """

    num_envs: int = 4
    rollout_len: int = 500
    total_timesteps: int = 1_000_000
    weight: str = "reward_to_go"
    baseline: str = "value"
    optimizer: str = "adam"

    def __post_init__(self):
        super().__post_init__()
        cfg.check_choice("weight", self.weight, WEIGHTS)
        cfg.check_choice("baseline", self.baseline, BASELINES)
        cfg.check_choice("optimizer", self.optimizer, optim.OPTIMIZERS)


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalar hyperparameters; a leading axis on every leaf sweeps them with `vmap`.

    Attributes:
      learning_rate: optimizer step size.
      gamma: discount of `discounted_reward_to_go` (unused by the other weights).
      baseline_decay: the `mean` baseline's moving-average decay per iteration.
      vf_coef: weight of the value regression (`value` baseline only).
      ent_coef: weight of an entropy bonus (0: plain REINFORCE).
      max_grad_norm: threshold of global gradient-norm clipping.
    """

    learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    baseline_decay: jax.Array = hparam(0.9, low=0.0, high=1.0, high_open=True)
    vf_coef: jax.Array = hparam(0.5, low=0.0)
    ent_coef: jax.Array = hparam(0.0, low=0.0)
    max_grad_norm: jax.Array = hparam(1.0, low=0.0, low_open=True)


@struct.dataclass
class PGState(State):
    """`State` plus the running-mean baseline (float32 scalar; 0 until the first batch)."""

    baseline: jax.Array


@struct.dataclass
class Batch:
    """Flattened valid and invalid steps of one iteration; leaves `[B]` unless noted.

    Attributes:
      obs: [B, *obs_shape] observations acted on.
      action: [B, *action_shape] actions taken.
      weight: `G_t`, the chosen return weight.
      baseline: the constant baseline `b` (running mean), 0 for `none` and `value`.
      mask: 1.0 on steps of episodes that ended inside the window.
      num_episodes: scalar, episodes that ended inside the window (the `1/E` of the mean).
    """

    obs: jax.Array
    action: jax.Array
    weight: jax.Array
    baseline: jax.Array
    mask: jax.Array
    num_episodes: jax.Array


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam or RMSprop with a traced learning rate."""
    return optim.make_optimizer(config.optimizer, hparams.learning_rate,
                                hparams.max_grad_norm, None,
                                skip_nonfinite=config.skip_nonfinite)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> PGState:
    """Fresh parameters, optimizer state, reset environments and a zero baseline."""
    state = actor_critic.init(key, setup, optimizer(hparams, setup.config))
    return actor_critic.extend_state(state, PGState, baseline=jnp.float32(0.0))


def episode_weights(traj: Transition, gamma: jax.Array, setup: Setup):
    """The weight `G_t` of every step and the mask of steps in finished episodes.

    Args:
      traj: `[T, N]` transitions of a rollout that started each copy at an episode start.
      gamma: discount of the `discounted_reward_to_go` weight.

    Returns:
      `(weight[T, N], mask[T, N])`; the mask is 1.0 up to each copy's last episode end.
    """
    cut = jnp.logical_or(traj.terminated, traj.truncated)
    # Valid iff some episode end lies at or after t in the same column.
    mask = (jnp.cumsum(cut[::-1], axis=0)[::-1] > 0).astype(jnp.float32)
    zeros = jnp.zeros_like(traj.reward)
    weight_kind = setup.config.weight
    if weight_kind == "return":
        weight = returns.batched_episode_returns(traj.reward, cut)
    else:
        discount = gamma if weight_kind == "discounted_reward_to_go" else 1.0
        weight = returns.batched_discounted_returns(
            traj.reward, jnp.full_like(traj.reward, discount), cut, zeros)
    return weight, mask


def make_batch(state: PGState, traj: Transition, hparams: HParams, setup: Setup) -> Batch:
    """A flat `Batch` from a `[T, N]` rollout (see `episode_weights`)."""
    weight, mask = episode_weights(traj, hparams.gamma, setup)
    cut = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
    baseline = state.baseline if setup.config.baseline == "mean" else jnp.float32(0.0)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731 - [T, N, ...] -> [T*N, ...]
    return Batch(obs=flat(traj.obs), action=flat(traj.action), weight=flat(weight),
                 baseline=jnp.full_like(flat(weight), baseline), mask=flat(mask),
                 num_episodes=(cut * mask).sum())


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """REINFORCE surrogate on a batch, as a loss to minimise.

    `-(1/E) sum_t mask_t (G_t - b_t) log pi(a_t|s_t)`, whose gradient is the policy
    gradient estimate; plus, for the `value` baseline, `vf_coef * 0.5 mean (V(s_t) - G_t)^2`
    over valid steps; minus `ent_coef` times the mean entropy. Returns `(total_loss, metrics)`.
    """
    config = setup.config
    dist, value = actor_critic.policy(params, batch.obs, setup)
    baseline = batch.baseline
    if config.baseline == "value":
        baseline = jax.lax.stop_gradient(value)
    adv = batch.weight - baseline
    if config.normalize_advantages:
        mean = _masked_mean(adv, batch.mask)
        std = jnp.sqrt(_masked_mean(jnp.square(adv - mean), batch.mask))
        adv = (adv - mean) / (std + 1e-8)
    log_prob = dist.log_prob(batch.action)
    actor_loss = -(batch.mask * adv * log_prob).sum() / jnp.maximum(batch.num_episodes, 1.0)
    value_loss = jnp.float32(0.0)
    if config.baseline == "value":
        value_loss = 0.5 * _masked_mean(jnp.square(value - batch.weight), batch.mask)
    entropy = _masked_mean(dist.entropy(), batch.mask)
    total = actor_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    return total, {"loss/total": total, "loss/actor": actor_loss, "loss/value": value_loss,
                   "loss/entropy": entropy, "pg/num_episodes": batch.num_episodes,
                   "pg/mean_weight": _masked_mean(batch.weight, batch.mask)}


def update(state: PGState, batch: Batch, hparams: HParams, setup: Setup):
    """One gradient step on the batch, then the running-mean baseline moves towards it.

    Returns `(state, metrics)`: `optim.gradient_step`'s metrics and `pg/baseline`.
    """
    state, metrics = optim.gradient_step(loss, state, batch,
                                         optimizer(hparams, setup.config), hparams, setup)
    batch_mean = _masked_mean(batch.weight, batch.mask)
    # The first batch sets the mean; later ones move it. Either way the baseline used on a
    # batch never depends on that batch, which keeps the estimate unbiased.
    decayed = hparams.baseline_decay * state.baseline + (1 - hparams.baseline_decay) * batch_mean
    baseline = jnp.where(state.step == 1, batch_mean, decayed)
    baseline = jnp.where(batch.num_episodes > 0, baseline, state.baseline)
    return state.replace(baseline=baseline), {**metrics, "pg/baseline": baseline}


def iteration(state: PGState, key: PRNGKey, hparams: HParams, setup: Setup):
    """Restart the envs, collect one window of episodes, take one gradient step.

    Returns `(state, metrics)`: learning metrics and `episode/*` statistics of the rollout.
    """
    reset_key, rollout_key = jax.random.split(key)
    state = actor_critic.restart_episodes(state, reset_key, setup)
    state, traj, episodes = actor_critic.collect(state, rollout_key, setup)
    state, metrics = update(state, make_batch(state, traj, hparams, setup), hparams, setup)
    return state, {**metrics, **rollout.episode_metrics(episodes)}


AGENT = Agent(name="reinforce", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
