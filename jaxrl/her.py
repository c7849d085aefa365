"""Hindsight experience replay (Andrychowicz et al. 2017, arXiv 1707.01495) for replay agents.

This module owns goal relabelling: a replay buffer whose `sample` replaces, for a
`relabel_ratio` fraction of the sampled windows, the goal in every observation by a goal
the same episode achieved later ("future") or at its end ("final"), and recomputes the
reward and the termination with the env's `goal_reward` / `goal_reached`. `extend(agent)`
gives any replay agent (DQN family, DDPG, TD3, SAC, continuous Q-learning) such a buffer.

Why relabel at sampling time inside the buffer, not at storage time in an `Addon`: the
buffer already holds, per env column and in time order, everything relabelling needs
(the achieved goal is read back from each stored `next_obs`, and the episode ends are the
stored `terminated | truncated` flags), so nothing new is stored and no agent changes. An
add-on would have to keep a copy of each env copy's current episode in its state and emit
a variable number of extra transitions when an episode ends, which the fixed `[N]` rows of
`off_policy.collect_step` cannot carry. Relabelling at sampling time also draws fresh
future goals every time a transition is replayed (the paper draws k at storage time).

Goal-conditioned envs (`jaxrl.envs.maze`, `jaxrl.envs.goals`) provide `obs_achieved(obs)`,
`obs_goal(obs)`, `with_goal(obs, goal)`, `goal_reached(achieved, goal, params)` and
`goal_reward(achieved, goal, params)`; the env's own step uses the last two, so a
relabelled transition is one the env could have produced.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp

from jaxrl import buffers
from jaxrl import config as cfg
from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError
from jaxrl.types import PRNGKey, Transition

STRATEGIES = ("final", "future")
GOAL_METHODS = ("obs_achieved", "obs_goal", "with_goal", "goal_reached", "goal_reward")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HER:
    """Hindsight relabelling settings (static: they shape the sampling program).

    Attributes:
      strategy: `future` (a goal achieved at a uniformly drawn step from the sampled one to
        the episode's end, both included) or `final` (the goal achieved at the episode's
        last step). An episode still running counts its newest stored step as its end.
      relabel_ratio: fraction of sampled windows relabelled (the paper's k = 4 future goals
        per transition is a ratio of 4 / 5 = 0.8).
      horizon: steps looked ahead for an episode's end; default the env's
        `max_steps_in_episode` (no episode is longer). Capped at the buffer's rows.
    """

    strategy: str = "future"
    relabel_ratio: float = 0.8
    horizon: int | None = None

    def __post_init__(self):
        cfg.check_choice("strategy", self.strategy, STRATEGIES)
        ratio = cfg.check_real("relabel_ratio", self.relabel_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"relabel_ratio must be in [0, 1], got {self.relabel_ratio!r}")
        cfg.check_int("horizon", self.horizon, none=True)


def goal_offset(done_t: jax.Array, num_ahead: jax.Array, key: PRNGKey,
                strategy: str) -> jax.Array:
    """Steps from a sampled transition to the one whose achieved goal relabels it.

    Args:
      done_t: [H] bool, `terminated | truncated` of the sampled transition (index 0) and
        the next H - 1 of its env copy.
      num_ahead: int32 scalar in [1, ...], stored transitions from the sampled one to the
        newest, both included; later entries of `done_t` are not this episode's.
      key: the draw of `future`.
      strategy: `final` or `future` (see `HER`).

    Returns:
      int32 scalar in `[0, end]`, `end` the offset of the episode's last stored transition:
      `end` itself for `final`, uniform over `[0, end]` for `future` (Andrychowicz et al.
      2017, section 4.5; index 0 is the transition's own next state, as in the paper's
      `future` set, which includes the step's own outcome).
    """
    chex.assert_rank(done_t, 1)
    horizon = done_t.shape[0]
    last = jnp.minimum(num_ahead, horizon) - 1
    steps = jnp.arange(horizon)
    # The first done at or before `last`; if none, the newest stored step ends it.
    end = jnp.min(jnp.where(done_t & (steps <= last), steps, last))
    if strategy == "final":
        return end.astype(jnp.int32)
    return jax.random.randint(key, (), 0, end + 1).astype(jnp.int32)


def relabel(items: Transition, goal: jax.Array, goal_env: Any, env_params: Any) -> Transition:
    """One window `[L, ...]` of transitions as if `goal` had been the goal throughout.

    Rewards and terminations come from the env's `goal_reward` / `goal_reached` on the
    goal achieved in each `next_obs`. A step that ended its episode (terminated on the old
    goal, or truncated) but does not reach the new goal becomes truncated: the episode
    still ends there (n-step sums stop), but the value bootstraps from `next_obs`.
    """
    def one(t: Transition) -> Transition:
        achieved = goal_env.obs_achieved(t.next_obs)
        reached = goal_env.goal_reached(achieved, goal, env_params)
        ended = t.terminated | t.truncated
        return t.replace(obs=goal_env.with_goal(t.obs, goal),
                         next_obs=goal_env.with_goal(t.next_obs, goal),
                         reward=goal_env.goal_reward(achieved, goal, env_params).astype(
                             t.reward.dtype),
                         terminated=reached, truncated=ended & ~reached)

    return jax.vmap(one)(items)


def make_buffer(buffer: buffers.Buffer, goal_env: Any, env_params: Any, her: HER,
                horizon: int) -> buffers.Buffer:
    """`buffer` whose `sample` relabels a `her.relabel_ratio` fraction of the windows.

    Everything else (`init`, `add`, `can_sample`, `update_priorities`) is `buffer`'s: the
    storage is unchanged, so the buffer state stays a plain pytree.

    Args:
      buffer: a `jaxrl.buffers` buffer of `Transition`s.
      goal_env: the goal-conditioned env (see the module docstring).
      env_params: its params (goal tolerances), closed over.
      horizon: steps looked ahead for an episode's end.
    """

    def sample(state: buffers.BufferState, key: PRNGKey,
               beta: jax.Array | float = 0.0) -> buffers.Sample:
        sample_key, offset_key, mask_key = jax.random.split(key, 3)
        drawn = buffer.sample(state, sample_key, beta)
        storage = state.storage
        rows, num_envs = storage.terminated.shape
        look = min(horizon, rows)
        row, env = drawn.indices // num_envs, drawn.indices % num_envs
        ahead = (state.write_index - 1 - row) % rows + 1
        window_rows = (row[:, None] + jnp.arange(look)[None, :]) % rows
        done = (storage.terminated[window_rows, env[:, None]]
                | storage.truncated[window_rows, env[:, None]])
        batch = row.shape[0]
        offset = jax.vmap(goal_offset, in_axes=(0, 0, 0, None))(
            done, ahead, jax.random.split(offset_key, batch), her.strategy)
        goal = jax.vmap(goal_env.obs_achieved)(storage.next_obs[(row + offset) % rows, env])
        relabelled = jax.vmap(relabel, in_axes=(0, 0, None, None))(
            drawn.items, goal, goal_env, env_params)
        chosen = jax.random.uniform(mask_key, (batch,)) < her.relabel_ratio
        items = jax.tree.map(
            lambda new, old: jnp.where(chosen.reshape((batch,) + (1,) * (old.ndim - 1)),
                                       new, old), relabelled, drawn.items)
        return drawn.replace(items=items)

    return buffer._replace(sample=sample)


def check_goal_env(env: Any, env_id: str) -> None:
    """Raise `ConfigError` unless `env` has the goal interface relabelling needs."""
    missing = [m for m in GOAL_METHODS if not callable(getattr(env, m, None))]
    if missing:
        raise ConfigError(f"env {env_id!r} is not goal-conditioned (it lacks "
                          f"{', '.join(missing)}); HER needs one of PointMaze-v0, "
                          "GoalPendulum-v0, Maze-* or an env with that interface")


def setup_buffer(setup: Setup, her: HER) -> Setup:
    """`setup` with its replay buffer relabelling (host code, once per config).

    Raises:
      ConfigError: the agent has no replay buffer, normalises observations (stored
        observations would not hold raw goals), or the env is not goal-conditioned.
    """
    config = setup.config
    if setup.buffer is None:
        raise ConfigError("HER needs a replay agent (dqn, c51, rainbow, ddpg, td3, sac, "
                          f"cq-*, naf); {type(config).__module__} has no replay buffer")
    if getattr(config, "normalize_obs", False):
        raise ConfigError("normalize_obs must be false with HER: relabelling writes raw "
                          "goals into stored observations")
    check_goal_env(setup.env, config.env)
    horizon = her.horizon
    if horizon is None:
        horizon = getattr(setup.env_params, "max_steps_in_episode", None)
        if not isinstance(horizon, int):
            raise ConfigError(f"env {config.env!r} params have no int max_steps_in_episode; "
                              "give HER(horizon=...)")
    buffer = make_buffer(setup.buffer, setup.env, setup.env_params, her, horizon)
    return dataclasses.replace(setup, buffer=buffer)


def extend(agent: Agent, her: HER | None = None, *, name: str | None = None) -> Agent:
    """`agent` (a replay agent) learning from hindsight-relabelled replay.

    Relabelled windows carry the env's reward for the new goal: an add-on's shaped or
    intrinsic reward (stored in `reward`) survives only in windows left as they were.
    Goal tolerances are read from `setup.env_params`, not from an add-on's `env_params`.

    Returns:
      The same record under `name` (default `<agent>-her`) whose `setup` wraps the
      agent's buffer with `make_buffer`; init, iteration and acting are the agent's own.
    """
    her = HER() if her is None else her
    base_setup = agent.setup

    def setup(config):
        return setup_buffer(base_setup(config), her)

    return agent._replace(name=name or f"{agent.name}-her", setup=setup)
