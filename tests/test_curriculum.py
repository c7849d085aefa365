"""Curricula as add-ons (`jaxrl.curriculum`): the teacher advances exactly when its score
crosses the threshold (against a plain Python loop), the schedule follows env steps, the
reverse curriculum keeps only starts in the success band and attributes every episode to
the start it began from, and PPO with a curriculum compiles once and vmaps over seeds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxrl import curriculum, runner, testing
from jaxrl.agents import ppo
from jaxrl.config import ConfigError
from jaxrl.envs.maze import DiscreteMaze

# A corridor with a side room; the goal at the right end.
LAYOUT = """
#######
#S....#
#.###.#
#....G#
#######
"""


def teacher_reference(successes, episodes, *, threshold, smoothing, min_episodes, levels):
    """The teacher's stages by a plain loop: the stage in force after each iteration."""
    stage, score, seen, out = 0, 0.0, 0.0, []
    for s, n in zip(successes, episodes):
        if n > 0:
            score = s if seen == 0 else smoothing * score + (1 - smoothing) * s
        seen += n
        if score >= threshold and seen >= min_episodes and stage < levels - 1:
            stage, score, seen = stage + 1, 0.0, 0.0
        out.append(stage)
    return out


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, width=32), st.integers(0, 3)), min_size=1,
                max_size=30),
       st.sampled_from([0.5, 0.8, 1.0]), st.sampled_from([0.0, 0.5, 0.9]),
       st.integers(1, 4))
def test_the_teacher_advances_exactly_when_the_threshold_is_crossed(
        seq, threshold, smoothing, min_episodes):
    successes = [s for s, _ in seq]
    episodes = [n for _, n in seq]
    kwargs = dict(threshold=threshold, smoothing=smoothing, min_episodes=min_episodes)
    expected = teacher_reference(successes, episodes, levels=3, **kwargs)
    state = curriculum.TeacherState(stage=jnp.int32(0), score=jnp.float32(0),
                                    seen=jnp.float32(0))
    step = jax.jit(lambda st_, s, n: curriculum.teacher_step(st_, s, n, num_levels=3, **kwargs))
    got = []
    for s, n in zip(successes, episodes):
        # No episode ended: the logged success is NaN and must not move the score.
        state = step(state, jnp.float32(s if n else np.nan), jnp.float32(n))
        got.append(int(state.stage))
    assert got == expected


