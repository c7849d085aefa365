"""DQN-family kernels against hand-worked numbers and plain NumPy references, jit and no-jit.

Q-learning and double-Q targets (through `dqn.loss` and `dqn.make_batch`), the n-step
target with a cut inside the window, the C51 projection and loss, the dueling combination
and the noisy layer (mean output equal to the plain layer when the noise is zero).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import rlax
from absl.testing import parameterized

from jaxrl import buffers, networks, returns
from jaxrl.agents import dqn
from jaxrl.types import EnvSpec, Transition

SPEC = EnvSpec(obs_shape=(4,), discrete=True, num_actions=3)
SMALL = dict(num_envs=2, rollout_len=10, total_timesteps=200, buffer_size=100,
             minibatch_size=4, learning_starts=0, train_frequency=5, hidden_sizes=(4,))


def numpy_n_step(r, discount, cut, q):
    """Reference: walk forward, summing discounted rewards until the first cut."""
    g, scale = 0.0, 1.0
    for i in range(len(r)):
        g += scale * r[i]
        scale *= discount[i]
        if cut[i] or i == len(r) - 1:
            return g + scale * q[i], g, scale, i


def random_windows(seed, batch=6, length=4, gamma=0.9):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(batch, length)).astype(np.float32)
    terminated = rng.random((batch, length)) < 0.2
    truncated = (rng.random((batch, length)) < 0.2) & ~terminated
    discount = (gamma * (1.0 - terminated)).astype(np.float32)
    q = rng.normal(size=(batch, length)).astype(np.float32)
    return r, discount, (terminated | truncated).astype(np.float32), q


class NStepTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_worked_cuts_inside_the_window(self):
        # gamma 0.5; bootstrap values 10, 20, 30, 40 after each transition.
        r = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
        q = np.array([10.0, 20.0, 30.0, 40.0], np.float32)
        fn = self.variant(returns.n_step_target)
        # No cut: 1 + .5*2 + .25*4 + .125*8 + .0625*40.
        none = np.zeros(4, np.float32)
        np.testing.assert_allclose(fn(r, np.full(4, 0.5, np.float32), none, q), 6.5)
        # Truncated at transition 1: bootstrap from the value after it (20), discount .25.
        trunc = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
        np.testing.assert_allclose(fn(r, np.full(4, 0.5, np.float32), trunc, q),
                                   1.0 + 0.5 * 2.0 + 0.25 * 20.0)
        # Terminated at transition 1: no bootstrap; rewards after it are the next episode.
        d_term = np.array([0.5, 0.0, 0.5, 0.5], np.float32)
        np.testing.assert_allclose(fn(r, d_term, trunc, q), 1.0 + 0.5 * 2.0)
        # A cut at the first transition is one-step Q-learning's target.
        first = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
        np.testing.assert_allclose(fn(r, np.full(4, 0.5, np.float32), first, q),
                                   1.0 + 0.5 * 10.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_parts_match_numpy_loop(self):
        r, d, cut, q = random_windows(seed=0)
        self.assertGreater(cut.sum(), 0)
        g, discount, k = self.variant(jax.vmap(returns.n_step_return))(r, d, cut)
        target = self.variant(jax.vmap(returns.n_step_target))(r, d, cut, q)
        ref = [numpy_n_step(*x) for x in zip(r, d, cut, q)]
        np.testing.assert_allclose(target, [x[0] for x in ref], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g, [x[1] for x in ref], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(discount, [x[2] for x in ref], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(k, [x[3] for x in ref])
        self.assertEqual(k.dtype, jnp.int32)

    def test_equals_discounted_returns_with_the_last_step_cut(self):
        # The n-step target is the truncation-aware return of the window's first step.
        r, d, cut, q = random_windows(seed=1)
        forced = cut.copy()
        forced[:, -1] = 1.0
        ref = jax.jit(jax.vmap(returns.discounted_returns))(r, d, forced, q)[:, 0]
        ours = jax.jit(jax.vmap(returns.n_step_target))(r, d, cut, q)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)

    def test_bool_cuts_and_length_one(self):
        g, discount, k = returns.n_step_return(jnp.array([3.0]), jnp.array([0.9]),
                                               jnp.array([False]))
        np.testing.assert_allclose([g, discount, k], [3.0, 0.9, 0])


def constant_q_params(config, q_bias):
    """Online parameters whose Q-values are `q_bias` for every observation."""
    params = dqn.setup(config).network.init(jax.random.key(0))
    head = params["params"]["q"]
    return {"params": {**params["params"], "q": {
        "kernel": jnp.zeros_like(head["kernel"]), "bias": jnp.asarray(q_bias, jnp.float32)}}}


def hand_batch(selector):
    return dqn.Batch(
        obs=jnp.zeros((3, 4)), action=jnp.array([0, 1, 0], jnp.int32),
        reward=jnp.array([1.0, 2.0, -1.0]), discount=jnp.array([0.9, 0.0, 0.81]),
        next_q=jnp.array([[1.0, 3.0], [2.0, 0.0], [4.0, -2.0]]),
        next_q_selector=jnp.asarray(selector, jnp.float32),
        weights=jnp.array([1.0, 0.5, 0.25]), noise={})


class QTargetTest(parameterized.TestCase):
    """Q(s) = [0.5, -1] everywhere; three transitions with hand-worked targets."""

    def run_loss(self, config, selector):
        params = constant_q_params(config, [0.5, -1.0])
        loss = self.variant(functools.partial(dqn.loss, setup=dqn.setup(config)))
        return loss(params, hand_batch(selector), dqn.HParams.create())

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("mse", "mse"), ("huber", "huber"))
    def test_q_learning_target(self, kind):
        config = dqn.Config(loss=kind, **SMALL)
        # Selector = the target's own values: y = r + d max_a Q_target(s', a).
        total, (metrics, priority) = self.run_loss(
            config, [[1.0, 3.0], [2.0, 0.0], [4.0, -2.0]])
        y = np.array([1.0 + 0.9 * 3.0, 2.0, -1.0 + 0.81 * 4.0])
        td = y - np.array([0.5, -1.0, 0.5])  # 3.2, 3.0, 1.74
        per = 0.5 * td**2 if kind == "mse" else np.abs(td) - 0.5  # all |td| > 1
        np.testing.assert_allclose(total, np.mean(np.array([1.0, 0.5, 0.25]) * per), rtol=1e-5)
        np.testing.assert_allclose(priority, np.abs(td), rtol=1e-5)
        np.testing.assert_allclose(metrics["q/taken"], np.mean([0.5, -1.0, 0.5]), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_double_q_target(self):
        config = dqn.Config(double=True, **SMALL)
        # The online selector picks actions 0, 1, 1; the target net evaluates them.
        total, (_, priority) = self.run_loss(config, [[5.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        y = np.array([1.0 + 0.9 * 1.0, 2.0 + 0.0 * 0.0, -1.0 + 0.81 * -2.0])
        td = y - np.array([0.5, -1.0, 0.5])  # 1.4, 3.0, -3.12
        np.testing.assert_allclose(priority, np.abs(td), rtol=1e-5)
        np.testing.assert_allclose(total, np.mean(np.array([1.0, 0.5, 0.25]) * 0.5 * td**2),
                                   rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("plain", False), ("double", True))
    def test_make_batch_picks_the_selector_and_the_bootstrap_step(self, double):
        setup = dqn.setup(dqn.Config(double=double, n_step=3, **SMALL))
        network = setup.network
        online = network.init(jax.random.key(1))
        target = network.init(jax.random.key(2))
        state = dqn.init(jax.random.key(0), setup, dqn.HParams.create()).replace(
            params=online, target_params=target)
        obs = jax.random.normal(jax.random.key(3), (2, 3, 4))
        next_obs = jax.random.normal(jax.random.key(4), (2, 3, 4))
        # Window 0 is truncated at step 1 (bootstrap from next_obs[0, 1]); window 1 has
        # no cut (bootstrap from next_obs[1, 2]) and a termination nowhere.
        items = Transition(obs=obs, action=jnp.array([[1, 0, 0], [2, 1, 1]], jnp.int32),
                           reward=jnp.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]),
                           terminated=jnp.zeros((2, 3), bool),
                           truncated=jnp.array([[False, True, False], [False] * 3]),
                           next_obs=next_obs)
        sample = buffers.Sample(items=items, indices=jnp.array([0, 1], jnp.int32),
                                weights=jnp.ones(2))
        make = self.variant(functools.partial(dqn.make_batch, setup=setup))
        batch = make(state, sample, jax.random.key(5), dqn.HParams.create(gamma=0.5))
        np.testing.assert_allclose(batch.reward, [1.0 + 0.5 * 2.0, 1.0 + 0.5 + 0.25])
        np.testing.assert_allclose(batch.discount, [0.25, 0.125])
        boot = jnp.stack([next_obs[0, 1], next_obs[1, 2]])
        np.testing.assert_allclose(batch.next_q, network.apply(target, boot), rtol=1e-5)
        chooser = online if double else target
        np.testing.assert_allclose(batch.next_q_selector, network.apply(chooser, boot),
                                   rtol=1e-5)
        np.testing.assert_array_equal(batch.action, [1, 2])
        np.testing.assert_allclose(batch.obs, obs[:, 0])


def numpy_projection(target_z, probs, support):
    """Bellemare et al. 2017, Algorithm 1: split each atom's mass between its neighbours."""
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (len(support) - 1)
    m = np.zeros(len(support))
    for z, p in zip(target_z, probs):
        b = (np.clip(z, v_min, v_max) - v_min) / dz
        lo, hi = int(np.floor(b)), int(np.ceil(b))
        if lo == hi:
            m[lo] += p
        else:
            m[lo] += p * (hi - b)
            m[hi] += p * (b - lo)
    return m


