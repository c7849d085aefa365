"""On-policy actor-critic plumbing shared by PPO, A2C and their relatives.

Everything here is independent of how an agent turns a batch into a parameter update: the
fields every on-policy config shares (`OnPolicyConfig`), the `Setup` (wrapped environment
and actor-critic network) built once from a config, the training state, acting (sampled
and greedy), collecting a rollout, turning a `[T, N]` trajectory into a flat `Batch` of
log-probabilities, values and truncation-aware GAE advantages, and the one epoch and
minibatch loop. An agent module supplies its own `Config`, its loss and its update.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import config as cfg
from jaxrl import agent, envs, losses, networks, returns, rollout
from jaxrl.agent import BaseConfig, Setup, make_env
from jaxrl.config import ConfigError
from jaxrl.types import Metrics, Params, PRNGKey, Transition

@dataclasses.dataclass(frozen=True, kw_only=True)
class OnPolicyConfig(BaseConfig):
    """Fields every on-policy actor-critic config shares (each agent's `Config` subclasses
    it); the others are `jaxrl.agent.BaseConfig`'s.

    Attributes:
      normalize_advantages: standardise advantages (per minibatch, or over the batch).
    """

    activation: str = "tanh"
    normalize_advantages: bool = False

    # One torso for actor and critic; a field only in the agents that offer the choice.
    shared_trunk = False

    def __post_init__(self):
        super().__post_init__()
        cfg.check_bool(self, ("normalize_advantages", "shared_trunk")
                       + tuple(n for n in ("anneal_lr", "clip_value_loss") if hasattr(self, n)))
        if self.normalize_advantages and self.steps_per_iteration < 2:
            raise ConfigError("num_envs * rollout_len must be at least 2 with "
                              "normalize_advantages (one normalised advantage is 0)")

    def check_divides(self, name: str) -> None:
        """Raise `ConfigError` unless field `name` divides `num_envs * rollout_len`."""
        value = getattr(self, name)
        if self.steps_per_iteration % value:
            raise ConfigError(
                f"{name} ({value}) must divide num_envs * rollout_len ({self.num_envs} * "
                f"{self.rollout_len} = {self.steps_per_iteration})")


@struct.dataclass
class State:
    """Training state of an on-policy actor-critic agent, for one seed."""

    params: Params
    opt_state: optax.OptState
    env_state: Any  # gymnax state, leading axis N
    obs: jax.Array  # [N, *obs_shape], the observations to act on next
    step: jax.Array  # int32 scalar: gradient updates applied so far
    addons: dict  # each add-on's state by name (`jaxrl.agent.Addon`); {} without add-ons


@struct.dataclass
class Batch:
    """A flat batch of transitions with what actor-critic losses need; leaves `[B, ...]`."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array  # log pi_old(a|s) at collection time
    value: jax.Array  # V_old(s) at collection time
    advantage: jax.Array  # GAE advantage
    target: jax.Array  # advantage + value: the value regression target
    # pi_old's distribution parameters (logits, or (mean, log_std)), kept only for agents
    # that need the exact KL to the old policy (adaptive-KL PPO, TRPO); None otherwise.
    policy_params: Any = None


def setup(config: OnPolicyConfig) -> Setup:
    """Build the wrapped environment, its spec and the actor-critic network, once."""
    env, env_params, spec = make_env(config.env, normalize_obs=config.normalize_obs)
    network = networks.make_actor_critic(spec, config.hidden_sizes, config.activation,
                                         shared_trunk=config.shared_trunk,
                                         torso=config.torso)
    return Setup(config=config, env=env, env_params=env_params, spec=spec, network=network)


def init(key: PRNGKey, setup: Setup, tx: optax.GradientTransformation) -> State:
    """Fresh parameters, optimizer state (of `tx`) and `num_envs` reset environments."""
    params_key, env_key = jax.random.split(key)
    params = setup.network.init(params_key)
    addons = agent.init_addons(key, setup)
    env_state, obs = rollout.reset_envs(setup.env, agent.collect_params(addons, setup),
                                        env_key, setup.config.num_envs)
    return State(params=params, opt_state=tx.init(params), env_state=env_state, obs=obs,
                 step=jnp.int32(0), addons=addons)


def heads(params: Params, obs: jax.Array, setup: Setup):
    """`(policy_params, value)`: the network's raw outputs for `[..., *obs_shape]`."""
    return setup.network.apply(params, obs)


def policy(params: Params, obs: jax.Array, setup: Setup):
    """`(distribution, value)` for an observation or a batch `[..., *obs_shape]`."""
    policy_params, value = heads(params, obs, setup)
    return networks.distribution(policy_params, setup.spec.discrete), value


def act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """Sample an action for one observation `[*obs_shape]` from the current policy."""
    return policy(params, obs, setup)[0].sample(seed=key)


def greedy_act(params: Params, obs: jax.Array, key: PRNGKey, setup: Setup) -> jax.Array:
    """The policy's mode for one observation (used for evaluation); `key` is unused."""
    del key
    return policy(params, obs, setup)[0].mode()


