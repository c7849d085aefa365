"""On-policy actor-critic plumbing shared by PPO, A2C and their relatives.

Everything here is independent of how an agent turns a batch into a parameter update: the
wrapped environment and the actor-critic network built from a config, the training state,
acting (sampled and greedy), collecting a rollout, and turning a `[T, N]` trajectory into a
flat `Batch` of log-probabilities, values and truncation-aware GAE advantages. An agent
module supplies its own `Config` (with the fields `env`, `num_envs`, `rollout_len`,
`hidden_sizes`, `activation`, `shared_trunk`, `normalize_obs`), its loss and its update.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import config as cfg
from jaxrl import envs, losses, networks, returns, rollout
from jaxrl.config import ConfigError
from jaxrl.types import Params, PRNGKey, Transition

OPTIMIZERS = ("adam", "rmsprop")
_SWITCHES = ("shared_trunk", "normalize_obs", "anneal_lr", "normalize_advantages",
             "clip_value_loss")


class RolloutSizes:
    """Mixin for on-policy configs: sizes derived from `num_envs`, `rollout_len`, steps."""

    @property
    def batch_size(self) -> int:
        """Transitions per iteration: `num_envs * rollout_len`."""
        return self.num_envs * self.rollout_len

    @property
    def num_iterations(self) -> int:
        """Rollout-and-update iterations in the run."""
        return self.total_timesteps // self.batch_size


def check_config(config: Any, counts: tuple[str, ...] = ()) -> None:
    """Validate the fields every on-policy actor-critic config shares, plus `counts`.

    Raises:
      ConfigError: naming the first bad field and what is allowed.
    """
    if not isinstance(config.env, str):
        raise ConfigError(f"env must be a string environment id, got {config.env!r}")
    envs.check_env_id(config.env)
    cfg.check_positive_int(config, ("num_envs", "rollout_len", "total_timesteps") + counts)
    cfg.check_sizes("hidden_sizes", config.hidden_sizes)
    cfg.check_choice("activation", config.activation, networks.ACTIVATIONS)
    cfg.check_bool(config, tuple(n for n in _SWITCHES if hasattr(config, n)))
    skip = getattr(config, "skip_nonfinite", 0)
    if type(skip) is not int or skip < 0:
        raise ConfigError(f"skip_nonfinite must be a non-negative int (0: off), got {skip!r}")
    if config.total_timesteps < config.batch_size:
        raise ConfigError(
            f"total_timesteps ({config.total_timesteps}) must be at least num_envs * "
            f"rollout_len ({config.batch_size})")


def make_optimizer(name: str, learning_rate: jax.Array, max_grad_norm: jax.Array,
                   anneal_steps: int | None, *,
                   skip_nonfinite: int = 0) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam or RMSprop (eps 1e-5, RMSprop decay 0.99).

    Args:
      name: `adam` or `rmsprop`.
      learning_rate: traced scalar, so a sweep over it compiles once.
      max_grad_norm: traced clipping threshold.
      anneal_steps: if given, the rate decays linearly to 0 over this many updates.
      skip_nonfinite: if positive, see `skipping_nonfinite`.
    """
    return skipping_nonfinite(_make_optimizer(name, learning_rate, max_grad_norm, anneal_steps),
                              skip_nonfinite)


def skipping_nonfinite(tx: optax.GradientTransformation,
                       max_in_a_row: int) -> optax.GradientTransformation:
    """`tx` that skips updates with a NaN or infinite gradient (opt-in; 0 returns `tx`).

    optax's `apply_if_finite`: a skipped update leaves parameters and optimizer state as
    they were and is counted (`opt/nonfinite_skipped` in the metrics). After `max_in_a_row`
    consecutive skips the next non-finite update goes through, so the runner's non-finite
    guard stops the run with the seed and iteration: skipping never hides a divergence.
    """
    if max_in_a_row <= 0:
        return tx
    return optax.apply_if_finite(tx, max_consecutive_errors=max_in_a_row)


def skipped_updates(opt_state: optax.OptState) -> jax.Array:
    """Updates skipped so far by `skipping_nonfinite` (int32 scalar; 0 when not used)."""
    return jnp.asarray(optax.tree.get(opt_state, "total_notfinite", default=0), jnp.int32)


def _make_optimizer(name: str, learning_rate: jax.Array, max_grad_norm: jax.Array,
                    anneal_steps: int | None) -> optax.GradientTransformation:
    lr = learning_rate
    if anneal_steps is not None:
        lr = optax.linear_schedule(learning_rate, 0.0, anneal_steps)
    if name == "rmsprop":
        opt = optax.rmsprop(learning_rate=lr, decay=0.99, eps=1e-5)
    else:
        opt = optax.adam(learning_rate=lr, eps=1e-5)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), opt)


@struct.dataclass
class State:
    """Training state of an on-policy actor-critic agent, for one seed."""

    params: Params
    opt_state: optax.OptState
    env_state: Any  # gymnax state, leading axis N
    obs: jax.Array  # [N, *obs_shape], the observations to act on next
    step: jax.Array  # int32 scalar: gradient updates applied so far


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


class Setup(struct.PyTreeNode):
    """Static objects derived from a config (built once per config, closed over)."""

    env: Any = struct.field(pytree_node=False)
    env_params: Any = struct.field(pytree_node=False)
    spec: Any = struct.field(pytree_node=False)
    network: networks.Network = struct.field(pytree_node=False)


