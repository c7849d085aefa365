"""Hindsight relabelling (`jaxrl.her`): on a hand-built replay of known episodes, `final`
and `future` give exactly the goals, rewards and terminations a plain NumPy walk predicts;
the ratio switch; the window kernel's cut; sampling compiles once and vmaps over seeds; and
a replay agent extended with HER trains (smoke run; learning lives in `bench/her.py`)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import agents, buffers, her, runner, testing
from jaxrl.agents import ddpg
from jaxrl.config import ConfigError
from jaxrl.envs.maze import PointMaze
from jaxrl.types import Transition

ENV = PointMaze()
# Radius 0.15 with positions 0.1 apart: a goal one step away is reached, two steps is not.
PARAMS = ENV.make_params(goal=(0.9, 0.9), goal_radius=0.15)
N, ROWS, B = 2, 10, 512
# done[t, e]: env 0 ends episodes at rows 2 (terminated) and 5 (truncated), env 1 at row 3.
TERMINATED = {(2, 0), (3, 1)}
TRUNCATED = {(5, 0)}


def position(t, e):
    """The position after step `t` of env `e`: x grows 0.1 per step, so every stored
    next position is distinct."""
    return np.array([0.1 * (t + 1), 0.2 + 0.5 * e], np.float32)


def obs(t, e):
    # pos, vel, the original goal
    return np.concatenate([position(t, e), [0.0, 0.0], [0.9, 0.9]]).astype(np.float32)


def filled(num_rows):
    """`(BUFFER, state)` with rows 0..num_rows-1 of the hand-built episodes."""
    row = lambda t: Transition(  # noqa: E731
        obs=jnp.asarray(np.stack([obs(t - 1, e) for e in range(N)])),
        action=jnp.full((N, 2), t, jnp.float32), reward=-jnp.ones(N, jnp.float32),
        terminated=jnp.asarray([(t, e) in TERMINATED for e in range(N)]),
        truncated=jnp.asarray([(t, e) in TRUNCATED for e in range(N)]),
        next_obs=jnp.asarray(np.stack([obs(t, e) for e in range(N)])))
    state = BUFFER.init(jax.tree.map(lambda x: x[0], row(0)))
    for t in range(num_rows):
        state = _add(state, row(t))
    return BUFFER, state


def numpy_episode_end(t, e, newest):
    """The row of the last step of the episode holding step `t` of env `e` (a plain walk)."""
    k = t
    while k < newest:
        if (k, e) in TERMINATED or (k, e) in TRUNCATED:
            return k
        k += 1
    return newest


BUFFER = buffers.make_uniform(capacity=N * ROWS, num_envs=N, batch_size=B, min_size=1)
_add = jax.jit(BUFFER.add)


def her_sampler(strategy, ratio):
    """The relabelling buffer's `sample`, a plain function."""
    return her.make_buffer(BUFFER, ENV, PARAMS, her.HER(strategy=strategy, relabel_ratio=ratio),
                           horizon=200).sample


# One compiled `sample` per setting, shared by the tests.
SAMPLERS = {setting: jax.jit(her_sampler(*setting))
            for setting in [("final", 1.0), ("future", 1.0), ("future", 0.5)]}


def relabelled_sample(strategy, ratio, num_rows=7, key=0):
    """`(state, sample as NumPy, rows [B], envs [B])` of the hand-built buffer."""
    _, state = filled(num_rows)
    sample = SAMPLERS[strategy, ratio](state, jax.random.key(key))
    rows, envs = np.divmod(np.asarray(sample.indices), N)
    return state, jax.tree.map(np.asarray, sample), rows, envs


def step_of(goal_x):
    """The stored row whose next position has this x."""
    return int(round(goal_x / 0.1)) - 1


@pytest.fixture(scope="module")
def final_sample():
    return relabelled_sample("final", 1.0)


@pytest.fixture(scope="module")
def future_sample():
    return relabelled_sample("future", 1.0)


def check_rewards(items, rows, envs, goal_rows):
    """Goals, rewards, terminations and cuts as the env would give for the goal of
    `goal_rows`; everything else untouched."""
    for b, (t, e, g) in enumerate(zip(rows, envs, goal_rows)):
        goal = position(g, e)
        np.testing.assert_allclose(items.obs[b, 0], np.concatenate([obs(t - 1, e)[:4], goal]))
        np.testing.assert_allclose(items.next_obs[b, 0],
                                   np.concatenate([obs(t, e)[:4], goal]))
        reached = abs(g - t) <= 1  # within 0.15 of the next position
        assert items.terminated[b, 0] == reached
        assert items.reward[b, 0] == (0.0 if reached else -1.0)
        ended = (t, e) in TERMINATED or (t, e) in TRUNCATED
        assert items.truncated[b, 0] == (ended and not reached)
        np.testing.assert_array_equal(items.action[b, 0], [t, t])


