"""The sparse-reward mazes (`jaxrl.envs.maze`): spaces, documented dynamics on hand-built
states, terminated kept apart from truncated through gymnax's auto-resetting `step`,
params as vmappable values compiled once, and PPO training on each registered id."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs, runner, testing
from jaxrl.agents import ppo
from jaxrl.config import ConfigError
from jaxrl.envs.maze import DiscreteMaze, MazeState, PointMaze, PointState, carve_maze

# A bent corridor; the shortest path from S to G, by hand:
# (1,1) -> (1,2) -> (1,3) -> (2,3) -> (3,3): 4 moves.
LAYOUT = """
#####
#S..#
###.#
#..G#
#####
"""
KEY = jax.random.key(0)


def step(env, state, action, params, key=KEY):
    return env.step(key, state, jnp.asarray(action), params)


@pytest.mark.parametrize("env_id,obs_shape,action_shape", [
    ("Maze-9x9-v0", (9, 9, 3), ()), ("Maze-15x15-v0", (15, 15, 3), ()),
    ("PointMaze-v0", (6,), (2,))])
def test_reset_and_step_shapes_and_dtypes(env_id, obs_shape, action_shape):
    env, params = envs.make(env_id)
    obs, state = env.reset(KEY, params)
    assert obs.shape == obs_shape and obs.dtype == jnp.float32
    action = env.action_space(params).sample(KEY)
    assert action.shape == action_shape
    obs, state, reward, terminated, truncated, info = env.step(KEY, state, action, params)
    assert obs.shape == obs_shape and obs.dtype == jnp.float32
    assert reward.shape == () and reward.dtype == jnp.float32
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert info["final_observation"].shape == obs_shape
    assert env.observation_space(params).contains(obs)


def test_image_and_flat_observations_show_walls_agent_and_goal():
    env = DiscreteMaze(LAYOUT)
    params = env.default_params
    obs, _ = env.reset(KEY, params)
    np.testing.assert_array_equal(obs[..., 0], env.walls)
    assert obs[1, 1, 1] == 1 and obs[..., 1].sum() == 1
    assert obs[3, 3, 2] == 1 and obs[..., 2].sum() == 1
    flat, _ = DiscreteMaze(LAYOUT, observation="flat").reset(KEY, params)
    np.testing.assert_allclose(flat, [0.25, 0.25, 0.75, 0.75])


def test_walls_block_and_free_cells_are_entered():
    env = DiscreteMaze(LAYOUT)
    params = env.default_params
    state = MazeState(pos=jnp.asarray([1, 1], jnp.int32), time=0)
    for blocked in (0, 2, 3):  # up, down, left: all walls
        _, after, *_ = step(env, state, blocked, params)
        np.testing.assert_array_equal(after.pos, [1, 1])
    _, after, reward, terminated, truncated, _ = step(env, state, 1, params)
    np.testing.assert_array_equal(after.pos, [1, 2])
    assert reward == 0 and not terminated and not truncated
    assert int(after.time) == 1


def test_reaching_the_goal_pays_one_terminates_and_auto_resets():
    env = DiscreteMaze(LAYOUT)
    params = env.default_params
    state = MazeState(pos=jnp.asarray([2, 3], jnp.int32), time=5)
    assert int(env.distance(state, params)) == 1 and not env.success(state, params)
    obs, after, reward, terminated, truncated, info = step(env, state, 2, params)
    assert reward == 1.0 and terminated and not truncated
    # The pre-reset observation shows the agent on the goal; the returned one is a reset.
    assert info["final_observation"][3, 3, 1] == 1
    np.testing.assert_array_equal(after.pos, [1, 1])
    assert int(after.time) == 0 and obs[1, 1, 1] == 1


def test_the_time_limit_truncates_without_terminating():
    env = DiscreteMaze(LAYOUT)
    params = env.make_params(max_steps_in_episode=3)
    _, state = env.reset(KEY, params)
    flags = []
    for _ in range(3):
        _, state, reward, terminated, truncated, _ = step(env, state, 0, params)  # a wall
        flags.append((float(reward), bool(terminated), bool(truncated)))
    assert flags == [(0.0, False, False), (0.0, False, False), (0.0, False, True)]


def test_shortest_path_distance_and_the_carved_maze():
    env = DiscreteMaze(LAYOUT)
    start = MazeState(pos=jnp.asarray([1, 1], jnp.int32), time=0)
    assert int(env.distance(start, env.default_params)) == 4
    walls = carve_maze(15, seed=0)
    # A perfect maze on a 7x7 lattice of cells: 49 cells joined by 48 knocked-out walls.
    assert (~walls).sum() == 49 + 48 and walls[0].all() and walls[:, -1].all()
    big = DiscreteMaze(size=15)
    assert (big.dist[big.dist >= 0] >= 0).all()
    # Every free cell is reachable from every other (one connected component).
    free = np.flatnonzero(~walls.reshape(-1))
    assert (big.dist[np.ix_(free, free)] >= 0).all()


def test_start_spread_draws_starts_near_the_start_and_slip_randomises_moves():
    env = DiscreteMaze(size=9)
    params = env.make_params(start=(1, 1), start_spread=3)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 200), params)
    d = env.dist[1 * 9 + 1, states.pos[:, 0] * 9 + states.pos[:, 1]]
    assert (d <= 3).all() and len(np.unique(np.asarray(d))) == 4  # 0, 1, 2, 3 all drawn
    slippery = env.make_params(start=(1, 1), slip=1.0)
    _, state = env.reset(KEY, slippery)
    keys = jax.random.split(KEY, 200)
    moved = jax.vmap(lambda k: step(env, state, 0, slippery, k)[1].pos)(keys)
    # Action "up" is a wall; with slip 1 the random moves sometimes go down instead.
    assert (np.asarray(moved) == [2, 1]).all(-1).any()


def test_params_are_validated_on_the_host():
    env = DiscreteMaze(LAYOUT)
    with pytest.raises(ConfigError, match="start must be a free"):
        env.make_params(start=(0, 0))
    with pytest.raises(ConfigError, match="goal must be a free"):
        env.make_params(goal=(9, 9))
    with pytest.raises(ConfigError, match="slip"):
        env.make_params(slip=1.5)
    with pytest.raises(ConfigError, match="size"):
        DiscreteMaze(size=8)
    with pytest.raises(ConfigError, match="observation"):
        DiscreteMaze(size=9, observation="pixels")
    with pytest.raises(ConfigError, match="goal must be"):
        PointMaze().make_params(goal=(2.0, 0.5))


def maze_and_params(goals):
    env = DiscreteMaze(LAYOUT)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[env.make_params(goal=g) for g in goals])
    return env, stacked


def test_params_vmap_over_goals_and_match_separate_calls():
    env, params = maze_and_params([(3, 3), (1, 2), (3, 1)])

    def one(params):
        obs, state = env.reset(KEY, params)
        _, _, reward, terminated, _, info = env.step(KEY, state, jnp.int32(1), params)
        return obs, reward, terminated

    obs, reward, terminated = jax.vmap(one)(params)
    # Only the second goal is one move right of the start.
    np.testing.assert_array_equal(reward, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(terminated, [False, True, False])
    for i in range(3):
        single = one(jax.tree.map(lambda x: x[i], params))
        np.testing.assert_array_equal(obs[i], single[0])


def maze_step(key, state, action, params):
    return ENV.step(key, state, action, params)


ENV = DiscreteMaze(LAYOUT)


def test_step_compiles_once_over_different_params_values():
    _, state = ENV.reset(KEY, ENV.default_params)
    arg_sets = [(jax.random.key(i), state, jnp.int32(i % 4), ENV.make_params(goal=g))
                for i, g in enumerate([(3, 3), (1, 2), (3, 1)])]
    outputs = testing.assert_compiles_once(maze_step, arg_sets)
    assert [float(o[2]) for o in outputs] == [0.0, 1.0, 0.0]


def test_point_maze_wall_blocks_and_the_way_around_is_open():
    env = PointMaze()
    params = env.default_params
    state = PointState(pos=jnp.asarray([0.45, 0.3]), vel=jnp.zeros(2), time=0)
    for _ in range(5):  # push right, into the wall at x = 0.5 (y in [0, 0.6])
        _, state, reward, terminated, truncated, _ = step(env, state, [1.0, 0.0], params)
        assert float(state.pos[0]) < 0.5 and reward == -1.0 and not terminated
    above = PointState(pos=jnp.asarray([0.45, 0.8]), vel=jnp.zeros(2), time=0)
    for _ in range(5):
        _, above, *_ = step(env, above, [1.0, 0.0], params)
    assert float(above.pos[0]) > 0.5


def test_point_maze_box_clips_and_dynamics_follow_the_docstring():
    env = PointMaze(walls=())
    params = env.default_params
    state = PointState(pos=jnp.asarray([0.5, 0.02]), vel=jnp.asarray([0.2, 0.0]), time=0)
    _, state, *_ = step(env, state, [1.0, -1.0], params)
    # vel = 0.5 * 0.2 + 0.5 * 1 * 1 = 0.6 in x; y would go to 0.02 - 0.05 < 0: clipped, 0.
    np.testing.assert_allclose(state.vel, [0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(state.pos, [0.56, 0.0], atol=1e-6)


@pytest.mark.parametrize("zero_one,expected", [(False, 0.0), (True, 1.0)])
def test_point_maze_goal_reward_variants(zero_one, expected):
    env = PointMaze()
    params = env.make_params(goal=(0.8, 0.2), zero_one_reward=zero_one)
    state = PointState(pos=jnp.asarray([0.76, 0.2]), vel=jnp.zeros(2), time=0)
    _, _, reward, terminated, truncated, info = step(env, state, [1.0, 0.0], params)
    assert reward == expected and terminated and not truncated
    final = PointState(pos=info["final_observation"][:2], vel=jnp.zeros(2), time=0)
    assert env.success(final, params)
    far = PointState(pos=jnp.asarray([0.2, 0.2]), vel=jnp.zeros(2), time=0)
    assert float(step(env, far, [0.0, 0.0], params)[2]) == expected - 1.0


def test_point_maze_params_vmap_over_starts():
    env = PointMaze()
    params = jax.tree.map(lambda *xs: jnp.stack(xs), env.make_params(start=(0.1, 0.1)),
                          env.make_params(start=(0.9, 0.9)))
    obs, _ = jax.vmap(env.reset, in_axes=(None, 0))(KEY, params)
    np.testing.assert_allclose(obs[:, :2], [[0.1, 0.1], [0.9, 0.9]], atol=1e-6)


@pytest.mark.parametrize("env_id,torso", [("Maze-9x9-v0", "cnn"), ("Maze-15x15-v0", "mlp"),
                                          ("PointMaze-v0", "mlp")])
def test_ppo_trains_on_each_maze(env_id, torso):
    config = ppo.Config(env=env_id, torso=torso, num_envs=4, rollout_len=16,
                        total_timesteps=4 * 16 * 3, num_minibatches=2, num_epochs=1,
                        hidden_sizes=(16,))
    train = jax.jit(jax.vmap(runner.make_train(ppo.AGENT, config), in_axes=(0, None)))
    state, metrics = train(jax.random.split(KEY, 2), ppo.HParams.create())
    testing.assert_tree_finite(state.params, "params")
    assert metrics["loss/total"].shape == (2, 3) and np.isfinite(metrics["loss/total"]).all()
