"""The xland-minigrid adapter (`jaxrl.envs.minigrid`): the checks every gymnax env passes
(spaces, reset/step shapes and dtypes, auto-reset with the final observation kept,
terminated apart from truncated), the observation against xland-minigrid's own view, the
one-line error without the extra, and PPO and DQN training on a task."""

from __future__ import annotations

import builtins

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs, runner
from jaxrl.agents import dqn, ppo
from jaxrl.config import ConfigError
from jaxrl.envs import minigrid

xminigrid = pytest.importorskip("xminigrid")
KEY = jax.random.key(0)
ENV_ID = "minigrid/Empty-5x5"


@pytest.fixture(scope="module")
def empty():
    return envs.make(ENV_ID)


def test_every_task_is_registered_and_the_spaces_match_the_view(empty):
    assert {f"minigrid/{t}" for t in minigrid.TASKS} <= set(envs.list_envs())
    assert {f"MiniGrid-{t}" for t in minigrid.TASKS} <= set(
        xminigrid.registered_environments())
    env, params = empty
    spec = envs.env_spec(env, params)
    assert spec.discrete and spec.num_actions == 6
    assert spec.obs_shape == (7, 7, minigrid._import()[1].NUM_TILES
                              + minigrid._import()[1].NUM_COLORS)
    obs, state = env.reset(KEY, params)
    assert obs.dtype == jnp.float32 and env.observation_space(params).contains(obs)
    # One-hot: exactly one tile and one colour per cell, matching xland-minigrid's view
    # (but for the agent's own cell, which shows the empty pocket).
    tiles = int(minigrid._import()[1].NUM_TILES)
    np.testing.assert_array_equal(obs[..., :tiles].sum(-1), 1.0)
    np.testing.assert_array_equal(obs[..., tiles:].sum(-1), 1.0)
    view = np.asarray(state.timestep.observation)
    decoded = np.argmax(np.asarray(obs[..., :tiles]), -1)
    mask = np.ones((7, 7), bool)
    mask[6, 3] = False
    np.testing.assert_array_equal(decoded[mask], view[..., 0][mask])


def test_reaching_the_goal_terminates_with_minigrid_reward_and_auto_resets(empty):
    env, params = empty
    _, state = env.reset(KEY, params)
    # Empty-5x5: the agent starts at (1, 1) facing right, the goal is at (3, 3):
    # forward, forward, turn right, forward, forward.
    forward, right = 0, 1  # xland-minigrid's action ids (1 turns clockwise)
    assert int(state.timestep.state.agent.direction) == 1
    rewards, terms, truncs = [], [], []
    for i, a in enumerate([forward, forward, right, forward, forward]):
        obs, state, reward, terminated, truncated, info = env.step(
            jax.random.fold_in(KEY, i), state, jnp.int32(a), params)
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated))
    assert terms == [False] * 4 + [True] and truncs == [False] * 5
    max_steps = params.max_steps_in_episode
    np.testing.assert_allclose(rewards, [0, 0, 0, 0, 1 - 0.9 * 5 / max_steps], rtol=1e-6)
    # Auto-reset: a fresh episode, the final observation kept in `info`.
    assert int(state.time) == 0
    assert not np.array_equal(info["final_observation"], obs)


def test_the_time_limit_truncates_and_never_terminates(empty):
    env, params = empty
    params = params.replace(max_steps_in_episode=3)
    _, state = env.reset(KEY, params)
    turn = 1
    outs = [env.step(KEY, state, jnp.int32(turn), params)]
    for _ in range(2):
        outs.append(env.step(KEY, outs[-1][1], jnp.int32(turn), params))
    assert [bool(o[3]) for o in outs] == [False] * 3
    assert [bool(o[4]) for o in outs] == [False, False, True]


def test_the_adapter_vmaps_and_jits(empty):
    env, params = empty
    keys = jax.random.split(KEY, 8)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    out = step(keys, state, jnp.arange(8) % 6, params)
    assert out[0].shape == (8,) + obs.shape[1:] and out[2].shape == (8,)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    real = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name.startswith("xminigrid"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(ConfigError, match=r"jaxrl\[minigrid\]"):
        envs.make("minigrid/DoorKey-8x8")
    with pytest.raises(ConfigError, match="allowed"):
        minigrid.MiniGrid("DoorKey-7x7")


@pytest.mark.parametrize("agent,config", [
    (ppo.AGENT, ppo.Config(env=ENV_ID, num_envs=4, rollout_len=8, total_timesteps=4 * 8 * 2,
                           num_minibatches=1, num_epochs=1, hidden_sizes=(16,), torso="cnn")),
    pytest.param(dqn.AGENT, dqn.Config(env=ENV_ID, num_envs=2, rollout_len=8,
                                       total_timesteps=2 * 8 * 2, buffer_size=64,
                                       minibatch_size=8, learning_starts=8, train_frequency=4,
                                       hidden_sizes=(16,), torso="cnn"),
                 marks=pytest.mark.slow),  # every discrete agent: the slow test below
], ids=["ppo", "dqn"])
def test_agents_train_on_a_minigrid_task(agent, config):
    state, metrics = jax.jit(runner.make_train(agent, config))(KEY, agent.HParams.create())
    assert np.isfinite(np.asarray(metrics["loss"] if "loss" in metrics else 0.0)).all()
    for leaf in jax.tree.leaves(state.params):
        assert np.isfinite(np.asarray(leaf)).all()


DISCRETE = ("reinforce", "ppo", "ppo-kl", "a2c", "trpo", "dqn", "c51", "rainbow")


@pytest.mark.slow
@pytest.mark.parametrize("name", DISCRETE)
def test_every_discrete_agent_runs_on_a_minigrid_task(name):
    import dataclasses

    from jaxrl.agents import REGISTRY

    agent = REGISTRY[name]
    small = dict(env=ENV_ID, num_envs=2, rollout_len=8, total_timesteps=2 * 8 * 2,
                 hidden_sizes=(16,), torso="cnn", buffer_size=64, minibatch_size=8,
                 learning_starts=8, train_frequency=4, num_minibatches=2)
    fields = {f.name for f in dataclasses.fields(agent.Config)}
    config = agent.Config(**{k: v for k, v in small.items() if k in fields})
    state, metrics = jax.jit(runner.make_train(agent, config))(KEY, agent.HParams.create())
    for leaf in jax.tree.leaves(state.params):
        assert np.isfinite(np.asarray(leaf)).all()
    assert np.asarray(metrics["episode/count"]).shape == (config.num_iterations,)
