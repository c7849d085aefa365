"""Net2Net growth (jaxrl.net2net): function preservation, shapes, optimizer-state rules.

References: a plain NumPy forward pass of the actor-critic MLP (independent of Flax), the
network rebuilt at the new width by `make_actor_critic` / `make_q_network` (same tree
structure and shapes), and the gradients of the grown network (the mapped Adam moments
must equal one Adam step taken on the grown network).
"""

import dataclasses
import os

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl import net2net, networks, runner
from jaxrl.agents import dqn, ppo
from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec

SPEC = EnvSpec(obs_shape=(4,), discrete=True, num_actions=3)
IMAGE = EnvSpec(obs_shape=(5, 5, 2), discrete=True, num_actions=3)
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "6"))
ACT = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}


def _shapes(tree):
    return jax.tree.map(lambda a: a.shape, tree)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _numpy_forward(params, obs, activation):
    """Separate-torso actor-critic in NumPy: per chain, the pre-activations of every hidden
    layer, the activations, and the head outputs."""
    p = jax.tree.map(np.asarray, params)["params"]
    out = {}
    for torso, head in (("actor_torso", "PolicyHead_0"), ("critic_torso", "ValueHead_0")):
        h, acts = np.asarray(obs, np.float64), [np.asarray(obs, np.float64)]
        i = 0
        while f"Dense_{i}" in p[torso]:
            layer = p[torso][f"Dense_{i}"]
            h = ACT[activation](h @ layer["kernel"] + layer["bias"])
            acts.append(h)
            i += 1
        layer = p[head]["Dense_0"]
        out[torso] = (acts, h @ layer["kernel"] + layer["bias"])
    return out


widths = st.lists(st.integers(1, 6), min_size=1, max_size=3)


# Few examples: every new shape recompiles the eager ops (4-9 s an example on the shared
# 2-core machine); `HYPOTHESIS_EXAMPLES=30` for a longer search.
@hypothesis.settings(max_examples=EXAMPLES, deadline=None)
@hypothesis.given(sizes=widths, data=st.data(), seed=st.integers(0, 2**16),
                  activation=st.sampled_from(["relu", "tanh"]), shared=st.booleans())
def test_widen_and_deepen_preserve_the_mlp_function(sizes, data, seed, activation, shared):
    index = data.draw(st.integers(0, len(sizes) - 1))
    width = sizes[index] + data.draw(st.integers(0, 5))
    key = jax.random.key(seed)
    net = networks.make_actor_critic(SPEC, sizes, activation, shared_trunk=shared)
    params = net.init(key)
    # Random parameters, not just the init: scale every leaf so the biases are non-zero.
    params = jax.tree.map(lambda x, k: x + 0.3 * jax.random.normal(k, x.shape), params,
                          jax.tree.unflatten(jax.tree.structure(params), list(
                              jax.random.split(key, len(jax.tree.leaves(params))))))
    obs = jax.random.normal(jax.random.fold_in(key, 1), (16, 4)) * 2.0
    new_sizes = list(sizes)
    new_sizes[index] = width
    wide = net2net.widen(params, index, width, jax.random.fold_in(key, 2))
    wide_net = networks.make_actor_critic(SPEC, new_sizes, activation, shared_trunk=shared)
    assert _shapes(wide) == _shapes(wide_net.init(key))
    assert net2net.hidden_sizes(wide) == tuple(new_sizes)
    before, after = net.apply(params, obs), wide_net.apply(wide, obs)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)

    deep = net2net.deepen(wide, index, activation)
    deep_sizes = new_sizes[:index + 1] + [width] + new_sizes[index + 1:]
    deep_net = networks.make_actor_critic(SPEC, deep_sizes, activation, shared_trunk=shared)
    assert _shapes(deep) == _shapes(deep_net.init(key))
    deep_out = deep_net.apply(deep, obs)
    if activation == "relu":
        bound = 1e-6  # float32 rounding: exact for ReLU
    else:
        # tanh: per-unit error <= eps^2 |h|^3 / 3 <= eps^2 / 3 (eps = 1e-2, |h| <= 1), then
        # at most multiplied by the row sums of |W| of the later layers (1-Lipschitz tanh),
        # checked here against the crude product of those sums.
        later = [np.abs(np.asarray(w)) for w in jax.tree.leaves(wide) if np.ndim(w) == 2]
        gain = np.prod([w.sum(axis=0).max() for w in later])
        bound = (1e-2 ** 2 / 3) * max(gain, 1.0) + 1e-6
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(deep_out)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=bound)