def test_select_starts_keeps_only_the_band_and_expands_one_step():
    # Five starts on a line, each near its neighbours.
    near = np.eye(5, dtype=bool) | np.eye(5, k=1, dtype=bool) | np.eye(5, k=-1, dtype=bool)
    state = curriculum.ReverseState(
        active=jnp.asarray([1, 1, 1, 0, 0], bool), old=jnp.asarray([0, 0, 0, 0, 1], bool),
        attempts=jnp.asarray([4, 4, 1, 0, 0], jnp.float32),
        successes=jnp.asarray([4, 2, 1, 0, 0], jnp.float32),  # rates 1, 0.5, (1: too few)
        current=jnp.zeros(2, jnp.int32), fresh=jnp.ones(2, bool), iteration=jnp.int32(3))
    new = curriculum.select_starts(state, jnp.asarray(near), low=0.1, high=0.9,
                                   min_attempts=2)
    # Only start 1 is good (start 0 is mastered, start 2 too rarely tried: it stays active
    # and keeps its count).
    np.testing.assert_array_equal(new.old, [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(new.active, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(new.attempts, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(new.successes, [0, 0, 1, 0, 0])
    assert int(new.iteration) == 0
    # A start judged too hard (rate below the band) leaves the active set.
    hard = state.replace(successes=jnp.asarray([4, 2, 1, 0, 0], jnp.float32),
                         attempts=jnp.asarray([4, 4, 1, 0, 0], jnp.float32),
                         active=jnp.asarray([1, 1, 1, 1, 1], bool))
    hard = hard.replace(attempts=hard.attempts.at[4].set(5.0))  # 0 of 5: too hard
    new = curriculum.select_starts(hard, jnp.asarray(near), low=0.1, high=0.9,
                                   min_attempts=2)
    np.testing.assert_array_equal(new.active, [1, 1, 1, 1, 0])
    # Everything mastered: the frontier grows from the mastered starts.
    mastered = state.replace(successes=state.attempts, active=jnp.asarray([1, 1, 0, 0, 0],
                                                                            bool))
    new = curriculum.select_starts(mastered, jnp.asarray(near), low=0.1, high=0.9,
                                   min_attempts=2)
    np.testing.assert_array_equal(new.active, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(new.old, [0, 0, 0, 0, 1])


def test_episodes_are_counted_at_the_start_they_began_from():
    rng = np.random.default_rng(0)
    t, n, k = 12, 3, 4
    start = rng.integers(0, k, (t, n))
    done = rng.random((t, n)) < 0.3
    success = done & (rng.random((t, n)) < 0.5)
    state = curriculum.ReverseState(
        active=jnp.ones(k, bool), old=jnp.zeros(k, bool), attempts=jnp.zeros(k),
        successes=jnp.zeros(k), current=jnp.asarray([2, 0, 1], jnp.int32),
        fresh=jnp.asarray([False, True, True]), iteration=jnp.int32(0))
    new = curriculum.count_episodes(state, jnp.asarray(start), jnp.asarray(done),
                                    jnp.asarray(success))
    attempts, successes = np.zeros(k), np.zeros(k)
    current, fresh = [2, 0, 1], [False, True, True]
    for i in range(t):
        for j in range(n):
            if fresh[j]:
                current[j] = start[i, j]
            if done[i, j]:
                attempts[current[j]] += 1
                successes[current[j]] += success[i, j]
            fresh[j] = done[i, j]
    np.testing.assert_array_equal(new.attempts, attempts)
    np.testing.assert_array_equal(new.successes, successes)
    np.testing.assert_array_equal(new.current, current)
    np.testing.assert_array_equal(new.fresh, fresh)


def test_start_weights_split_the_mass_between_active_and_old():
    w = curriculum.start_weights(jnp.asarray([1, 1, 0, 0], bool),
                                 jnp.asarray([0, 0, 0, 1], bool), 0.25)
    np.testing.assert_allclose(w, [0.375, 0.375, 0.0, 0.25])
    w = curriculum.start_weights(jnp.asarray([1, 0, 0, 0], bool), jnp.zeros(4, bool), 0.25)
    np.testing.assert_allclose(w, [1.0, 0, 0, 0])


def test_maze_resets_draw_from_the_start_weights():
    env = DiscreteMaze(LAYOUT)
    starts = curriculum.maze_starts(env, env.default_params, radius=1)
    weights = np.zeros(len(env.free_cells), np.float32)
    weights[[0, 5]] = 1.0
    params = starts.with_weights(jnp.asarray(weights))
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 256),
                                                     params)
    where = np.asarray(starts.locate(obs))
    assert set(where.tolist()) == {0, 5}
    assert 0.35 < (where == 0).mean() < 0.65
    # The goal's cell and its one-move neighbours begin the curriculum.
    goal = starts.goal
    assert tuple(env.free_cells[goal]) == (3, 5)
    assert {tuple(c) for c in env.free_cells[starts.near[goal]]} == {(3, 5), (3, 4), (2, 5)}


def test_configs_are_checked():
    env = DiscreteMaze(LAYOUT)
    levels = [env.make_params(start=(3, 4)), env.make_params(start=(3, 2)),
              env.make_params()]
    with pytest.raises(ConfigError, match="boundaries"):
        curriculum.schedule(levels, [16])
    with pytest.raises(ConfigError, match="increase"):
        curriculum.schedule(levels, [16, 16])
    with pytest.raises(ConfigError, match="levels"):
        curriculum.teacher([], 0.5)
    with pytest.raises(ConfigError, match="smoothing"):
        curriculum.teacher(levels, 0.5, smoothing=1.0)
    with pytest.raises(ConfigError, match="low and high"):
        curriculum.reverse(curriculum.maze_starts(env, env.default_params), low=0.9, high=0.1)
    with pytest.raises(ConfigError, match="levels\\[1\\]"):
        curriculum.stack_levels([levels[0], DiscreteMaze(size=5).default_params])


PPO_MAZE = ppo.Config(env="Maze-9x9-v0", num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 4,
                      num_minibatches=2, num_epochs=1, hidden_sizes=(16,))


def test_ppo_with_a_reverse_curriculum_compiles_once_and_vmaps_like_separate_seeds():
    from jaxrl import envs

    env, params = envs.make("Maze-9x9-v0")
    agent = ppo.AGENT.extend("ppo-reverse", curriculum.reverse(
        curriculum.maze_starts(env, params, radius=2), min_attempts=1))
    hparams = ppo.HParams.create()
    state, chunks = testing.run_chunks_compiling_once(agent, PPO_MAZE, hparams, 2)
    starts = np.concatenate([np.asarray(c["reverse/starts"]) for c in chunks])
    distance = np.concatenate([np.asarray(c["reverse/mean_distance"]) for c in chunks])
    # The first iteration trains from the goal's 2-move neighbourhood only.
    assert 1 <= starts[0] <= 5 and distance[0] <= 2
    testing.assert_vmap_matches_separate(runner.make_train(agent, PPO_MAZE),
                                         jax.random.split(jax.random.key(3), 2), hparams,
                                         rtol=1e-5, atol=1e-6)


def test_the_schedule_and_teacher_log_their_stage_and_collect_with_its_params():
    from jaxrl import envs

    env, params = envs.make("Maze-9x9-v0")
    # Lesson 0 starts on the goal's neighbour (one move: every episode succeeds fast),
    # lesson 1 is the real task.
    goal = tuple(int(v) for v in params.goal)
    near = next(tuple(c) for c in env.free_cells
                if env.dist[env._index(np.asarray(c)), env._index(np.asarray(goal))] == 1)
    levels = [env.make_params(start=near), params]
    # From the real start no episode can end within the first iteration's 16 steps.
    assert env.dist[env._index(np.asarray(params.start)), env._index(np.asarray(goal))] > 16
    sched = ppo.AGENT.extend("ppo-schedule", curriculum.schedule(levels, [128]))
    _, m = jax.jit(runner.make_train(sched, PPO_MAZE))(jax.random.key(0), ppo.HParams.create())
    np.testing.assert_array_equal(m["schedule/stage"], [0, 0, 1, 1])
    # Lesson 0 was collected with its own start: episodes ended in the first iteration.
    assert m["episode/count"][0] > 0
    teach = ppo.AGENT.extend("ppo-teacher", curriculum.teacher(levels, 0.9))
    _, m = jax.jit(runner.make_train(teach, PPO_MAZE))(jax.random.key(0), ppo.HParams.create())
    # Lesson 0's success is 1 on the first iteration: the teacher moves on at once.
    assert m["episode/count"][0] > 0 and m["episode/return"][0] == 1.0
    np.testing.assert_array_equal(m["teacher/stage"], [0, 1, 1, 1])
