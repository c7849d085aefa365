"""Curricula over env params as add-ons (`jaxrl.agent.Addon`) for any built-in agent.

A curriculum here is array state in `state.addons[name]`: it picks the `EnvParams` the
agent collects with, inside the jitted run, so it is checkpointed, resumed and vmapped
over seeds with the rest of the agent. Evaluation keeps the env's own params (the target
task), so summaries report how the agent does on the task, not on the current lesson.

* `schedule(levels, boundaries)`: lesson `i` from env step `boundaries[i - 1]` on.
* `teacher(levels, threshold)`: advance to the next lesson when a running estimate of
  success on the current one reaches `threshold` (Bengio et al. 2009 order lessons by
  difficulty; this is the success-gated teacher of Matiisen et al. 2017 in its simplest,
  monotone form).
* `reverse(starts)`: reverse curriculum generation (Florensa et al. 2017): start next to
  the goal, keep the starts whose success rate lies in a band `[low, high]`, expand from
  them by short random moves, replay old good starts.

`levels` is a sequence of `EnvParams` of one env (built on the host, e.g. with the maze's
`make_params`); they are stacked into one pytree with a leading `[L]` axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl import config as cfg
from jaxrl.agent import Addon, Setup
from jaxrl.config import ConfigError
from jaxrl.types import Metrics, Transition


def stack_levels(levels: Sequence[Any]) -> Any:
    """One `EnvParams` pytree with leaves `[L, ...]` from `L` params of the same structure.

    Raises:
      ConfigError: no level, or levels whose structures or leaf shapes differ.
    """
    if not levels:
        raise ConfigError("levels must hold at least one EnvParams, got none")
    first = jax.tree.structure(levels[0])
    for i, level in enumerate(levels):
        if jax.tree.structure(level) != first or any(
                np.shape(a) != np.shape(b)
                for a, b in zip(jax.tree.leaves(level), jax.tree.leaves(levels[0]))):
            raise ConfigError(f"levels[{i}] differs in structure or shapes from levels[0]; "
                              "every level must be params of the same env")
    return jax.tree.map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]), *levels)


def _level(levels: Any, stage: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[stage], levels)


def _stage_metrics(metrics: Metrics, name: str, stage: jax.Array) -> Metrics:
    return {**metrics, f"{name}/stage": stage.astype(jnp.float32)}


def schedule(levels: Sequence[Any], boundaries: Sequence[int], *,
             name: str = "schedule") -> Addon:
    """A curriculum by env steps: lesson `i` once `boundaries[i - 1]` steps were taken.

    Args:
      levels: `L` `EnvParams`, easiest first.
      boundaries: `L - 1` increasing env-step counts (per seed) at which to move on.
      name: the add-on's name and metric prefix (`{name}/stage`).
    """
    stacked = stack_levels(levels)
    bounds = list(boundaries)
    if len(bounds) != len(levels) - 1:
        raise ConfigError(f"boundaries must hold len(levels) - 1 = {len(levels) - 1} env-step "
                          f"counts, got {len(bounds)}")
    for b in bounds:
        cfg.check_int("boundaries", b)
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ConfigError(f"boundaries must increase, got {bounds}")
    edges = jnp.asarray(bounds, jnp.int32)

    def init(key, setup: Setup):
        return {"steps": jnp.int32(0)}

    def stage_of(astate):
        return jnp.sum(astate["steps"] >= edges).astype(jnp.int32)

    def after(astate, metrics, key, setup: Setup):
        # Logged: the stage the iteration just collected with, before the count moves.
        metrics = _stage_metrics(metrics, name, stage_of(astate))
        return {"steps": astate["steps"] + setup.config.steps_per_iteration}, metrics

    return Addon(name, init=init, env_params=lambda a: _level(stacked, stage_of(a)),
                 after=after)


@struct.dataclass
class TeacherState:
    """A success-gated teacher's state (all scalars).

    Attributes:
      stage: int32 index of the current lesson.
      score: float32 running success estimate on the current lesson (reset on advancing).
      seen: float32 episodes counted on the current lesson.
    """

    stage: jax.Array
    score: jax.Array
    seen: jax.Array


def teacher_step(state: TeacherState, success: jax.Array, episodes: jax.Array, *,
                 threshold: float, smoothing: float, min_episodes: int,
                 num_levels: int) -> TeacherState:
    """The teacher after one iteration's mean success `success` over `episodes` episodes.

    The score is an exponential moving average over iterations that ended episodes,
    `score <- smoothing * score + (1 - smoothing) * success` (the first one sets it); the
    teacher advances, and resets score and count, once `score >= threshold` with at least
    `min_episodes` episodes seen on the lesson. The last lesson is kept.
    """
    ended = episodes > 0
    success = jnp.where(ended, success, 0.0)  # NaN when no episode ended
    score = jnp.where(state.seen > 0, smoothing * state.score + (1 - smoothing) * success,
                      success)
    score = jnp.where(ended, score, state.score)
    seen = state.seen + episodes
    advance = (score >= threshold) & (seen >= min_episodes) & (state.stage < num_levels - 1)
    return TeacherState(stage=state.stage + advance.astype(jnp.int32),
                        score=jnp.where(advance, 0.0, score),
                        seen=jnp.where(advance, 0.0, seen))


def teacher(levels: Sequence[Any], threshold: float, *, metric: str = "episode/return",
            smoothing: float = 0.0, min_episodes: int = 1, name: str = "teacher") -> Addon:
    """A curriculum that advances when success on the current lesson reaches `threshold`.

    Args:
      levels: `L` `EnvParams`, easiest first.
      threshold: advance once the score reaches it.
      metric: the per-iteration metric read as success (its mean over episodes that ended
        in the iteration; `episode/return` is the success rate of a 0/1-reward task).
      smoothing: weight of the old score in the moving average, in `[0, 1)` (0: the last
        iteration's success alone).
      min_episodes: episodes to see on a lesson before advancing.
      name: the add-on's name and metric prefix (`{name}/stage`, `{name}/score`).
    """
    stacked = stack_levels(levels)
    threshold = cfg.check_real("threshold", threshold)
    smoothing = cfg.check_real("smoothing", smoothing)
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}")
    cfg.check_int("min_episodes", min_episodes)
    kwargs = dict(threshold=threshold, smoothing=smoothing, min_episodes=min_episodes,
                  num_levels=len(levels))

    def init(key, setup: Setup):
        zero = jnp.float32(0.0)
        return TeacherState(stage=jnp.int32(0), score=zero, seen=zero)

    def after(astate: TeacherState, metrics, key, setup: Setup):
        if metric not in metrics:
            raise ConfigError(f"teacher metric {metric!r} is not logged by this agent; "
                              f"allowed: {', '.join(sorted(metrics))}")
        new = teacher_step(astate, metrics[metric], metrics["episode/count"], **kwargs)
        metrics = _stage_metrics(metrics, name, astate.stage)
        return new, {**metrics, f"{name}/score": new.score}

    return Addon(name, init=init, env_params=lambda a: _level(stacked, a.stage), after=after)


@dataclasses.dataclass(frozen=True, eq=False)
class Starts:
    """A finite set of `K` candidate start states of one env, built once on the host.

    Attributes:
      near: `[K, K]` bool, `near[i, j]`: start `j` is a short random walk from start `i`
        (the expansion step; the diagonal is True).
      goal: index of the start at the goal, where the curriculum begins.
      locate: `obs [..., *obs_shape] -> int32 [...]`, the start index of an observation.
      with_weights: `weights [K] float32 -> params`, the env's params with resets drawn
        by `weights` (everything else as the target task's).
      distance: `[K]` float32 distance of each start to the goal (logged, never used).
    """

    near: np.ndarray
    goal: int
    locate: Any
    with_weights: Any
    distance: np.ndarray


def maze_starts(env: Any, params: Any, radius: int = 3) -> Starts:
    """The free cells of a `DiscreteMaze` as `Starts`, `radius` moves apart at most.

    Args:
      env: a `jaxrl.envs.maze.DiscreteMaze` with image observations.
      params: its `MazeParams` (the goal is `params.goal`).
      radius: the expansion step in moves (Florensa et al. take short Brownian walks).
    """
    cfg.check_int("radius", radius)
    dist = env.dist[np.ix_(env.free_index, env.free_index)]  # [K, K] moves, -1: unreachable
    goal = int(np.flatnonzero(env.free_index == env._index(np.asarray(params.goal)))[0])
    to_free = np.full(env.walls.size, -1, np.int32)
    to_free[env.free_index] = np.arange(len(env.free_index))

    def locate(obs):
        agent = jnp.argmax(obs[..., 1].reshape(obs.shape[:-3] + (-1,)), axis=-1)
        return jnp.asarray(to_free)[agent]

    def with_weights(weights):
        # Start at the goal, spread over the whole maze: the weights alone pick the start.
        return params.replace(start=params.goal, start_spread=jnp.int32(env.walls.size),
                              start_weights=weights)

    return Starts(near=(dist >= 0) & (dist <= radius), goal=goal, locate=locate,
                  with_weights=with_weights, distance=dist[:, goal].astype(np.float32))


@struct.dataclass
class ReverseState:
    """Reverse-curriculum state.

    Attributes:
      active: `[K]` bool, the starts trained from (new ones expanded from good starts).
      old: `[K]` bool, every start ever found good (replayed).
      attempts: `[K]` float32 episodes begun at each start since the last update.
      successes: `[K]` float32 of those that succeeded.
      current: `[N]` int32 start index of each env copy's running episode.
      fresh: `[N]` bool, the env copy's next transition begins an episode.
      iteration: int32 iterations since the last update.
    """

    active: jax.Array
    old: jax.Array
    attempts: jax.Array
    successes: jax.Array
    current: jax.Array
    fresh: jax.Array
    iteration: jax.Array


def start_weights(active: jax.Array, old: jax.Array, replay: float) -> jax.Array:
    """`[K]` float32 reset weights: the active starts take `1 - replay` of the mass, the old
    good starts `replay` (all of it to whichever set is non-empty when one is empty)."""
    a = active.astype(jnp.float32)
    o = old.astype(jnp.float32)
    na, no = a.sum(), o.sum()
    wa = jnp.where(no > 0, 1.0 - replay, 1.0) / jnp.maximum(na, 1.0)
    wo = jnp.where(na > 0, replay, 1.0) / jnp.maximum(no, 1.0)
    return a * wa + o * wo


def count_episodes(state: ReverseState, start: jax.Array, done: jax.Array,
                   success: jax.Array) -> ReverseState:
    """Attribute each ended episode of a `[T, N]` batch to the start it began from.

    Args:
      state: the reverse-curriculum state.
      start: `[T, N]` int32 start index of each transition's observation.
      done: `[T, N]` bool, the episode ended with the transition.
      success: `[T, N]` bool, it ended at the goal.
    """
    def step(carry, x):
        current, fresh, attempts, successes = carry
        s, d, ok = x
        current = jnp.where(fresh, s, current)
        hit = jax.nn.one_hot(current, attempts.shape[0]) * d[:, None]  # [N, K]
        attempts = attempts + hit.sum(0)
        successes = successes + (hit * ok[:, None]).sum(0)
        return (current, d, attempts, successes), None

    (current, fresh, attempts, successes), _ = jax.lax.scan(
        step, (state.current, state.fresh, state.attempts, state.successes),
        (start, done, success))
    return state.replace(current=current, fresh=fresh, attempts=attempts, successes=successes)


def select_starts(state: ReverseState, near: jax.Array, *, low: float, high: float,
                  min_attempts: int) -> ReverseState:
    """The start sets after an update.

    A start tried at least `min_attempts` times is judged: good if its success rate lies
    in `[low, high]`. Good starts join `old`, and the new active set is every start within
    one expansion step of one of them, plus the active starts not yet judged (they keep
    their counts; judged counts are reset). Without a good start, the expansion grows from
    the starts already mastered (rate above `high`), else the active set is kept.
    """
    judged = state.attempts >= min_attempts
    rate = state.successes / jnp.maximum(state.attempts, 1.0)
    good = judged & (rate >= low) & (rate <= high)
    easy = judged & (rate > high)
    seeds = jnp.where(good.any(), good, jnp.where(easy.any(), easy, state.active))
    active = (seeds[:, None] & near).any(0) | (state.active & ~judged)
    return state.replace(active=active, old=state.old | good,
                         attempts=jnp.where(judged, 0.0, state.attempts),
                         successes=jnp.where(judged, 0.0, state.successes),
                         iteration=jnp.int32(0))


def reverse(starts: Starts, *, low: float = 0.1, high: float = 0.9, replay: float = 1 / 3,
            period: int = 1, min_attempts: int = 2, name: str = "reverse") -> Addon:
    """Reverse curriculum generation (Florensa et al. 2017) over a finite start set.

    Training begins from the goal's neighbourhood; every `period` iterations the starts
    whose success rate fell in `[low, high]` are kept and expanded (`select_starts`), and
    resets draw from the active set and, with mass `replay`, from every start once good.
    Success is an episode that terminated (not truncated): the goal reached.

    Args:
      starts: the candidate starts (`maze_starts`).
      low, high: the success band of a good start (Florensa et al. use 0.1 and 0.9).
      replay: share of reset mass on old good starts, in `[0, 1)`.
      period: iterations between updates of the start sets.
      min_attempts: episodes a start needs before it is judged.
      name: the add-on's name and metric prefix.
    """
    low, high, replay = (cfg.check_real(n, v) for n, v in
                         (("low", low), ("high", high), ("replay", replay)))
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"low and high must satisfy 0 <= low <= high <= 1, got {low}, {high}")
    if not 0.0 <= replay < 1.0:
        raise ConfigError(f"replay must be in [0, 1), got {replay}")
    cfg.check_int("period", period)
    cfg.check_int("min_attempts", min_attempts)
    near = jnp.asarray(starts.near)
    distance = jnp.asarray(starts.distance)
    k = near.shape[0]

    def init(key, setup: Setup):
        n = setup.config.num_envs
        first = jnp.zeros(k, bool).at[starts.goal].set(True)
        zeros = jnp.zeros(k, jnp.float32)
        return ReverseState(active=(first[:, None] & near).any(0), old=jnp.zeros(k, bool),
                            attempts=zeros, successes=zeros, current=jnp.zeros(n, jnp.int32),
                            fresh=jnp.ones(n, bool), iteration=jnp.int32(0))

    def env_params(astate: ReverseState):
        return starts.with_weights(start_weights(astate.active, astate.old, replay))

    def transform(astate: ReverseState, transitions: Transition, key, setup: Setup):
        tr = transitions if transitions.reward.ndim == 2 else jax.tree.map(
            lambda x: x[None], transitions)
        done = tr.terminated | tr.truncated
        astate = count_episodes(astate, starts.locate(tr.obs), done, tr.terminated)
        return transitions, astate

    def after(astate: ReverseState, metrics, key, setup: Setup):
        active = astate.active.astype(jnp.float32)
        metrics = {**metrics, f"{name}/starts": active.sum(),
                   f"{name}/old": astate.old.astype(jnp.float32).sum(),
                   f"{name}/mean_distance": (active * distance).sum() /
                   jnp.maximum(active.sum(), 1.0)}
        astate = astate.replace(iteration=astate.iteration + 1)
        astate = jax.lax.cond(
            astate.iteration >= period,
            lambda s: select_starts(s, near, low=low, high=high, min_attempts=min_attempts),
            lambda s: s, astate)
        return astate, metrics

    return Addon(name, init=init, transform=transform, env_params=env_params, after=after)
