"""A2C: the loss by hand, its gradient equals PPO's at ratio 1, contracts, compile-once."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import actor_critic, runner, testing
from jaxrl.agents import a2c, ppo
from jaxrl.config import ConfigError

TINY = dict(num_envs=4, rollout_len=8, total_timesteps=4 * 8 * 5)


def fixed_policy_params(setup, logits_bias, value_bias):
    """Parameters whose policy logits (or mean) and value ignore the observation."""
    params = a2c.init(jax.random.key(0), setup, a2c.HParams.create()).params
    return testing.constant_actor_critic_params(params, logits_bias, value_bias)


@pytest.mark.parametrize("jit", [False, True])
def test_loss_hand_worked_example(jit):
    # pi = [0.25, 0.75] and V = 2 everywhere; vf 0.5, ent 0.01.
    setup = a2c.setup(a2c.Config(**TINY))
    params = fixed_policy_params(setup, [0.0, np.log(3.0)], 2.0)
    batch = actor_critic.Batch(obs=jnp.zeros((3, 4)), action=jnp.array([1, 0, 1]),
                               log_prob=jnp.zeros(3), value=jnp.zeros(3),
                               advantage=jnp.array([1.0, 2.0, -3.0]),
                               target=jnp.array([3.0, 1.0, 2.5]))
    loss = jax.jit(a2c.loss, static_argnames="setup") if jit else a2c.loss
    total, m = loss(params, batch, a2c.HParams.create(vf_coef=0.5, ent_coef=0.01),
                    setup=setup)
    actor = -(np.log(0.75) * 1.0 + np.log(0.25) * 2.0 + np.log(0.75) * -3.0) / 3
    value = 0.5 * ((2 - 3.0) ** 2 + (2 - 1.0) ** 2 + (2 - 2.5) ** 2) / 3
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(m["loss/actor"], actor, rtol=1e-5)
    np.testing.assert_allclose(m["loss/value"], value, rtol=1e-5)
    np.testing.assert_allclose(m["loss/entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(total, actor + 0.5 * value - 0.01 * entropy, rtol=1e-5)


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_gradient_equals_ppo_surrogate_gradient_at_ratio_one(env):
    # At the behaviour policy, grad of ratio * A is grad of log pi * A (the importance-
    # sampled surrogate of Kakade & Langford 2002 and Schulman et al. 2015): PPO without
    # clipping or normalisation and A2C agree.
    a_setup = a2c.setup(a2c.Config(env=env, **TINY))
    p_setup = ppo.setup(ppo.Config(env=env, num_envs=4, rollout_len=8, total_timesteps=160,
                                   num_minibatches=1, clip_value_loss=False,
                                   normalize_advantages=False))
    state = a2c.init(jax.random.key(1), a_setup, a2c.HParams.create())
    state, traj, _ = actor_critic.collect(state, jax.random.key(2), a_setup)
    batch = actor_critic.make_batch(state.params, traj, 0.99, 0.95, a_setup)
    g_a2c = jax.grad(lambda p: a2c.loss(p, batch, a2c.HParams.create(), a_setup)[0])(
        state.params)
    g_ppo = jax.grad(lambda p: ppo.loss(p, batch, ppo.HParams.create(clip_eps=0.2),
                                        p_setup)[0])(state.params)
    chex.assert_trees_all_close(g_a2c, g_ppo, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_envs=0), "num_envs"), (dict(rollout_len=-2), "rollout_len"),
    (dict(optimizer="sgd"), "optimizer"), (dict(total_timesteps=10), "total_timesteps"),
    (dict(env="Nope-v0"), "Nope-v0"), (dict(shared_trunk="yes"), "shared_trunk"),
    (dict(num_envs=1, rollout_len=1, normalize_advantages=True), "normalize_advantages"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        a2c.Config(**kwargs)


def test_update_compiles_once_and_moves_parameters():
    setup = a2c.setup(a2c.Config(**TINY))
    hparams = a2c.HParams.create()
    state = a2c.init(jax.random.key(0), setup, hparams)
    before = state.params
    chex.clear_trace_counter()
    iteration = jax.jit(chex.assert_max_traces(a2c.iteration, n=1), static_argnames="setup")
    for key in jax.random.split(jax.random.key(3), 3):
        state, metrics = iteration(state, key, hparams, setup)
    assert int(state.step) == 3
    testing.assert_tree_finite((state.params, metrics))
    assert not all(np.allclose(a, b) for a, b in
                   zip(jax.tree.leaves(before), jax.tree.leaves(state.params)))


@pytest.mark.parametrize("kwargs", [dict(), dict(env="Pendulum-v1", optimizer="adam",
                                                  shared_trunk=True)])
def test_vmap_over_seeds_equals_separate_runs(kwargs):
    config = a2c.Config(**{**TINY, **kwargs})
    testing.assert_vmap_matches_separate(runner.make_train(a2c.AGENT, config),
                                         jax.random.split(jax.random.key(5), 3),
                                         a2c.HParams.create(), rtol=1e-6, atol=1e-6)