def test_final_relabels_with_the_episode_end(final_sample):
    _, sample, rows, envs = final_sample
    ends = [numpy_episode_end(t, e, newest=6) for t, e in zip(rows, envs)]
    check_rewards(sample.items, rows, envs, ends)
    # Hand-worked: env 0 rows 0..2 end at 2, 3..5 at 5 (truncated), 6 is still running.
    expected = {(0, 0): 2, (2, 0): 2, (3, 0): 5, (6, 0): 6, (0, 1): 3, (4, 1): 6}
    for (t, e), end in expected.items():
        picked = (rows == t) & (envs == e)
        assert picked.any()
        np.testing.assert_allclose(sample.items.obs[picked, 0, 4], position(end, e)[0])


def test_future_draws_every_later_step_of_the_episode_and_nothing_else(future_sample):
    _, sample, rows, envs = future_sample
    goal_rows = [step_of(x) for x in sample.items.obs[:, 0, 4]]
    check_rewards(sample.items, rows, envs, goal_rows)
    for t in range(7):
        for e in range(N):
            picked = [g for r, v, g in zip(rows, envs, goal_rows) if r == t and v == e]
            assert picked, (t, e)
            end = numpy_episode_end(t, e, newest=6)
            assert set(picked) <= set(range(t, end + 1))
            if len(picked) >= 4 * (end - t + 1):  # enough draws to see every offset
                assert set(picked) == set(range(t, end + 1)), (t, e, picked)


def test_episode_end_is_found_across_the_ring_wrap():
    # 13 rows into 10: rows 10..12 overwrite 0..2; env 1's done at row 3 is still stored,
    # and the newest row (12, slot 2) ends unfinished episodes.
    _, sample, slots, envs = relabelled_sample("final", 1.0, num_rows=13)
    stored_step = {slot: slot + 10 if slot <= 2 else slot for slot in range(ROWS)}
    for b, (slot, e) in enumerate(zip(slots, envs)):
        t = stored_step[slot]
        end = numpy_episode_end(t, e, newest=12)
        np.testing.assert_allclose(sample.items.obs[b, 0, 4:], position(end, e))


def test_windows_not_relabelled_are_the_plain_sample_and_half_are_relabelled():
    state, half, _, _ = relabelled_sample("future", 0.5)
    plain = jax.tree.map(np.asarray, BUFFER.sample(state, jax.random.split(jax.random.key(0),
                                                                           3)[0]))
    np.testing.assert_array_equal(half.indices, plain.indices)
    kept = half.items.obs[:, 0, 4] == np.float32(0.9)  # the original goal
    assert 0.4 < 1 - kept.mean() < 0.6
    for new, old in zip(jax.tree.leaves(half.items), jax.tree.leaves(plain.items)):
        np.testing.assert_array_equal(new[kept], old[kept])


@pytest.mark.parametrize("done,ahead,end", [
    ([0, 0, 1, 0, 1], 5, 2), ([1, 0, 0, 0, 0], 5, 0), ([0, 0, 0, 0, 0], 5, 4),
    ([0, 0, 0, 1, 0], 2, 1),  # the done lies past the newest stored step: not this episode
    ([0, 0, 0, 0, 0], 9, 4),  # horizon shorter than what is stored
])
def test_goal_offset_by_hand(done, ahead, end):
    done = jnp.asarray(done, bool)
    assert int(her.goal_offset(done, jnp.int32(ahead), jax.random.key(0), "final")) == end
    draws = jax.vmap(her.goal_offset, in_axes=(None, None, 0, None))(
        done, jnp.int32(ahead), jax.random.split(jax.random.key(1), 200), "future")
    assert set(np.asarray(draws).tolist()) == set(range(end + 1))


def test_relabelling_a_window_cuts_where_the_old_episode_ended():
    # Step 0 terminated on the old goal; the new goal is step 1's position.
    window = Transition(
        obs=jnp.asarray(np.stack([obs(-1, 0), obs(0, 0)])), action=jnp.zeros((2, 2)),
        reward=jnp.asarray([0.0, -1.0]), terminated=jnp.asarray([True, False]),
        truncated=jnp.asarray([False, False]),
        next_obs=jnp.asarray(np.stack([obs(0, 0), obs(3, 0)])))
    new = her.relabel(window, jnp.asarray(position(3, 0)), ENV, PARAMS)
    np.testing.assert_array_equal(new.terminated, [False, True])
    np.testing.assert_array_equal(new.truncated, [True, False])
    np.testing.assert_array_equal(new.reward, [-1.0, 0.0])