@functools.lru_cache(maxsize=None)
def setup(config: Any) -> Setup:
    """Build the wrapped environment, its spec and the network for `config` (cached).

    The first call may happen inside a trace; compile-time evaluation keeps any arrays the
    env constructors make concrete, so the cache never holds a tracer.
    """
    with jax.ensure_compile_time_eval():
        env, env_params = envs.make(config.env)
        spec = envs.env_spec(env, env_params)
        # Innermost: it sees the raw observations and rewards, and the action the env got.
        env = envs.wrappers.GuardFinite(env, env_params)
        if not spec.discrete:
            env = envs.ClipAction(env, env_params)
        if config.normalize_obs:
            env = envs.NormalizeObservation(env)
        env = envs.EpisodeStatistics(env)
        network = networks.make_actor_critic(spec, config.hidden_sizes, config.activation,
                                             shared_trunk=config.shared_trunk)
    return Setup(env=env, env_params=env_params, spec=spec, network=network)


def init(key: PRNGKey, config: Any, tx: optax.GradientTransformation) -> State:
    """Fresh parameters, optimizer state (of `tx`) and `num_envs` reset environments."""
    s = setup(config)
    params_key, env_key = jax.random.split(key)
    params = s.network.init(params_key)
    env_state, obs = rollout.reset_envs(s.env, s.env_params, env_key, config.num_envs)
    return State(params=params, opt_state=tx.init(params), env_state=env_state, obs=obs,
                 step=jnp.int32(0))


def heads(params: Params, obs: jax.Array, config: Any):
    """`(policy_params, value)`: the network's raw outputs for `[..., *obs_shape]`."""
    return setup(config).network.apply(params, obs)


def policy(params: Params, obs: jax.Array, config: Any):
    """`(distribution, value)` for an observation or a batch `[..., *obs_shape]`."""
    policy_params, value = heads(params, obs, config)
    return networks.distribution(policy_params, setup(config).spec.discrete), value


def act(params: Params, obs: jax.Array, key: PRNGKey, config: Any) -> jax.Array:
    """Sample an action for one observation `[*obs_shape]` from the current policy."""
    return policy(params, obs, config)[0].sample(seed=key)


def greedy_act(params: Params, obs: jax.Array, key: PRNGKey, config: Any) -> jax.Array:
    """The policy's mode for one observation (used for evaluation); `key` is unused."""
    del key
    return policy(params, obs, config)[0].mode()


def collect(state: State, key: PRNGKey, config: Any):
    """Act `rollout_len` steps in every env copy with the current policy.

    Returns:
      `(state, traj, episodes)`: the state with advanced envs, the `[T, N]` `Transition`
      and the per-step episode statistics (see `rollout.make_rollout`).
    """
    s = setup(config)
    run = rollout.make_rollout(s.env, s.env_params, functools.partial(act, config=config),
                               config.rollout_len)
    env_state, obs, traj, episodes = run(state.params, state.env_state, state.obs, key)
    return state.replace(env_state=env_state, obs=obs), traj, episodes


def restart_episodes(state: State, key: PRNGKey, config: Any) -> State:
    """Reset every env copy, keeping each copy's observation-normaliser statistics.

    For agents that learn from complete episodes only: the next rollout starts each copy
    at the beginning of an episode. The fresh observations are re-normalised with the kept
    statistics, so the policy sees them on its usual scale.
    """
    s = setup(config)
    env_state, obs = rollout.reset_envs(s.env, s.env_params, key, config.num_envs)
    env_state = envs.wrappers.transplant_statistics(env_state, state.env_state, pooled=False)
    obs = jax.vmap(lambda st, o: rollout.renormalized_observation(s.env, st, o))(env_state, obs)
    return state.replace(env_state=env_state, obs=obs)


def make_batch(params: Params, traj: Transition, gamma: jax.Array, gae_lambda: jax.Array,
               config: Any, *, keep_policy: bool = False,
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
    policy_params, v_tm1 = heads(params, traj.obs, config)
    _, v_t = heads(params, traj.next_obs, config)
    dist = networks.distribution(policy_params, setup(config).spec.discrete)
    log_prob = dist.log_prob(traj.action)
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    cut_t = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)
    adv = returns.batched_gae(traj.reward * reward_scale, discount_t, v_tm1, v_t, cut_t,
                              gae_lambda)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731 - [T, N, ...] -> [T*N, ...]
    return Batch(obs=flat(traj.obs), action=flat(traj.action), log_prob=flat(log_prob),
                 value=flat(v_tm1), advantage=flat(adv), target=flat(adv + v_tm1),
                 policy_params=jax.tree.map(flat, policy_params) if keep_policy else None)


def mean_kl(old_policy_params: Any, new_policy_params: Any, config: Any) -> jax.Array:
    """Exact `KL(pi_old || pi_new)` averaged over a batch of states (scalar).

    Args:
      old_policy_params, new_policy_params: `PolicyHead` outputs with leading axis `[B]`
        (logits `[B, A]`, or `(mean, log_std)` each `[B, A]`).
    """
    if setup(config).spec.discrete:
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


def gradient_step(loss_fn, state: State, batch: Batch, hparams: Any, config: Any,
                  tx: optax.GradientTransformation):
    """One step of `tx` on `loss_fn(params, batch, hparams, config) -> (loss, metrics)`.

    Returns:
      `(state, metrics)`: the loss metrics plus `opt/grad_norm` (before clipping).
    """
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch, hparams, config)
    state = apply_gradients(state, grads, tx)
    return state, {**metrics, "opt/grad_norm": optax.tree.norm(grads),
                   "opt/nonfinite_skipped": skipped_updates(state.opt_state)}


def apply_gradients(state: State, grads: Params, tx: optax.GradientTransformation) -> State:
    """One optimizer step of `tx` on `state.params`; counts it in `state.step`."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state, step=state.step + 1)
