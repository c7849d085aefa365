"""The agent contract's extension points, each used from outside the agents it extends:
add-ons that transform collected transitions and hold env params in the agent state (a
curriculum as a value), a learner that trains from a dataset, an agent made of agents."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import experiment, rollout, runner, testing
from jaxrl.agent import Addon, ConfigError
from jaxrl.agents import dqn, ppo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "external"))
import behaviour_cloning  # noqa: E402 - agents outside the package
import distill  # noqa: E402

PPO_TINY = ppo.Config(env="CartPole-v1", num_envs=4, rollout_len=8, total_timesteps=4 * 8 * 5,
                      num_minibatches=2, num_epochs=2, hidden_sizes=(16,))
DQN_TINY = dqn.Config(env="CartPole-v1", num_envs=2, rollout_len=8, total_timesteps=2 * 8 * 5,
                      buffer_size=64, minibatch_size=8, learning_starts=16, train_frequency=4,
                      hidden_sizes=(16,))
CASES = {"ppo": (ppo.AGENT, PPO_TINY), "dqn": (dqn.AGENT, DQN_TINY)}


def reward_addon(new_reward=None):
    """Counts the transitions it sees and records their batch shape; replaces their
    rewards with `new_reward` (None: leaves them)."""

    def init(key, setup):
        return {"seen": jnp.int32(0), "env_reward": jnp.float32(0.0)}

    def transform(astate, transitions, key, setup):
        astate = {"seen": astate["seen"] + transitions.reward.size,
                  "env_reward": astate["env_reward"] + transitions.reward.sum()}
        if new_reward is not None:
            transitions = transitions.replace(
                reward=jnp.full_like(transitions.reward, new_reward))
        return transitions, astate

    return Addon("count", init=init, transform=transform)


def run(agent, config, seeds=2):
    train = jax.jit(jax.vmap(runner.make_train(agent, config), in_axes=(0, None)))
    return train(jax.random.split(jax.random.key(0), seeds), agent.HParams.create())


@pytest.mark.parametrize("name", list(CASES))
def test_an_identity_transform_sees_every_transition_and_changes_nothing(name):
    agent, config = CASES[name]
    plain, _ = run(agent, config)
    state, _ = run(agent.extend(f"{name}-count", reward_addon()), config)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    assert (state.addons["count"]["seen"] == config.total_timesteps).all()
    # CartPole pays 1 per step: the transform saw the env's rewards.
    np.testing.assert_array_equal(state.addons["count"]["env_reward"],
                                  float(config.total_timesteps))


def test_a_reward_transform_changes_what_is_learned_but_not_the_logged_return():
    agent = dqn.AGENT.extend("dqn-minus-three", reward_addon(-3.0))
    state, metrics = run(agent, DQN_TINY)
    buffer = state.buffer
    stored = np.asarray(buffer.storage.reward)[np.asarray(buffer.size)[:, None] >
                                               np.arange(buffer.storage.reward.shape[1])]
    assert stored.size and (stored == -3.0).all()
    # The logged return is the env's: CartPole pays 1 per step, so return == length.
    done = np.isfinite(np.asarray(metrics["episode/return"]))
    np.testing.assert_allclose(np.asarray(metrics["episode/return"])[done],
                               np.asarray(metrics["episode/length"])[done])


def curriculum(start, grow):
    """CartPole's episode cap as a value in the agent state: `start` steps, `grow` more
    after every iteration (a schedule acting between iterations)."""

    def env_params(astate):
        return astate["params"].replace(max_steps_in_episode=astate["limit"])

    def after(astate, metrics, key, setup):
        return ({**astate, "limit": astate["limit"] + grow},
                {**metrics, "curriculum/limit": astate["limit"].astype(jnp.float32)})

    return Addon("curriculum",
                 init=lambda key, setup: {"params": setup.env_params,
                                          "limit": jnp.int32(start)},
                 env_params=env_params, after=after)


@pytest.mark.parametrize("name", list(CASES))
def test_env_params_in_the_state_follow_a_schedule(name):
    agent, config = CASES[name]
    state, metrics = run(agent.extend(f"{name}-curriculum", curriculum(3, 4)), config)
    limit = np.asarray(metrics["curriculum/limit"])  # [S, I]
    np.testing.assert_array_equal(limit[0], 3 + 4 * np.arange(config.num_iterations))
    lengths = np.asarray(metrics["episode/length"])
    done = np.isfinite(lengths)
    assert (lengths[done] <= limit[done] + 1e-6).all()
    # CartPole's shortest random episode is longer than 3 steps: every first-iteration
    # episode was cut by the curriculum's cap.
    first = lengths[:, 0]
    assert np.isfinite(first).all() and (first == 3).all()


def test_an_extended_agent_checkpoints_its_addon_state_and_resumes(tmp_path):
    agent = ppo.AGENT.extend("ppo-curriculum", curriculum(3, 4))
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    hparams = ppo.HParams.create()
    experiment.train(agent, PPO_TINY, hparams, whole, num_seeds=2, chunk_iterations=2,
                     progress=False, quiet=True)

    with pytest.raises(KeyboardInterrupt):
        experiment.train(agent, PPO_TINY, hparams, cut, num_seeds=2, chunk_iterations=2,
                         progress=False, quiet=True, callbacks=[testing.StopAt(2)])
    experiment.resume(cut, {agent.name: agent}, progress=False, quiet=True)
    with open(os.path.join(whole, "metrics.jsonl")) as a, \
            open(os.path.join(cut, "metrics.jsonl")) as b:
        assert a.read() == b.read()


def test_addon_names_are_checked():
    with pytest.raises(ConfigError, match="unique"):
        ppo.AGENT.extend("x", reward_addon(), reward_addon())
    with pytest.raises(ConfigError, match="env_params"):
        ppo.AGENT.extend("x", curriculum(1, 1), curriculum(1, 1)._replace(name="other"))


def expert(params, obs, key):
    """A hand-written CartPole controller: push toward the pole's lean, anticipating its
    swing (`params` and `key` unused)."""
    return (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32)


def expert_dataset(size=4096, num_envs=16):
    """`({"obs": [size, 4], "action": [size]}, the expert's mean return)`: the states the
    controller visits and its actions there."""
    from jaxrl.agent import make_env
    env, env_params, _ = make_env("CartPole-v1")
    env_state, obs = rollout.reset_envs(env, env_params, jax.random.key(0), num_envs)
    play = rollout.make_rollout(env, env_params, expert, size // num_envs)
    _, _, traj, _ = jax.jit(play)(None, env_state, obs, jax.random.key(1))
    returns = rollout.make_evaluate(env, env_params, expert, 4, 501)(None, jax.random.key(2))
    return ({"obs": traj.obs.reshape(size, -1), "action": traj.action.reshape(size)},
            float(np.mean(returns)))


def test_a_learner_trains_from_a_dataset():
    data, expert_return = expert_dataset()
    agent = behaviour_cloning.make_agent(data)
    config = agent.Config(env="CartPole-v1", total_timesteps=8 * 8 * 40, hidden_sizes=(32,))
    state, metrics = run(agent, config)
    losses = np.asarray(metrics["loss/total"])
    assert (losses[:, -5:].mean(-1) < 0.5 * losses[:, :5].mean(-1)).all(), losses
    returns = experiment.evaluate(agent, agent.setup(config), state.params, num_episodes=4,
                                  seed=0)
    # The clone plays close to the controller it copies (both cap at 500 steps).
    assert expert_return > 400 and returns.mean() > 0.8 * expert_return, (
        expert_return, returns)


def test_an_agent_made_of_agents_trains_checkpoints_and_evaluates(tmp_path):
    agent = distill.make_agent(ppo.AGENT)
    config = ppo.Config(env="CartPole-v1", num_envs=16, rollout_len=32,
                        total_timesteps=16 * 32 * 40)
    _, metrics = run(agent, config)
    agreement = np.asarray(metrics["student/agreement"])
    # The student comes to act as its teacher does on the teacher's states.
    assert (agreement[:, -5:].mean(-1) > 0.8).all(), agreement[:, -5:]
    out = str(tmp_path / "distill")
    experiment.train(agent, PPO_TINY, ppo.HParams.create(), out, num_seeds=2,
                     chunk_iterations=2, progress=False, quiet=True)
    ev = experiment.evaluate_run(out, {agent.name: agent}, episodes=2)
    assert ev.returns.shape == (2, 2) and np.isfinite(ev.returns).all()
