"""Importance-sampling and KL kernels against hand-worked numbers, NumPy and distrax."""

import chex
import distrax
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from jaxrl import losses


class ImportanceWeightsTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_ratio_hand_worked(self):
        log_prob = np.log(np.array([0.5, 0.2, 0.9], np.float32))
        behaviour = np.log(np.array([0.25, 0.4, 0.9], np.float32))
        ratio = self.variant(losses.importance_ratio)(log_prob, behaviour)
        np.testing.assert_allclose(ratio, [2.0, 0.5, 1.0], rtol=1e-6)

    def test_ratio_of_tiny_probabilities_is_finite(self):
        # exp(-200) underflows in float32; the ratio of two such probabilities must not.
        ratio = losses.importance_ratio(jnp.float32(-200.0), jnp.float32(-201.0))
        np.testing.assert_allclose(ratio, np.e, rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_importance_sampling_identity_enumerated(self):
        # E_q[f p/q] = E_p[f], summed exactly over a small discrete space.
        p = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
        q = np.array([0.4, 0.3, 0.2, 0.1], np.float32)
        f = np.array([3.0, -1.0, 2.0, 5.0], np.float32)
        ratio = self.variant(losses.importance_ratio)(np.log(p), np.log(q))
        np.testing.assert_allclose(np.sum(q * f * ratio), np.sum(p * f), rtol=1e-6)
        np.testing.assert_allclose(np.sum(q * f * ratio), 2.7, rtol=1e-6)  # .3 - .2 + .6 + 2


class KlTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_categorical_matches_distrax(self):
        rng = np.random.default_rng(0)
        logits_p = rng.normal(size=(8, 5)).astype(np.float32) * 2
        logits_q = rng.normal(size=(8, 5)).astype(np.float32) * 2
        kl = self.variant(jax.vmap(losses.kl_categorical))(logits_p, logits_q)
        oracle = distrax.Categorical(logits=logits_p).kl_divergence(
            distrax.Categorical(logits=logits_q))
        np.testing.assert_allclose(kl, oracle, rtol=1e-5, atol=1e-6)
        self.assertTrue(np.all(np.asarray(kl) > 0))

    def test_categorical_hand_worked_and_zero_for_equal(self):
        # p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 log 2 + 1/2 log(2/3).
        kl = losses.kl_categorical(jnp.log(jnp.array([0.5, 0.5])),
                                   jnp.log(jnp.array([0.25, 0.75])))
        np.testing.assert_allclose(kl, 0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0), rtol=1e-5)
        logits = jnp.array([0.3, -1.0, 2.0])
        np.testing.assert_allclose(losses.kl_categorical(logits, logits + 5.0), 0.0, atol=1e-6)

    def test_categorical_masked_action_has_finite_value_and_gradient(self):
        logits_p = jnp.array([0.0, -jnp.inf, 1.0])
        logits_q = jnp.array([0.5, -jnp.inf, 0.0])
        kl, grads = jax.value_and_grad(losses.kl_categorical, argnums=(0, 1))(logits_p,
                                                                               logits_q)
        oracle = losses.kl_categorical(jnp.array([0.0, 1.0]), jnp.array([0.5, 0.0]))
        np.testing.assert_allclose(kl, oracle, rtol=1e-6)
        self.assertTrue(all(np.all(np.isfinite(g)) for g in grads))

    @chex.variants(with_jit=True, without_jit=True)
    def test_diag_gaussian_matches_distrax(self):
        rng = np.random.default_rng(1)
        mean_p, mean_q = rng.normal(size=(2, 8, 3)).astype(np.float32)
        log_std_p, log_std_q = (0.5 * rng.normal(size=(2, 8, 3))).astype(np.float32)
        kl = self.variant(jax.vmap(losses.kl_diag_gaussian))(mean_p, log_std_p, mean_q,
                                                             log_std_q)
        oracle = distrax.MultivariateNormalDiag(mean_p, np.exp(log_std_p)).kl_divergence(
            distrax.MultivariateNormalDiag(mean_q, np.exp(log_std_q)))
        np.testing.assert_allclose(kl, oracle, rtol=1e-5, atol=1e-5)

    def test_diag_gaussian_hand_worked(self):
        # 1-D: N(0, 1) || N(1, 2^2) = log 2 + (1 + 1) / 8 - 1/2.
        kl = losses.kl_diag_gaussian(jnp.zeros(1), jnp.zeros(1), jnp.ones(1),
                                     jnp.log(jnp.full(1, 2.0)))
        np.testing.assert_allclose(kl, np.log(2.0) + 0.25 - 0.5, rtol=1e-6)
        np.testing.assert_allclose(
            losses.kl_diag_gaussian(jnp.ones(2), jnp.ones(2), jnp.ones(2), jnp.ones(2)), 0.0)


class AdaptiveKlTest(parameterized.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("above", 0.05, 2.0), ("below", 0.001, 0.5),
                                    ("inside", 0.01, 1.0), ("at_max", 0.015, 1.0),
                                    ("at_min", 0.005, 1.0))
    def test_hand_worked(self, kl, expected):
        update = self.variant(losses.adaptive_kl_coefficient)
        beta = update(jnp.float32(1.0), jnp.float32(kl), 0.005, 0.015, 2.0)
        np.testing.assert_allclose(beta, expected, rtol=1e-6)


_adaptive_kl = jax.jit(losses.adaptive_kl_coefficient)
KL_MIN, KL_MAX = 0.01 / 1.5, 0.01 * 1.5


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(beta=st.floats(1e-3, 1e3), kl=st.floats(0.0, 0.1),
                  factor=st.floats(1.1, 4.0))
def test_adaptive_kl_moves_beta_toward_the_band(beta, kl, factor):
    beta, kl32 = np.float32(beta), np.float32(kl)
    new = float(_adaptive_kl(beta, kl32, KL_MIN, KL_MAX, factor))
    if kl32 > np.float32(KL_MAX):
        np.testing.assert_allclose(new, beta * factor, rtol=1e-5)
        assert new > beta
    elif kl32 < np.float32(KL_MIN):
        np.testing.assert_allclose(new, beta / factor, rtol=1e-5)
        assert new < beta
    else:
        assert new == beta
