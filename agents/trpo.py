"""Trust Region Policy Optimization (TRPO), discrete or Gaussian.

Schulman et al. 2015, "Trust Region Policy Optimization", the practical algorithm of
section 6 and appendix C: maximise the importance-sampled surrogate
`L(theta) = E[pi_theta(a|s) / pi_old(a|s) * A]` subject to `mean KL(pi_old || pi_theta) <=
delta`. The direction is the natural gradient `F^-1 g` from conjugate gradient on
Fisher-vector products (`jaxrl.trust_region`), scaled to the trust-region boundary, then a
backtracking line search keeps the first step that satisfies the exact KL constraint and
improves the surrogate. Advantages are truncation-aware GAE (Schulman et al. 2016); the
critic is fitted separately by Adam on minibatches after each policy step, as in the
reference implementations. Actor and critic have separate torsos: the natural-gradient
step must not move the critic.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import actor_critic, losses, optim, rollout, trust_region
from jaxrl import config as cfg
from jaxrl.actor_critic import Batch, State, act, greedy_act, setup  # noqa: F401 - API
from jaxrl.agent import Agent, Setup
from jaxrl.config import hparam
from jaxrl.types import Params, PRNGKey


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(actor_critic.OnPolicyConfig):
    """Static TRPO configuration.

    The fields not listed are `jaxrl.actor_critic.OnPolicyConfig`'s (advantages are
    standardised over the whole batch). The natural-gradient step is for the actor alone,
    so actor and critic never share a torso.

    Attributes:
      cg_iters: conjugate-gradient iterations for the natural-gradient direction.
      max_backtracks: step sizes tried by the line search (the full step, then shrunk).
      value_epochs: passes of critic regression over each batch.
      value_minibatches: minibatches per critic epoch; must divide `num_envs * rollout_len`.
    """

    num_envs: int = 8
    rollout_len: int = 256
    total_timesteps: int = 500_000
    cg_iters: int = 10
    max_backtracks: int = 10
    value_epochs: int = 5
    value_minibatches: int = 8
    normalize_advantages: bool = True

    def __post_init__(self):
        super().__post_init__()
        cfg.check_positive_int(self, ("cg_iters", "max_backtracks", "value_epochs",
                                      "value_minibatches"))
        self.check_divides("value_minibatches")


@struct.dataclass
class HParams(cfg.HParamsBase):
    """Traced scalar hyperparameters; a leading axis on every leaf sweeps them with `vmap`.

    Attributes:
      max_kl: trust-region size `delta` on the mean KL(pi_old || pi).
      damping: multiple of the identity added to the Fisher matrix in CG.
      backtrack_coef: the line search's shrink factor per try.
      gamma: discount factor.
      gae_lambda: GAE mixing parameter.
      value_learning_rate: Adam step size of the critic.
      max_grad_norm: global gradient-norm clipping of the critic's updates.
      reward_scale: multiplies rewards before advantages and value targets (logged
        episode returns stay unscaled).
    """

    max_kl: jax.Array = hparam(0.01, low=0.0, low_open=True)
    damping: jax.Array = hparam(0.1, low=0.0)
    backtrack_coef: jax.Array = hparam(0.8, low=0.0, high=1.0, low_open=True, high_open=True)
    gamma: jax.Array = hparam(0.99, low=0.0, high=1.0)
    gae_lambda: jax.Array = hparam(0.95, low=0.0, high=1.0)
    value_learning_rate: jax.Array = hparam(1e-3, low=0.0, low_open=True)
    max_grad_norm: jax.Array = hparam(0.5, low=0.0, low_open=True)
    reward_scale: jax.Array = hparam(1.0, low=0.0, low_open=True)


def _labels(params: Params) -> Params:
    return {"params": {name: jax.tree.map(
        lambda _, n=name: "actor" if n in actor_critic.ACTOR_MODULES else "critic", sub)
        for name, sub in params["params"].items()}}


def optimizer(hparams: HParams, config: Config) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping for the critic; the actor's optimizer
    updates are zero (it moves only by the trust-region step)."""
    critic = optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm),
                         optax.adam(hparams.value_learning_rate, eps=1e-5))
    return optim.skipping_nonfinite(
        optax.multi_transform({"actor": optax.set_to_zero(), "critic": critic}, _labels),
        config.skip_nonfinite)


def init(key: PRNGKey, setup: Setup, hparams: HParams) -> State:
    """Fresh parameters, optimizer state and `num_envs` reset environments."""
    return actor_critic.init(key, setup, optimizer(hparams, setup.config))


