"""The agent contract: a new agent is one file plus a registry line; setup is built once,
never inside a trace; layers point one way; users bring their own flax torsos."""

from __future__ import annotations

import ast
import importlib
import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import actor_critic, agents, experiment, runner, testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "external"))
import expected_sarsa  # noqa: E402 - an agent outside the package

SARSA = expected_sarsa.AGENT
REGISTRY = {"expected-sarsa": SARSA}  # the one registry line
TINY = dict(env="CartPole-v1", num_envs=4, rollout_len=8, total_timesteps=4 * 8 * 6,
            hidden_sizes=(16,))


def test_an_outside_agent_trains_checkpoints_and_resumes(tmp_path):
    config = SARSA.Config(**TINY)
    hparams = SARSA.HParams.create()
    whole = str(tmp_path / "whole")
    experiment.train(SARSA, config, hparams, whole, num_seeds=2, chunk_iterations=2,
                     progress=False, quiet=True)

    cut = str(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        experiment.train(SARSA, config, hparams, cut, num_seeds=2, chunk_iterations=2,
                         progress=False, quiet=True, callbacks=[testing.StopAt(2)])
    summary = experiment.resume(cut, REGISTRY, progress=False, quiet=True)
    assert summary["resumed_from_iteration"] == 2
    with open(os.path.join(whole, "metrics.jsonl")) as a, \
            open(os.path.join(cut, "metrics.jsonl")) as b:
        assert a.read() == b.read()
    with open(os.path.join(cut, "config.json")) as f:
        assert json.load(f)["agent"] == "expected-sarsa"
    ev = experiment.evaluate_run(cut, REGISTRY, episodes=3)
    assert ev.returns.shape == (2, 3) and np.isfinite(ev.returns).all()


def test_an_outside_agent_passes_jaxrls_checks():
    config = SARSA.Config(**TINY)
    hparams = SARSA.HParams.create()
    keys = jax.random.split(jax.random.key(3), 3)
    testing.assert_vmap_matches_separate(runner.make_train(SARSA, config), keys, hparams)
    state, outputs = testing.run_chunks_compiling_once(SARSA, config, hparams, 4)
    testing.assert_tree_finite(state.params, "params")
    assert int(state.step) == config.num_iterations
    # The update moves the parameters toward the expected-SARSA target on a fixed batch.
    setup = SARSA.setup(config)
    state = SARSA.init(jax.random.key(0), setup, hparams)
    run = jax.jit(lambda s, k: SARSA.iteration(s, k, hparams, setup))
    losses = [float(run(state, jax.random.key(1))[1]["loss/total"])]
    assert np.isfinite(losses).all()


def _raise(*args, **kwargs):
    raise AssertionError("setup called inside a traced function")


@pytest.mark.parametrize("name", list(agents.ENTRIES))
def test_setup_is_never_called_inside_a_trace(name, monkeypatch):
    agent = agents.get(name)
    config = agent.Config(**_tiny_kwargs(agent))
    setup = agent.setup(config)
    hparams = agent.HParams.create()
    for module in [actor_critic, *(importlib.import_module(f"jaxrl.agents.{m}")
                                   for m in agents.MODULES)]:
        monkeypatch.setattr(module, "setup", _raise, raising=False)
    monkeypatch.setattr(runner, "parts", _raise)
    state = jax.eval_shape(lambda k: agent.init(k, setup, hparams), jax.random.key(0))
    out = jax.eval_shape(lambda s, k: agent.iteration(s, k, hparams, setup), state,
                         jax.random.key(1))
    assert "episode/return" in out[1]


def _tiny_kwargs(agent):
    fields = {f.name for f in __import__("dataclasses").fields(agent.Config)}
    kwargs = dict(num_envs=2, rollout_len=10, total_timesteps=40, hidden_sizes=(8,))
    if "buffer_size" in fields:
        kwargs.update(buffer_size=20, minibatch_size=4, learning_starts=0,
                      train_frequency=5)
    for name in ("num_minibatches", "value_minibatches"):
        if name in fields:
            kwargs[name] = 2
    if "num_samples" in fields:
        kwargs.update(num_samples=4, cem_elites=2)
    if "demos" in fields:  # imitation agents: a demos file and an expert run folder
        sys.path.insert(0, os.path.dirname(__file__))
        import imitation_data
        kwargs.update({k: v for k, v in imitation_data.files().items() if k in fields})
        if "capacity" in fields:
            kwargs["capacity"] = 2000
    return kwargs


def _imports(path):
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_layers_point_one_way():
    core = [f for f in os.listdir(os.path.join(ROOT, "jaxrl")) if f.endswith(".py")]
    for name in core:
        if name == "cli.py":
            continue
        imported = _imports(os.path.join(ROOT, "jaxrl", name))
        assert not any(i == "jaxrl.agents" or i.startswith("jaxrl.agents.")
                       for i in imported), f"jaxrl/{name} imports jaxrl.agents"
    off_policy_modules = [os.path.join(ROOT, "jaxrl", "off_policy.py"),
                          os.path.join(ROOT, "jaxrl", "continuous.py"),
                          *(os.path.join(ROOT, "agents", f"{m}.py")
                            for m in ("dqn", "ddpg", "continuous_q"))]
    for path in off_policy_modules:
        imported = _imports(path)
        assert "jaxrl.actor_critic" not in imported, f"{path} imports on-policy code"
        assert "jaxrl.agents.ppo" not in imported


class Torso(nn.Module):
    """A user's torso: a tanh layer then a relu layer, with its own parameter names."""

    @nn.compact
    def __call__(self, obs):
        x = nn.tanh(nn.Dense(32, name="mine_in")(obs))
        return nn.relu(nn.Dense(16, name="mine_out")(x))


@pytest.mark.parametrize("name", ["ppo", "dqn"])
def test_a_users_flax_module_trains_ppo_and_dqn(name):
    agent = agents.get(name)
    kwargs = dict(num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 8, torso=Torso())
    if name == "dqn":
        kwargs.update(buffer_size=128, minibatch_size=16, learning_starts=32,
                      train_frequency=4)
    config = agent.Config(**kwargs)
    state, metrics = jax.jit(runner.make_train(agent, config))(jax.random.key(0),
                                                               agent.HParams.create())
    paths = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_leaves_with_path(state.params)]
    assert any("mine_in" in p for p in paths) and any("mine_out" in p for p in paths), paths
    testing.assert_tree_finite(state.params, "params")
    loss = np.asarray(metrics["loss/total"])
    assert np.isfinite(loss).all() and np.ptp(loss[-4:]) > 0
    # The module's parameters moved: the gradient reached the user's layers.
    fresh = agent.init(jax.random.key(0), agent.setup(config), agent.HParams.create())
    moved = [not np.allclose(a, b) for (p, a), b in zip(
        jax.tree_util.tree_leaves_with_path(state.params), jax.tree.leaves(fresh.params))
        if "mine_in" in jax.tree_util.keystr(p)]
    assert moved and all(moved)


def test_cnn_torso_needs_image_observations():
    from jaxrl.config import ConfigError
    ppo = agents.get("ppo")
    with pytest.raises(ConfigError, match="torso cnn needs image observations"):
        ppo.setup(ppo.Config(torso="cnn"))
    with pytest.raises(ConfigError, match="torso must be one of mlp, cnn"):
        ppo.Config(torso="resnet")