def test_sampling_compiles_once_and_vmaps_over_seeds():
    sample = her_sampler("future", 0.8)
    keys = jax.random.split(jax.random.key(3), 2)
    states = [filled(7)[1], filled(13)[1]]
    outs = testing.assert_compiles_once(sample, [(states[s], keys[s]) for s in range(2)])
    batched = jax.jit(jax.vmap(sample))(jax.tree.map(lambda *x: jnp.stack(x), *states), keys)
    for s in range(2):
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], batched), outs[s])
    assert not np.array_equal(outs[0].items.obs, outs[1].items.obs)


def test_her_settings_and_setup_are_validated():
    with pytest.raises(ConfigError, match="strategy"):
        her.HER(strategy="episode")
    with pytest.raises(ConfigError, match="relabel_ratio"):
        her.HER(relabel_ratio=1.5)
    agent = her.extend(ddpg.SAC_AGENT)
    with pytest.raises(ConfigError, match="not goal-conditioned"):
        agent.setup(agent.Config(env="Pendulum-v1", total_timesteps=1000))
    with pytest.raises(ConfigError, match="normalize_obs"):
        agent.setup(agent.Config(env="PointMaze-v0", normalize_obs=True))


@pytest.mark.slow
def test_extended_agent_trains_vmapped_seeds():
    # Slow only for its compilation (about 25 s cold on 2 cores); the relabelling itself
    # is covered above and every family's setup below.
    agent = her.extend(ddpg.AGENT)
    assert agent.name == "ddpg-her"
    config, hparams = agent.settings(
        "PointMaze-v0", tuned=False, num_envs=2, rollout_len=20, total_timesteps=200,
        learning_starts=40, buffer_size=200, minibatch_size=16, hidden_sizes=(16,))
    train = jax.jit(jax.vmap(runner.make_train(agent, config), in_axes=(0, None)))
    state, metrics = train(jax.random.split(jax.random.key(0), 2), hparams)
    testing.assert_tree_finite(state.params, "params")
    assert float(np.asarray(metrics["replay/learning"])[:, -1].min()) == 1.0
    testing.assert_seeds_differ(np.asarray(jax.tree.leaves(state.params)[0]), "params")


@pytest.mark.parametrize("name,env_id", [("dqn", "Maze-9x9-v0"), ("ddpg", "PointMaze-v0"),
                                         ("td3", "GoalPendulum-v0"), ("sac", "PointMaze-v0")])
def test_every_replay_family_takes_the_relabelling_buffer(name, env_id):
    base = agents.get(name)
    agent = her.extend(base, her.HER(strategy="final"))
    config, _ = agent.settings(env_id, tuned=False, total_timesteps=1000, buffer_size=1000,
                               learning_starts=100, minibatch_size=32)
    inner, setup = base.setup(config), agent.setup(config)
    assert setup.buffer.sample.__qualname__ == "make_buffer.<locals>.sample"
    assert inner.buffer.sample.__qualname__ != setup.buffer.sample.__qualname__


@pytest.mark.parametrize("tested,reached,valid", [
    (True, False, True), (True, True, False), (False, False, False), (False, True, False)])
def test_subgoal_penalty_applies_only_to_tested_unreached_subgoals(tested, reached, valid):
    from jaxrl.agents import hac
    obs_tm1, obs_t = jnp.asarray(obs(0, 0)), jnp.asarray(obs(4, 0))  # ends at x = 0.5
    subgoal = jnp.asarray([0.5, 0.2] if reached else [0.8, 0.2], jnp.float32)
    goal = jnp.asarray([0.9, 0.9], jnp.float32)
    transition, ok = hac.subgoal_test_transition(obs_tm1, subgoal, obs_t, goal,
                                                 jnp.bool_(tested), 10.0, ENV, PARAMS)
    assert bool(ok) == valid
    assert float(transition.reward) == -10.0 and bool(transition.terminated)
    np.testing.assert_allclose(transition.action, subgoal)


@pytest.mark.parametrize("goal,reward", [((0.9, 0.9), -1.0), ((0.55, 0.2), 0.0)])
def test_hindsight_action_is_the_achieved_goal(goal, reward):
    from jaxrl.agents import hac
    obs_tm1, obs_t = jnp.asarray(obs(0, 0)), jnp.asarray(obs(4, 0))
    t = hac.hindsight_action_transition(obs_tm1, obs_t, jnp.asarray(goal, jnp.float32),
                                        ENV, PARAMS)
    np.testing.assert_allclose(t.action, position(4, 0))
    assert float(t.reward) == reward and bool(t.terminated) == (reward == 0.0)
    np.testing.assert_allclose(t.obs[4:], goal)
    np.testing.assert_allclose(t.next_obs[4:], goal)