@hypothesis.settings(max_examples=max(EXAMPLES // 2, 1), deadline=None)
@hypothesis.given(channels=st.integers(1, 4), extra=st.integers(1, 4), hidden=st.integers(1, 6),
                  seed=st.integers(0, 2**16), conv=st.booleans())
def test_widen_preserves_the_cnn_function(channels, extra, hidden, seed, conv):
    key = jax.random.key(seed)
    torso = networks.CNN((hidden,), "relu", channels=(channels,))
    net = networks.make_actor_critic(IMAGE, (hidden,), "relu", torso=torso)
    params = net.init(key)
    obs = jax.random.normal(jax.random.fold_in(key, 1), (6, 5, 5, 2))
    wide = net2net.widen(params, 0, (channels if conv else hidden) + extra,
                         jax.random.fold_in(key, 2), conv=conv)
    new_torso = (networks.CNN((hidden,), "relu", channels=(channels + extra,)) if conv
                 else networks.CNN((hidden + extra,), "relu", channels=(channels,)))
    new_net = networks.make_actor_critic(IMAGE, (hidden,), "relu", torso=new_torso)
    assert _shapes(wide) == _shapes(new_net.init(key))
    for a, b in zip(jax.tree.leaves(net.apply(params, obs)),
                    jax.tree.leaves(new_net.apply(wide, obs))):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    deep = net2net.deepen(wide, 0, "relu")
    deep_net = networks.make_actor_critic(IMAGE, (hidden,), "relu", torso=networks.CNN(
        (hidden, hidden) if conv else (hidden + extra,) * 2, "relu",
        channels=(channels + extra,) if conv else (channels,)))
    for a, b in zip(jax.tree.leaves(net.apply(params, obs)),
                    jax.tree.leaves(deep_net.apply(deep, obs))):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@hypothesis.settings(max_examples=EXAMPLES, deadline=None)
@hypothesis.given(sizes=widths, seed=st.integers(0, 2**16),
                  activation=st.sampled_from(["relu", "tanh"]), noise=st.floats(1e-3, 0.1))
def test_noise_moves_outputs_within_the_interval_bound(sizes, seed, activation, noise):
    key = jax.random.key(seed)
    net = networks.make_actor_critic(SPEC, sizes, activation)
    params = net.init(key)
    obs = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (16, 4)))
    width = sizes[0] + 3
    exact = net2net.widen(params, 0, width, jax.random.fold_in(key, 2))
    noisy = net2net.widen(params, 0, width, jax.random.fold_in(key, 2), noise=noise)
    ref, out = _numpy_forward(exact, obs, activation), _numpy_forward(noisy, obs, activation)
    p = jax.tree.map(np.asarray, exact)["params"]
    q = jax.tree.map(np.asarray, noisy)["params"]
    for torso, head in (("actor_torso", "PolicyHead_0"), ("critic_torso", "ValueHead_0")):
        dw = np.abs(q[torso]["Dense_0"]["kernel"] - p[torso]["Dense_0"]["kernel"])
        assert dw.max() > 0  # the noise was applied
        delta = np.abs(obs) @ dw  # [16, width]: bound on the pre-activation change
        i = 1
        while f"Dense_{i}" in p[torso]:
            delta = delta @ np.abs(p[torso][f"Dense_{i}"]["kernel"])
            i += 1
        delta = delta @ np.abs(p[head]["Dense_0"]["kernel"])
        actual = np.abs(out[torso][1] - ref[torso][1])
        assert np.all(actual <= delta * (1 + 1e-4) + 1e-6), (actual.max(), delta.max())


def test_numpy_reference_agrees_with_flax():
    net = networks.make_actor_critic(SPEC, (5, 3), "tanh")
    params = net.init(jax.random.key(0))
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    logits, value = net.apply(params, obs)
    ref = _numpy_forward(params, obs, "tanh")
    np.testing.assert_allclose(logits, ref["actor_torso"][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, ref["critic_torso"][1][:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tx", [optax.adam(1e-3), optax.chain(
    optax.clip_by_global_norm(100.0), optax.adam(1e-3))], ids=["adam", "clipped_adam"])
def test_mapped_adam_moments_equal_a_step_on_the_grown_network(tx):
    net = networks.make_actor_critic(SPEC, (4, 3), "tanh")
    obs = jax.random.normal(jax.random.key(1), (32, 4))

    def loss(params, network):
        logits, value = network.apply(params, obs)
        return jnp.sum(logits ** 2) + jnp.sum(jnp.sin(value))

    params = net.init(jax.random.key(0))
    _, opt_state = tx.update(jax.grad(loss)(params, net), tx.init(params), params)
    step = net2net.Growth("widen", 0, 7)
    key = jax.random.key(5)
    grown = net2net.grow_params(params, step, key)
    grown_net = networks.make_actor_critic(SPEC, (7, 3), "tanh")
    mapped = net2net.grow_opt_state(opt_state, tx.init(grown), step, key)
    _, expected = tx.update(jax.grad(loss)(grown, grown_net), tx.init(grown), grown)
    for a, b in zip(jax.tree.leaves(mapped), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)
    reset = net2net.grow_opt_state(opt_state, tx.init(grown), step, key, rule="reset")
    assert _max_diff(reset, tx.init(grown)) == 0.0