def numpy_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class C51Test(parameterized.TestCase):
    config = dqn.C51Config(num_atoms=5, v_min=-2.0, v_max=2.0, **SMALL)

    @chex.variants(with_jit=True, without_jit=True)
    def test_projection_matches_numpy(self):
        # The projection rlax's categorical loss uses: atoms between, on and beyond the
        # support's points (clipped to its ends).
        support = np.linspace(-2.0, 2.0, 5).astype(np.float32)
        rng = np.random.default_rng(0)
        project = self.variant(rlax.categorical_l2_project)
        for target_z in (np.array([-3.0, -1.0, -0.25, 0.6, 5.0], np.float32),
                         (0.3 + 0.9 * support).astype(np.float32),
                         np.full(5, 0.7, np.float32)):
            probs = numpy_softmax(rng.normal(size=5)).astype(np.float32)
            np.testing.assert_allclose(project(target_z, probs, support),
                                       numpy_projection(target_z, probs, support),
                                       rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("plain", False), ("double", True))
    def test_loss_is_cross_entropy_to_the_projected_n_step_target(self, double):
        config = dqn.C51Config(num_atoms=5, v_min=-2.0, v_max=2.0, double=double, **SMALL)
        setup = dqn.setup(config)
        network = setup.network
        params = network.init(jax.random.key(0))
        rng = np.random.default_rng(1)
        b = 4
        obs = rng.normal(size=(b, 4)).astype(np.float32)
        action = np.array([0, 1, 1, 0], np.int32)
        # n-step parts: a termination (discount 0), a return beyond v_max, and ordinary.
        reward = np.array([0.5, 3.0, -0.3, 1.0], np.float32)
        discount = np.array([0.0, 0.9, 0.81, 0.729], np.float32)
        next_logits = rng.normal(size=(b, 2, 5)).astype(np.float32)
        selector = rng.normal(size=(b, 2)).astype(np.float32)
        weights = np.array([1.0, 0.5, 0.8, 0.2], np.float32)
        batch = dqn.Batch(obs=obs, action=action, reward=reward, discount=discount,
                          next_q=next_logits, next_q_selector=selector, weights=weights,
                          noise={})
        loss = self.variant(functools.partial(dqn.loss, setup=setup))
        total, (_, priority) = loss(params, batch, dqn.HParams.create())
        support = dqn.atoms(config)
        logits = np.asarray(network.apply(params, obs))
        ce = []
        for i in range(b):
            best = selector[i].argmax()
            m = numpy_projection(reward[i] + discount[i] * support,
                                 numpy_softmax(next_logits[i, best]), support)
            log_p = logits[i, action[i]] - np.log(np.exp(logits[i, action[i]]).sum())
            ce.append(-(m * log_p).sum())
        np.testing.assert_allclose(priority, ce, rtol=1e-5)
        np.testing.assert_allclose(total, np.mean(weights * np.array(ce)), rtol=1e-5)

    def test_q_values_are_the_distribution_means(self):
        setup = dqn.setup(self.config)
        network = setup.network
        params = network.init(jax.random.key(2))
        obs = jax.random.normal(jax.random.key(3), (3, 4))
        logits = np.asarray(network.apply(params, obs))
        expected = (numpy_softmax(logits) * dqn.atoms(self.config)).sum(-1)
        np.testing.assert_allclose(dqn.q_values(params, obs, {}, setup), expected,
                                   rtol=1e-5, atol=1e-6)


class DuelingTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_combination_matches_numpy(self):
        rng = np.random.default_rng(0)
        value = rng.normal(size=(5, 7)).astype(np.float32)
        adv = rng.normal(size=(5, 3, 7)).astype(np.float32)
        q = self.variant(networks.dueling_combine)(value, adv)
        expected = value[:, None, :] + adv - adv.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-6)
        # The advantages are identifiable: Q averaged over actions is V.
        np.testing.assert_allclose(np.asarray(q).mean(axis=1), value, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_network_head_hand_worked(self):
        # V = 2 and A = [1, 2, 6] for every observation: Q = 2 + A - 3 = [0, 1, 5].
        net = networks.make_q_network(SPEC, (8,), dueling=True)
        params = net.init(jax.random.key(0))
        p = params["params"]
        zero = lambda layer: jnp.zeros_like(p[layer]["kernel"])  # noqa: E731
        params = {"params": {**p, "value": {"kernel": zero("value"), "bias": jnp.array([2.0])},
                             "advantage": {"kernel": zero("advantage"),
                                           "bias": jnp.array([1.0, 2.0, 6.0])}}}
        q = self.variant(net.apply)(params, jnp.ones((2, 4)), None)
        np.testing.assert_allclose(q, [[0.0, 1.0, 5.0]] * 2, atol=1e-6)

    @parameterized.named_parameters(("plain", False, None, False),
                                    ("dueling_noisy", True, None, True),
                                    ("c51_noisy", False, 7, True), ("dueling_c51", True, 7, False))
    def test_head_combinations_have_the_right_shape(self, dueling, atoms, noisy):
        net = networks.make_q_network(SPEC, (8, 8), dueling=dueling, num_atoms=atoms,
                                      noisy=noisy)
        params = jax.jit(net.init)(jax.random.key(0))
        noise = net.sample_noise(jax.random.key(1))
        out = jax.jit(net.apply)(params, jnp.ones((5, 4)), noise)
        self.assertEqual(out.shape, (5, 3) if atoms is None else (5, 3, atoms))
        self.assertTrue(np.isfinite(np.asarray(out)).all())
        self.assertEqual(bool(noise), noisy)


class NoisyTest(parameterized.TestCase):

    def layer(self):
        layer = networks.NoisyDense(3, sigma0=0.5)
        x = jax.random.normal(jax.random.key(0), (6, 5))
        zero = (jnp.zeros(5), jnp.zeros(3))
        return layer, x, layer.init(jax.random.key(1), x, zero)["params"]

    @chex.variants(with_jit=True, without_jit=True)
    def test_zero_noise_is_the_plain_layer(self):
        layer, x, p = self.layer()
        apply = self.variant(lambda params, x, noise: layer.apply({"params": params}, x, noise))
        y = apply(p, x, (jnp.zeros(5), jnp.zeros(3)))
        expected = np.asarray(x) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
        # flax's plain Dense with the same mean weights agrees too.
        dense = networks.nn.Dense(3).apply({"params": {"kernel": p["kernel"],
                                                       "bias": p["bias"]}}, x)
        np.testing.assert_allclose(y, dense, rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_factorised_noise_matches_the_explicit_weights(self):
        layer, x, p = self.layer()
        e_in = jax.random.normal(jax.random.key(2), (5,))
        e_out = jax.random.normal(jax.random.key(3), (3,))
        apply = self.variant(lambda params, x, noise: layer.apply({"params": params}, x, noise))
        y = apply(p, x, (e_in, e_out))
        f = lambda e: np.sign(e) * np.sqrt(np.abs(e))  # noqa: E731 - paper's eq. 11
        p = jax.tree.map(np.asarray, p)
        w = p["kernel"] + p["sigma_kernel"] * np.outer(f(np.asarray(e_in)), f(np.asarray(e_out)))
        bias = p["bias"] + p["sigma_bias"] * f(np.asarray(e_out))
        np.testing.assert_allclose(y, np.asarray(x) @ w + bias, rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_one_row_and_a_batch_agree(self):
        # One row takes the factorised path, several rows the formed weight matrix.
        layer, x, p = self.layer()
        noise = (jax.random.normal(jax.random.key(2), (5,)),
                 jax.random.normal(jax.random.key(3), (3,)))
        apply = self.variant(lambda params, x, noise: layer.apply({"params": params}, x, noise))
        batch = apply(p, x, noise)
        rows = np.stack([np.asarray(apply(p, x[i], noise)) for i in range(x.shape[0])])
        np.testing.assert_allclose(batch, rows, rtol=1e-5, atol=1e-5)

    def test_init_follows_the_paper(self):
        _, _, p = self.layer()
        bound = 1 / np.sqrt(5)
        self.assertLessEqual(np.abs(np.asarray(p["kernel"])).max(), bound)
        np.testing.assert_allclose(p["sigma_kernel"], np.full((5, 3), 0.5 / np.sqrt(5)),
                                   rtol=1e-6)
        np.testing.assert_allclose(p["sigma_bias"], np.full(3, 0.5 / np.sqrt(5)), rtol=1e-6)

    def test_zero_noise_network_is_the_mean_mlp(self):
        # A whole noisy Q-network at zero noise is the MLP of its mean weights.
        net = networks.make_q_network(SPEC, (8,), noisy=True)
        params = net.init(jax.random.key(0))
        obs = np.abs(np.asarray(jax.random.normal(jax.random.key(1), (4, 4))))
        p = jax.tree.map(np.asarray, params["params"])
        h = np.maximum(obs @ p["torso_0"]["kernel"] + p["torso_0"]["bias"], 0.0)
        expected = h @ p["q"]["kernel"] + p["q"]["bias"]
        np.testing.assert_allclose(net.apply(params, obs, net.zero_noise), expected,
                                   rtol=1e-5, atol=1e-6)
        noisy = net.apply(params, obs, net.sample_noise(jax.random.key(2)))
        self.assertFalse(np.allclose(noisy, expected))