def surrogate(actor: Params, critic: Params, batch: Batch, setup: Setup) -> jax.Array:
    """`mean(pi(a|s) / pi_old(a|s) * A)` over the batch (to maximise); scalar."""
    params = actor_critic.merge_params(actor, critic)
    dist, _ = actor_critic.policy(params, batch.obs, setup)
    ratio = losses.importance_ratio(dist.log_prob(batch.action), batch.log_prob)
    return (ratio * batch.advantage).mean()


def kl_to_old(actor: Params, critic: Params, batch: Batch, setup: Setup) -> jax.Array:
    """Exact `mean KL(pi_old || pi)` over the batch's states; scalar."""
    policy_params, _ = actor_critic.heads(actor_critic.merge_params(actor, critic),
                                          batch.obs, setup)
    return actor_critic.mean_kl(batch.policy_params, policy_params, setup)


def policy_step(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """One trust-region step of the actor on a `[B]` batch (critic untouched).

    Returns:
      `(params, metrics)`: `trpo/*` from the line search, plus `trpo/expected_improvement`
      and `trpo/grad_norm` of the surrogate gradient.
    """
    config = setup.config
    actor, critic = actor_critic.split_params(params)
    surrogate_fn = lambda a: surrogate(a, critic, batch, setup)  # noqa: E731
    kl_fn = lambda a: kl_to_old(a, critic, batch, setup)  # noqa: E731
    grad = jax.grad(surrogate_fn)(actor)

    def fvp(v):
        return trust_region.fisher_vector_product(kl_fn, actor, v, hparams.damping)

    step, expected = trust_region.natural_step(grad, fvp, hparams.max_kl,
                                               cg_iters=config.cg_iters)
    actor, metrics = trust_region.line_search(actor, step, surrogate_fn, kl_fn, hparams.max_kl,
                                              hparams.backtrack_coef,
                                              max_backtracks=config.max_backtracks)
    return actor_critic.merge_params(actor, critic), {
        **metrics, "trpo/expected_improvement": expected,
        "trpo/grad_norm": optax.tree.norm(grad)}


def loss(params: Params, batch: Batch, hparams: HParams, setup: Setup):
    """The critic's loss: `0.5 mean (V(s) - target)^2`; returns `(loss, metrics)`."""
    del hparams
    _, value = actor_critic.policy(params, batch.obs, setup)
    value_loss = 0.5 * jnp.square(value - batch.target).mean()
    return value_loss, {"loss/value": value_loss}


def update(state: State, batch: Batch, hparams: HParams, setup: Setup):
    """One Adam step of the critic on a minibatch: `(state, metrics)` (`optim.gradient_step`)."""
    return optim.gradient_step(loss, state, batch, optimizer(hparams, setup.config),
                               hparams, setup)


def fit_critic(state: State, batch: Batch, key: PRNGKey, hparams: HParams, setup: Setup):
    """`value_epochs` epochs of `update` over `value_minibatches` shuffled minibatches
    (`actor_critic.minibatch_epochs`): `(state, metrics)`, metrics averaged."""
    config = setup.config
    return actor_critic.minibatch_epochs(
        state, batch, key, lambda st, mb: update(st, mb, hparams, setup),
        config.value_epochs, config.value_minibatches)


def iteration(state: State, key: PRNGKey, hparams: HParams, setup: Setup):
    """Collect a rollout, take one trust-region policy step, then fit the critic.

    Returns:
      `(state, metrics)`: learning metrics, the policy's entropy and `episode/*`
      statistics of the rollout.
    """
    rollout_key, critic_key = jax.random.split(key)
    state, traj, episodes = actor_critic.collect(state, rollout_key, setup)
    batch = actor_critic.make_batch(state.params, traj, hparams.gamma, hparams.gae_lambda,
                                    setup, keep_policy=True,
                                    reward_scale=hparams.reward_scale)
    policy_batch = batch
    if setup.config.normalize_advantages:
        policy_batch = batch.replace(advantage=actor_critic.standardize(batch.advantage))
    params, policy_metrics = policy_step(state.params, policy_batch, hparams, setup)
    state, metrics = fit_critic(state.replace(params=params), batch, critic_key, hparams,
                                setup)
    dist, _ = actor_critic.policy(state.params, batch.obs, setup)
    return state, {**metrics, **policy_metrics, "loss/entropy": dist.entropy().mean(),
                   **rollout.episode_metrics(episodes)}


AGENT = Agent(name="trpo", Config=Config, HParams=HParams, setup=setup, init=init,
              iteration=iteration, greedy_act=greedy_act, loss=loss, update=update)