def test_deepened_moments_are_zero_in_the_new_layer_and_kept_elsewhere():
    net = networks.make_actor_critic(SPEC, (4,), "relu")
    params = net.init(jax.random.key(0))
    tx = optax.adam(1e-3)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, tx.init(params), params)
    step = net2net.Growth("deepen", 0, activation="relu")
    grown = net2net.grow_params(params, step, jax.random.key(0))
    mu = net2net.grow_opt_state(opt_state, tx.init(grown), step, jax.random.key(0))[0].mu
    assert float(jnp.abs(mu["params"]["actor_torso"]["Dense_1"]["kernel"]).max()) == 0.0
    np.testing.assert_allclose(mu["params"]["actor_torso"]["Dense_0"]["kernel"], 0.1)
    np.testing.assert_allclose(mu["params"]["PolicyHead_0"]["Dense_0"]["kernel"], 0.1)


@pytest.fixture(scope="module")
def trained_ppo():
    config = ppo.Config(env="CartPole-v1", num_envs=4, rollout_len=32, total_timesteps=1024,
                        hidden_sizes=(8, 8), anneal_lr=False)
    state, _ = jax.jit(runner.make_train(ppo.AGENT, config))(jax.random.key(0),
                                                           ppo.HParams.create())
    return config, state


def _cartpole_obs(n):
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 4)) * np.array([1.0, 1.0, 0.1, 1.0])).astype(np.float32)


def test_ppo_greedy_actions_unchanged_after_widening(trained_ppo):
    config, state = trained_ppo
    setup = ppo.AGENT.setup(config)
    obs = _cartpole_obs(512)
    grown = net2net.widen(net2net.widen(state.params, 0, 20, jax.random.key(1)), 1, 13,
                          jax.random.key(2))
    big = ppo.AGENT.setup(dataclasses.replace(config, hidden_sizes=(20, 13)))
    before = np.asarray(jax.vmap(lambda o: ppo.AGENT.greedy_act(state.params, o, None, setup))(obs))
    after = np.asarray(jax.vmap(lambda o: ppo.AGENT.greedy_act(grown, o, None, big))(obs))
    assert len(set(before.tolist())) == 2  # the check covers both actions
    np.testing.assert_array_equal(after, before)


@pytest.mark.slow
def test_dqn_greedy_actions_unchanged_after_widening_and_deepening():
    config = dqn.Config(env="CartPole-v1", hidden_sizes=(8, 8), total_timesteps=2_000,
                        rollout_len=100, buffer_size=1_000, learning_starts=500,
                        minibatch_size=32)
    state, _ = jax.jit(runner.make_train(dqn.AGENT, config))(jax.random.key(0),
                                                           dqn.HParams.create())
    params = net2net.deepen(net2net.widen(state.params, 1, 16, jax.random.key(1)), 1, "relu")
    setup = dqn.AGENT.setup(config)
    big = dqn.AGENT.setup(dataclasses.replace(config, hidden_sizes=(8, 16, 16)))
    obs = _cartpole_obs(512)
    before = np.asarray(jax.vmap(lambda o: dqn.AGENT.greedy_act(state.params, o, None, setup))(obs))
    after = np.asarray(jax.vmap(lambda o: dqn.AGENT.greedy_act(params, o, None, big))(obs))
    assert len(set(before.tolist())) == 2
    np.testing.assert_array_equal(after, before)


def test_bad_requests_are_config_errors():
    params = networks.make_actor_critic(SPEC, (4, 4)).init(jax.random.key(0))
    with pytest.raises(ConfigError, match="layer index must be in 0..1"):
        net2net.widen(params, 2, 8, jax.random.key(0))
    with pytest.raises(ConfigError, match="width must be at least the current 4"):
        net2net.widen(params, 0, 3, jax.random.key(0))
    with pytest.raises(ConfigError, match="activation must be one of"):
        net2net.deepen(params, 0, "sigmoid")
    with pytest.raises(ConfigError, match="net2net grows ActorCritic"):
        net2net.widen({"params": {"Dense_0": {}}}, 0, 8, jax.random.key(0))
