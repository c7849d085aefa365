"""Off-policy plumbing shared by replay-based agents (the DQN family, DDPG, TD3, SAC,
continuous Q-learning).

Everything here is independent of how an agent turns replayed data into an update: the
shared `Config` fields, the replay buffer, the training `State`, one collecting step of
all env copies, learning phases that wait for a warm-up (`iteration`), target-network
updates, linear schedules and n-step reduction. An agent module supplies its own `Config`
subclass, its `Setup`, its acting and its update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import agent, buffers, returns, rollout
from jaxrl import config as cfg
from jaxrl.agent import BaseConfig, Setup
from jaxrl.config import ConfigError
from jaxrl.types import Metrics, Params, PRNGKey, Transition

_COUNTS = ("buffer_size", "minibatch_size", "train_frequency", "gradient_steps",
           "target_update_period", "n_step")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(BaseConfig):
    """Fields every replay-based agent shares; each agent's `Config` subclasses it. The
    fields not listed are `jaxrl.agent.BaseConfig`'s.

    Attributes:
      buffer_size: replay capacity in transitions; a multiple of num_envs.
      minibatch_size: transitions (n-step windows) sampled per gradient step.
      learning_starts: env steps taken before the first gradient step (warm-up).
      train_frequency: env steps per env copy between learning phases; divides
        rollout_len.
      gradient_steps: gradient steps per learning phase.
      target_update_period: gradient steps between target-network updates (with tau 1 a
        hard copy every C updates, with period 1 and a small tau Polyak averaging).
      n_step: transitions summed before bootstrapping (1: one-step targets).
    """

    rollout_len: int = 1000
    activation: str = "relu"
    buffer_size: int = 100_000
    minibatch_size: int = 256
    learning_starts: int = 1000
    train_frequency: int = 1
    gradient_steps: int = 1
    target_update_period: int = 1
    n_step: int = 1

    def __post_init__(self):
        super().__post_init__()
        cfg.check_positive_int(self, _COUNTS)
        cfg.check_int("learning_starts", self.learning_starts, zero=True)
        if self.rollout_len % self.train_frequency:
            raise ConfigError(f"train_frequency ({self.train_frequency}) must divide "
                              f"rollout_len ({self.rollout_len})")
        if self.buffer_size % self.num_envs:
            raise ConfigError(f"buffer_size ({self.buffer_size}) must be a multiple of "
                              f"num_envs ({self.num_envs})")
        rows = self.buffer_size // self.num_envs
        if rows < self.n_step:
            raise ConfigError(f"buffer_size ({self.buffer_size}) must hold at least "
                              f"{self.n_step} steps per env (num_envs * n_step)")
        windows = (rows - self.n_step + 1) * self.num_envs
        if self.minibatch_size > windows:
            raise ConfigError(f"minibatch_size ({self.minibatch_size}) must be at most the "
                              f"{windows} windows a full buffer of buffer_size "
                              f"{self.buffer_size} holds")

    @property
    def num_updates(self) -> int:
        """Gradient steps in the run: `gradient_steps` per learning phase after the warm-up."""
        phase_steps = self.num_envs * self.train_frequency
        phases = self.num_iterations * (self.rollout_len // self.train_frequency)
        warm_up = -(-self.learning_starts // phase_steps)  # phases before learning starts
        return max(1, (phases - warm_up + 1) * self.gradient_steps)


def check_discrete(spec: Any, env_id: str, agent: str) -> None:
    """Raise `ConfigError` unless `spec` has discrete actions, suggesting continuous agents."""
    if not spec.discrete:
        raise ConfigError(
            f"env {env_id!r} has a continuous (Box) action space, but {agent} needs discrete "
            "actions (it takes a max over them); use an agent for continuous actions "
            "(ddpg, td3 or sac) or an env with discrete actions")


def make_buffer(config: Config, *, prioritized: bool = False,
                alpha: float = 0.6) -> buffers.Buffer:
    """The replay buffer of `config`: `buffer_size` transitions, `minibatch_size` windows
    of `n_step` steps per sample, uniform or prioritized (exponent `alpha`)."""
    sizes = dict(capacity=config.buffer_size, num_envs=config.num_envs,
                 batch_size=config.minibatch_size, sequence_length=config.n_step)
    if prioritized:
        return buffers.make_prioritized(alpha=alpha, **sizes)
    return buffers.make_uniform(**sizes)


@struct.dataclass
class State:
    """Training state of an off-policy agent, for one seed."""

    params: Params
    target_params: Params
    opt_state: optax.OptState
    buffer: buffers.BufferState
    env_state: Any  # gymnax state, leading axis N
    obs: jax.Array  # [N, *obs_shape], the observations to act on next
    noise: Any  # per-env exploration noise, leaves [N, ...] (noisy-net draws); {} if none
    env_steps: jax.Array  # int32 scalar: env steps taken, all N copies counted
    step: jax.Array  # int32 scalar: gradient updates applied so far
    addons: dict  # each add-on's state by name (`jaxrl.agent.Addon`); {} without add-ons


def example_transition(spec: Any, obs: jax.Array) -> Transition:
    """One `Transition` without batch axes (a buffer's `init` example) for `obs [*obs_shape]`."""
    action_dtype = jnp.int32 if spec.discrete else jnp.float32
    return Transition(obs=obs, action=jnp.zeros(spec.action_shape, action_dtype),
                      reward=jnp.float32(0.0), terminated=jnp.bool_(False),
                      truncated=jnp.bool_(False), next_obs=obs)


def init(key: PRNGKey, setup: Setup, params: Params, tx: optax.GradientTransformation,
         noise: Any) -> State:
    """`num_envs` reset envs, an empty buffer, the target a copy of `params`, counters at 0.

    Args:
      noise: the agent's per-env exploration noise, leaves `[N, ...]` (`{}` if none).
    """
    addons = agent.init_addons(key, setup)
    env_state, obs = rollout.reset_envs(setup.env, agent.collect_params(addons, setup), key,
                                        setup.config.num_envs)
    buffer_state = setup.buffer.init(example_transition(setup.spec, obs[0]))
    return State(params=params, target_params=jax.tree.map(jnp.copy, params),
                 opt_state=tx.init(params), buffer=buffer_state, env_state=env_state, obs=obs,
                 noise=noise, env_steps=jnp.int32(0), step=jnp.int32(0), addons=addons)


ActFn = Callable[[Params, Any, jax.Array, PRNGKey], jax.Array]
RenewFn = Callable[[Any, jax.Array, PRNGKey], Any]


def collect_step(state: State, key: PRNGKey, setup: Setup, act: ActFn, renew_noise: RenewFn):
    """Step every env copy once, acting with its own noise, and add the step to the buffer.

    Args:
      act: `act(params, noise, obs, key) -> action` for one env copy (`noise` its own).
      renew_noise: `renew_noise(noise, done, key) -> noise` for one env copy, called after
        its step (`done`: the step ended an episode), e.g. a fresh draw at episode ends.

    Returns:
      `(state, episodes)`: the buffer holds the `N` new transitions (after the add-ons'
      `transform`; `next_obs` the pre-reset observation), `env_steps` grew by `N`;
      `episodes` are `[N]` statistics.
    """
    num_envs = state.obs.shape[0]
    act_key, noise_key = jax.random.split(key)
    # `make_rollout` vmaps `act` with shared parameters; each env copy has its own noise,
    # so we run a one-step rollout of one env copy per env, vmapped over the copies.
    one_step = rollout.make_rollout(setup.env, agent.collect_params(state.addons, setup),
                                    lambda p, o, k: act(p[0], p[1], o, k), 1)

    def one_env(noise, env_state, obs, env_key):
        env_state, obs, traj, episodes = one_step(
            (state.params, noise), jax.tree.map(lambda x: x[None], env_state), obs[None],
            env_key)
        unbatch = lambda x: x[0]  # noqa: E731 - drop the env axis of one copy
        first = lambda x: x[0, 0]  # noqa: E731 - drop the time and env axes
        return (jax.tree.map(unbatch, env_state), obs[0], jax.tree.map(first, traj),
                jax.tree.map(first, episodes))

    env_state, obs, transition, episodes = jax.vmap(one_env)(
        state.noise, state.env_state, state.obs, jax.random.split(act_key, num_envs))
    done = jnp.logical_or(transition.terminated, transition.truncated)
    noise = jax.vmap(renew_noise)(state.noise, done, jax.random.split(noise_key, num_envs))
    transition, addons = agent.transform(state.addons, transition, key, setup)
    state = state.replace(env_state=env_state, obs=obs, noise=noise, addons=addons,
                          buffer=setup.buffer.add(state.buffer, transition),
                          env_steps=state.env_steps + num_envs)
    return state, episodes


def learn(state: State, key: PRNGKey, ready: jax.Array,
          update: Callable[[State, PRNGKey], tuple[State, Metrics]], num_updates: int):
    """`num_updates` calls of `update(state, key)` if `ready`, else the state unchanged.

    Returns:
      `(state, metrics)`: metrics averaged over the updates; zeros when not `ready` (the
      runner refuses NaN losses), so averages over iterations must weight by readiness.
    """

    def run(state):
        state, metrics = jax.lax.scan(update, state, jax.random.split(key, num_updates))
        return state, jax.tree.map(jnp.mean, metrics)

    def skip(state):
        shapes = jax.eval_shape(run, state)[1]
        return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    # Under a vmap over seeds `ready` is batched and this becomes a select: both branches
    # run, but only during the warm-up is the update's work wasted.
    return jax.lax.cond(ready, run, skip, state)


def iteration(state: State, key: PRNGKey, setup: Setup,
              step: Callable[[State, PRNGKey], tuple[State, Any]],
              update: Callable[[State, PRNGKey], tuple[State, Metrics]]):
    """`rollout_len // train_frequency` phases of `train_frequency` steps of all `num_envs`
    copies, each followed by `gradient_steps` updates.

    Each phase calls `step(state, key) -> (state, episodes [N])` `train_frequency` times
    (e.g. `collect_step` with the agent's acting), then `gradient_steps` calls of `update`
    once the warm-up is over: at least `learning_starts` env steps taken and the buffer
    able to sample.

    Returns:
      `(state, metrics)`: the update metrics averaged over the phases that learned (0 if
      none did), `replay/learning` (fraction of phases that learned) and the `episode/*`
      statistics of the `[rollout_len, N]` steps.
    """
    config = setup.config
    num_phases = config.rollout_len // config.train_frequency

    def phase(state, phase_key):
        collect_key, learn_key = jax.random.split(phase_key)
        state, episodes = jax.lax.scan(step, state,
                                       jax.random.split(collect_key, config.train_frequency))
        ready = jnp.logical_and(state.env_steps >= config.learning_starts,
                                setup.buffer.can_sample(state.buffer))
        state, metrics = learn(state, learn_key, ready, update, config.gradient_steps)
        return state, (metrics, ready.astype(jnp.float32), episodes)

    state, (metrics, ready, episodes) = jax.lax.scan(phase, state,
                                                     jax.random.split(key, num_phases))
    count = ready.sum()
    metrics = jax.tree.map(lambda m: (m * ready).sum() / jnp.maximum(count, 1.0), metrics)
    # [phases, F, N] -> [T, N], the layout `episode_metrics` reads.
    episodes = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), episodes)
    return state, {**metrics, "replay/learning": count / num_phases,
                   **rollout.episode_metrics(episodes)}


