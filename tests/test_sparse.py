"""Sparse-reward add-ons (`jaxrl.sparse`): potential shaping keeps the optimal policy of an
MDP solved exactly (a plain bonus need not), ICM's losses on a hand-worked example, RND's
normalisation against NumPy, the true return kept apart from the intrinsic reward, and
PPO extended with each add-on compiling once and vmapping over seeds like separate runs."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxrl import runner, sparse, testing
from jaxrl.agent import Setup
from jaxrl.agents import ppo
from jaxrl.config import ConfigError
from jaxrl.types import EnvSpec, Transition

GAMMA = 0.9


def random_mdp(seed, num_states=7, num_actions=3):
    """A deterministic MDP: `next_state[S, A]`, `reward[S, A]`, `terminal[S]` (the last
    state is absorbing; entering it ends the episode)."""
    rng = np.random.default_rng(seed)
    next_state = rng.integers(0, num_states, (num_states, num_actions))
    reward = rng.normal(size=(num_states, num_actions)).astype(np.float32)
    terminal = np.zeros(num_states, bool)
    terminal[-1] = True
    return next_state, reward, terminal


def value_iteration(next_state, reward, terminal, gamma=GAMMA, iters=2000):
    """Greedy policy `[S]` and `Q[S, A]` of a deterministic MDP; terminal states have
    value 0. `reward` is per transition `[S, A]`."""
    v = np.zeros(next_state.shape[0])
    for _ in range(iters):
        q = reward + gamma * np.where(terminal[next_state], 0.0, v[next_state])
        v = q.max(1)
    return q.argmax(1), q


def mdp_transitions(next_state, reward, terminal):
    """Every (state, action) pair as a `Transition` with leaves `[S, A, ...]`, one-hot
    observations (two batch axes, like an on-policy `[T, N]` batch)."""
    num_states, num_actions = reward.shape
    eye = np.eye(num_states, dtype=np.float32)
    obs = np.broadcast_to(eye[:, None], (num_states, num_actions, num_states))
    return Transition(obs=jnp.asarray(obs), action=jnp.tile(jnp.arange(num_actions),
                                                            (num_states, 1)),
                      reward=jnp.asarray(reward), terminated=jnp.asarray(terminal[next_state]),
                      truncated=jnp.zeros(reward.shape, bool),
                      next_obs=jnp.asarray(eye[next_state]))


def transformed_rewards(addon, transitions):
    astate = addon.init(jax.random.key(0), None)
    out, astate = addon.transform(astate, transitions, jax.random.key(1), None)
    return np.asarray(out.reward), astate


@pytest.mark.parametrize("seed", range(5))
def test_potential_shaping_keeps_the_optimal_policy(seed):
    next_state, reward, terminal = random_mdp(seed)
    phi = np.random.default_rng(100 + seed).normal(scale=5.0, size=len(terminal))
    addon = sparse.potential_shaping(lambda o: jnp.dot(o, jnp.asarray(phi, jnp.float32)),
                                     GAMMA)
    shaped, _ = transformed_rewards(addon, mdp_transitions(next_state, reward, terminal))
    assert not np.allclose(shaped, reward)  # the shaping is large, not a no-op
    plain_policy, plain_q = value_iteration(next_state, reward, terminal)
    shaped_policy, shaped_q = value_iteration(next_state, shaped, terminal)
    live = ~terminal
    np.testing.assert_array_equal(plain_policy[live], shaped_policy[live])
    # Theorem 1 of Ng et al. 1999, exactly: Q' = Q - phi(s).
    np.testing.assert_allclose(shaped_q[live], (plain_q - phi[:, None])[live], atol=1e-4)


def test_a_plain_bonus_can_change_the_optimal_policy():
    next_state, reward, terminal = random_mdp(0)
    plain_policy, _ = value_iteration(next_state, reward, terminal)
    farmed = int((plain_policy[0] + 1) % reward.shape[1])  # an action not chosen in state 0
    addon = sparse.bonus(lambda t: jnp.where(t.action == farmed, 20.0, 0.0))
    rewarded, _ = transformed_rewards(addon, mdp_transitions(next_state, reward, terminal))
    np.testing.assert_allclose(rewarded - reward, np.where(np.arange(3) == farmed, 20, 0)
                               [None].repeat(len(terminal), 0))
    bonus_policy, _ = value_iteration(next_state, rewarded, terminal)
    assert bonus_policy[0] != plain_policy[0]


class ShapingTermTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_terminal_potential_is_zero_and_truncation_keeps_it(self):
        # Steps: ordinary, terminated, truncated (not terminal: gamma * phi(s') kept).
        phi_tm1 = jnp.asarray([1.0, 2.0, 3.0])
        phi_t = jnp.asarray([4.0, 5.0, 6.0])
        terminated = jnp.asarray([False, True, False])
        f = self.variant(sparse.shaping_term)(phi_tm1, phi_t, terminated, 0.5)
        np.testing.assert_allclose(f, [0.5 * 4 - 1, -2.0, 0.5 * 6 - 3])


SPEC_DISCRETE = EnvSpec(obs_shape=(2,), discrete=True, num_actions=2)
SPEC_BOX = EnvSpec(obs_shape=(2,), discrete=False, action_shape=(2,), action_low=(-1.0, -1.0),
                   action_high=(1.0, 1.0))


def hand_set_icm(spec, inverse_kernel, forward_kernel):
    """ICM with linear maps (no hidden layer, zero biases): identity encoder, and the
    given inverse `[4, A]` and forward `[2 + A, 2]` kernels."""
    config = sparse.ICMConfig(feature_dim=2, hidden_sizes=(), beta=0.2, eta=2.0)
    setup = Setup(config=None, env=None, env_params=None, spec=spec, network=None)
    astate = sparse.icm(config).init(jax.random.key(0), setup)
    params = jax.tree.map(jnp.zeros_like, astate.params)
    p = params["params"]
    p["encoder"]["Dense_0"]["kernel"] = jnp.eye(2)
    p["inverse"]["Dense_0"]["kernel"] = jnp.asarray(inverse_kernel, jnp.float32)
    p["forward"]["Dense_0"]["kernel"] = jnp.asarray(forward_kernel, jnp.float32)
    return config, astate.replace(params=params), sparse.icm_network(config, spec)


class ICMTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_discrete_losses_by_hand(self):
        # phi(s) = s = [1, 0], phi(s') = s' = [0, 1], a = 1 (one-hot [0, 1]).
        # Inverse logits: only phi(s')[1] -> logit 1, weight ln 3: logits [0, ln 3],
        #   probabilities [1/4, 3/4], L_I = -ln(3/4) = ln(4/3).
        # Forward input [phi(s), onehot(a)] = [1, 0, 0, 1]; kernel maps phi(s)[0] -> out 0
        #   (1) and a=1 -> out 1 (0.5): prediction [1, 0.5], target [0, 1],
        #   L_F = 0.5 * (1 + 0.25) = 0.625; r_i = eta * L_F = 1.25.
        inverse = np.zeros((4, 2)); inverse[3, 1] = np.log(3.0)
        forward = np.zeros((4, 2)); forward[0, 0] = 1.0; forward[3, 1] = 0.5
        config, astate, network = hand_set_icm(SPEC_DISCRETE, inverse, forward)
        batch = Transition(obs=jnp.asarray([[1.0, 0.0]]), action=jnp.asarray([1]),
                           reward=jnp.zeros(1), terminated=jnp.zeros(1, bool),
                           truncated=jnp.zeros(1, bool), next_obs=jnp.asarray([[0.0, 1.0]]))
        loss, metrics = self.variant(sparse.icm_loss, static_argnums=(2, 3))(
            astate.params, batch, network, config.beta)
        np.testing.assert_allclose(metrics["loss_inverse"], np.log(4 / 3), rtol=1e-6)
        np.testing.assert_allclose(metrics["loss_forward"], 0.625, rtol=1e-6)
        np.testing.assert_allclose(loss, 0.8 * np.log(4 / 3) + 0.2 * 0.625, rtol=1e-6)
        r_i = sparse.icm_reward(astate.params, batch, network, config.eta)
        np.testing.assert_allclose(r_i, [1.25], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_continuous_losses_by_hand(self):
        # a = [0.5, -1]. Inverse estimate [phi(s')[0], 0] = [0, 0]:
        #   L_I = 0.5 * (0.25 + 1) = 0.625.
        # Forward input [1, 0, 0.5, -1]; phi(s)[0] -> out 0 (1), a[0] -> out 1 (2):
        #   prediction [1, 1], target [0, 1], L_F = 0.5.
        inverse = np.zeros((4, 2)); inverse[2, 0] = 1.0
        forward = np.zeros((4, 2)); forward[0, 0] = 1.0; forward[2, 1] = 2.0
        config, astate, network = hand_set_icm(SPEC_BOX, inverse, forward)
        batch = Transition(obs=jnp.asarray([[1.0, 0.0]]), action=jnp.asarray([[0.5, -1.0]]),
                           reward=jnp.zeros(1), terminated=jnp.zeros(1, bool),
                           truncated=jnp.zeros(1, bool), next_obs=jnp.asarray([[0.0, 1.0]]))
        loss, metrics = self.variant(sparse.icm_loss, static_argnums=(2, 3))(
            astate.params, batch, network, config.beta)
        np.testing.assert_allclose(metrics["loss_inverse"], 0.625, rtol=1e-6)
        np.testing.assert_allclose(metrics["loss_forward"], 0.5, rtol=1e-6)
        np.testing.assert_allclose(loss, 0.8 * 0.625 + 0.2 * 0.5, rtol=1e-6)

    def test_training_on_a_fixed_batch_lowers_both_losses(self):
        setup = Setup(config=None, env=None, env_params=None, spec=SPEC_DISCRETE,
                      network=None)
        addon = sparse.icm(sparse.ICMConfig(learning_rate=1e-2, num_updates=20))
        astate = addon.init(jax.random.key(0), setup)
        key = jax.random.key(1)
        obs = jax.random.normal(key, (8, 16, 2))
        action = (obs[..., 0] > 0).astype(jnp.int32)  # the move is visible in the obs
        batch = Transition(obs=obs, action=action, reward=jnp.zeros((8, 16)),
                           terminated=jnp.zeros((8, 16), bool),
                           truncated=jnp.zeros((8, 16), bool),
                           next_obs=obs + jnp.where(action[..., None] == 1, 1.0, -1.0))
        transform = jax.jit(functools.partial(addon.transform, setup=setup))
        losses = []
        for _ in range(5):
            out, astate = transform(astate, batch, key)
            sums = astate.tally.sums
            losses.append((sums["loss_forward"], sums["loss_inverse"]))
        first, last = np.diff(np.asarray(losses), axis=0, prepend=0)[[0, -1]]
        assert (last < 0.5 * first).all(), losses
        assert out.reward.shape == (8, 16) and (out.reward > 0).all()


def numpy_normalized(batches, eps=1e-8):
    """Each batch divided by the population std of every value seen up to and including
    it: the NumPy reference of `normalize_rewards`."""
    seen, out = [], []
    for b in batches:
        seen.extend(b)
        out.append(b / np.sqrt(np.var(seen) + eps))
    return out


class RNDTest(parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_reward_normalisation_matches_numpy(self):
        rng = np.random.default_rng(0)
        batches = [rng.gamma(2.0, 3.0, size=n).astype(np.float32) for n in (16, 5, 64, 1)]
        normalize = self.variant(sparse.normalize_rewards, static_argnums=2)
        moments = sparse.init_moments()
        for got_in, expected in zip(batches, numpy_normalized(batches)):
            got, moments = normalize(moments, jnp.asarray(got_in), 1e-8)
            np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_allclose(moments.mean, np.mean(np.concatenate(batches)), rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_observation_statistics_match_numpy(self):
        rng = np.random.default_rng(1)
        batches = [rng.normal(3.0, 2.0, size=(n, 3, 2)).astype(np.float32) for n in (7, 40)]
        update = self.variant(sparse.update_moments)
        moments = sparse.init_moments((3, 2))
        for b in batches:
            moments = update(moments, jnp.asarray(b))
        both = np.concatenate(batches)
        np.testing.assert_allclose(moments.mean, both.mean(0), rtol=1e-5)
        np.testing.assert_allclose(moments.var, both.var(0), rtol=1e-4)
        z = sparse.normalize_obs(moments, jnp.asarray(both), 5.0, 1e-8)
        expected = np.clip((both - both.mean(0)) / np.sqrt(both.var(0) + 1e-8), -5, 5)
        np.testing.assert_allclose(z, expected, rtol=1e-4, atol=1e-5)

    def test_a_repeated_state_becomes_less_novel(self):
        setup = Setup(config=None, env=None, env_params=None, spec=SPEC_DISCRETE,
                      network=None)
        addon = sparse.rnd(sparse.RNDConfig(learning_rate=1e-2, num_updates=10))
        astate = addon.init(jax.random.key(0), setup)
        obs = jax.random.normal(jax.random.key(1), (4, 32, 2))
        batch = Transition(obs=obs, action=jnp.zeros((4, 32), jnp.int32),
                           reward=jnp.zeros((4, 32)), terminated=jnp.zeros((4, 32), bool),
                           truncated=jnp.zeros((4, 32), bool), next_obs=obs)
        transform = jax.jit(functools.partial(addon.transform, setup=setup))
        errors = []
        for i in range(6):
            _, astate = transform(astate, batch, jax.random.key(i))
            errors.append(float(astate.tally.sums["error_mean"]))
        errors = np.diff(errors, prepend=0.0)
        assert errors[-1] < 0.3 * errors[0], errors


def test_configs_are_validated():
    with pytest.raises(ConfigError, match="beta"):
        sparse.ICMConfig(beta=1.5)
    with pytest.raises(ConfigError, match="learning_rate"):
        sparse.RNDConfig(learning_rate=0.0)
    with pytest.raises(ConfigError, match="update_proportion"):
        sparse.RNDConfig(update_proportion=0.0)
    with pytest.raises(ConfigError, match="torso"):
        sparse.ICMConfig(torso="resnet")
    with pytest.raises(ConfigError, match="gamma"):
        sparse.potential_shaping(lambda o: 0.0, 1.5)
    with pytest.raises(ConfigError, match="ICMConfig"):
        sparse.icm(sparse.RNDConfig())
    with pytest.raises(ConfigError, match="name"):
        sparse.rnd(name="")


PPO_TINY = ppo.Config(env="CartPole-v1", num_envs=4, rollout_len=8, total_timesteps=4 * 8 * 4,
                      num_minibatches=2, num_epochs=2, hidden_sizes=(16,))
ADDONS = {
    "shaping": lambda: sparse.potential_shaping(lambda o: -jnp.abs(o[2]), 0.99),
    "bonus": lambda: sparse.bonus(lambda t: -0.5),
    "icm": lambda: sparse.icm(sparse.ICMConfig(hidden_sizes=(16,), coef=1.0)),
    "rnd": lambda: sparse.rnd(sparse.RNDConfig(hidden_sizes=(16,), update_proportion=0.5)),
}


# `bonus` rewrites rewards through the same `_reward_addon` as `shaping`: left out for the
# default suite's time budget.
@pytest.mark.parametrize("name", ["shaping", "icm", "rnd"])
def test_ppo_with_each_addon_compiles_once_vmaps_like_separate_seeds_and_logs_the_true_return(
        name):
    agent = ppo.AGENT.extend(f"ppo-{name}", ADDONS[name]())
    hparams = ppo.HParams.create()
    state, chunks = testing.run_chunks_compiling_once(agent, PPO_TINY, hparams, 2)
    assert len(chunks) == 2
    testing.assert_tree_finite(state.addons, "addons")
    _, metrics = testing.assert_vmap_matches_separate(
        runner.make_train(agent, PPO_TINY), jax.random.split(jax.random.key(3), 2), hparams,
        rtol=1e-5, atol=1e-6)
    # CartPole pays exactly 1 per step: a true return equals its episode's length.
    ret, length = np.asarray(metrics["episode/return"]), np.asarray(metrics["episode/length"])
    done = np.isfinite(ret)
    assert done.any()
    np.testing.assert_allclose(ret[done], length[done])
    np.testing.assert_allclose(metrics[f"{name}/extrinsic_mean"], 1.0)
    intrinsic = np.asarray(metrics[f"{name}/intrinsic_mean"])
    assert np.isfinite(intrinsic).all() and (np.abs(intrinsic) > 0).any()