def collect(state: State, key: PRNGKey, setup: Setup):
    """Act `rollout_len` steps in every env copy with the current policy.

    Returns:
      `(state, traj, episodes)`: the state with advanced envs, the `[T, N]` `Transition`
      (after the add-ons' `transform`) and the per-step episode statistics (see
      `rollout.make_rollout`).
    """
    run = rollout.make_rollout(setup.env, agent.collect_params(state.addons, setup),
                               functools.partial(act, setup=setup), setup.config.rollout_len)
    env_state, obs, traj, episodes = run(state.params, state.env_state, state.obs, key)
    traj, addons = agent.transform(state.addons, traj, key, setup)
    return state.replace(env_state=env_state, obs=obs, addons=addons), traj, episodes


def restart_episodes(state: State, key: PRNGKey, setup: Setup) -> State:
    """Reset every env copy, keeping each copy's observation-normaliser statistics.

    For agents that learn from complete episodes only: the next rollout starts each copy
    at the beginning of an episode. The fresh observations are re-normalised with the kept
    statistics, so the policy sees them on its usual scale.
    """
    env_state, obs = rollout.reset_envs(setup.env, agent.collect_params(state.addons, setup),
                                        key, setup.config.num_envs)
    env_state = envs.wrappers.transplant_statistics(env_state, state.env_state, pooled=False)
    obs = jax.vmap(lambda st, o: rollout.renormalized_observation(setup.env, st, o))(
        env_state, obs)
    return state.replace(env_state=env_state, obs=obs)


def make_batch(params: Params, traj: Transition, gamma: jax.Array, gae_lambda: jax.Array,
               setup: Setup, *, keep_policy: bool = False,
               reward_scale: jax.Array | float = 1.0) -> Batch:
    """Values, log-probabilities and GAE for a `[T, N]` trajectory, flattened to `[T*N]`.

    Values and log-probabilities are computed in one batched pass after the rollout (the
    parameters have not changed since acting), which is cheaper than per step. On a
    truncated step `next_obs` is the pre-reset observation, so its value bootstraps the
    cut-off episode; on a terminated step the discount is zero. With `gae_lambda = 1` the
    advantages are n-step returns (to the end of the rollout) minus the value. With
    `keep_policy`, the batch also carries the old policy's distribution parameters.
    Rewards are multiplied by `reward_scale` first (values and targets are then on that
    scale; episode statistics, logged by the env wrapper, are not affected).
    """
    policy_params, v_tm1 = heads(params, traj.obs, setup)
    _, v_t = heads(params, traj.next_obs, setup)
    dist = networks.distribution(policy_params, setup.spec.discrete)
    log_prob = dist.log_prob(traj.action)
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    cut_t = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
    adv = returns.batched_gae(traj.reward * reward_scale, discount_t, v_tm1, v_t, cut_t,
                              gae_lambda)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731 - [T, N, ...] -> [T*N, ...]
    return Batch(obs=flat(traj.obs), action=flat(traj.action), log_prob=flat(log_prob),
                 value=flat(v_tm1), advantage=flat(adv), target=flat(adv + v_tm1),
                 policy_params=jax.tree.map(flat, policy_params) if keep_policy else None)


def mean_kl(old_policy_params: Any, new_policy_params: Any, setup: Setup) -> jax.Array:
    """Exact `KL(pi_old || pi_new)` averaged over a batch of states (scalar).

    Args:
      old_policy_params, new_policy_params: `PolicyHead` outputs with leading axis `[B]`
        (logits `[B, A]`, or `(mean, log_std)` each `[B, A]`).
    """
    if setup.spec.discrete:
        kl = jax.vmap(losses.kl_categorical)(old_policy_params, new_policy_params)
    else:
        kl = jax.vmap(losses.kl_diag_gaussian)(*old_policy_params, *new_policy_params)
    return kl.mean()


def extend_state(state: State, cls: type, **fields: Any) -> Any:
    """`state`'s fields plus `fields`, as an instance of `cls` (a `State` subclass)."""
    return cls(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)}, **fields)


ACTOR_MODULES = ("actor_torso", "PolicyHead_0")


def split_params(params: Params) -> tuple[Params, Params]:
    """`(actor, critic)` parameter trees of a separate-torso actor-critic network."""
    actor = {name: sub for name, sub in params["params"].items() if name in ACTOR_MODULES}
    critic = {name: sub for name, sub in params["params"].items() if name not in ACTOR_MODULES}
    return {"params": actor}, {"params": critic}


def merge_params(actor: Params, critic: Params) -> Params:
    """The inverse of `split_params`."""
    return {"params": {**actor["params"], **critic["params"]}}


def standardize(adv: jax.Array) -> jax.Array:
    """Advantages `[B]` shifted and scaled to mean 0, standard deviation 1 (eps 1e-8)."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def minibatch_epochs(state: Any, batch: Any, key: PRNGKey,
                     update: Callable[[Any, Any], tuple[Any, Metrics]], num_epochs: int,
                     num_minibatches: int) -> tuple[Any, Metrics]:
    """`num_epochs` passes of `update(state, minibatch)` over shuffled minibatches.

    Args:
      batch: a pytree with leaves `[B, ...]`; `num_minibatches` must divide B.

    Returns:
      `(state, metrics)`, metrics averaged over all `num_epochs * num_minibatches` updates.
    """
    size = jax.tree.leaves(batch)[0].shape[0]

    def epoch(state, epoch_key):
        perm = jax.random.permutation(epoch_key, size)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape((num_minibatches, -1) + x.shape[1:]), batch)
        return jax.lax.scan(update, state, minibatches)

    state, metrics = jax.lax.scan(epoch, state, jax.random.split(key, num_epochs))
    return state, jax.tree.map(jnp.mean, metrics)