def update_target(params: Params, target_params: Params, step: jax.Array, period: int,
                  tau: jax.Array) -> Params:
    """Every `period` updates, move the target toward `params`: `tau p + (1 - tau) p_target`.

    With `tau = 1` a hard copy every `period` updates (Mnih et al. 2015, "the target
    network is reset every C updates"); with `period = 1` and small `tau`, Polyak
    averaging after every update (Lillicrap et al. 2016). `step` counts updates applied,
    so the first change comes after update `period`.
    """
    moved = optax.incremental_update(params, target_params, tau)
    return optax.periodic_update(moved, target_params, step, period)


def linear_schedule(start: jax.Array, end: jax.Array, progress: jax.Array) -> jax.Array:
    """`start + (end - start) * clip(progress, 0, 1)`: a linear decay, traced.

    optax's `linear_schedule` needs a concrete number of steps; here `progress` (e.g.
    `env_steps / (fraction * total_timesteps)`) may come from traced hyperparameters.
    """
    return start + (end - start) * jnp.clip(progress, 0.0, 1.0)


@struct.dataclass
class NStep:
    """Replayed windows reduced to n-step transitions; leaves `[B, ...]`.

    Attributes:
      obs: [B, *obs_shape] observation of each window's first transition.
      action: [B, *action_shape] the action taken there.
      reward: [B] discounted reward sum through the window's first episode end.
      discount: [B] product of the discounts summed over (0 after a termination).
      next_obs: [B, *obs_shape] the bootstrap observation: `next_obs` of the transition
        where the sum stopped (pre-reset on a truncation).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    next_obs: jax.Array


def n_step(items: Transition, gamma: jax.Array) -> NStep:
    """Reduce sampled windows `[B, L]` to n-step transitions (`returns.n_step_return`).

    The target of window b is `reward[b] + discount[b] * V(next_obs[b])`.
    """
    discount_t = gamma * (1.0 - items.terminated.astype(jnp.float32))
    cut_t = jnp.logical_or(items.terminated, items.truncated)
    g, discount, k = jax.vmap(returns.n_step_return)(items.reward, discount_t, cut_t)
    next_obs = items.next_obs[jnp.arange(k.shape[0]), k]
    return NStep(obs=items.obs[:, 0], action=items.action[:, 0], reward=g, discount=discount,
                 next_obs=next_obs)
