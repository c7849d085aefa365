"""Per-example losses that rlax lacks. Callers average over the batch (after `vmap`).

Also the importance-ratio and KL pieces that the policy-gradient losses share (PPO's ratio
and adaptive KL penalty, TRPO's constraint), so each lives in one place.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def clipped_value_loss(v: jax.Array, v_old: jax.Array, target: jax.Array,
                       clip_eps: jax.Array | float) -> jax.Array:
    """PPO's clipped value regression for one example (scalars in, scalar out).

    `0.5 * max((v - G)^2, (v_old + clip(v - v_old, -eps, eps) - G)^2)`, as in the OpenAI
    baselines PPO2 implementation (not in the PPO paper, which uses a plain squared error):
    the new value may not move further than `eps` from the value at collection time
    without paying the larger of the two losses.

    Args:
      v: value predicted now.
      v_old: value predicted when the data was collected.
      target: regression target (GAE advantage + v_old).
      clip_eps: clipping radius.
    """
    v_clipped = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(jnp.square(v - target), jnp.square(v_clipped - target))


def importance_ratio(log_prob: jax.Array, behaviour_log_prob: jax.Array) -> jax.Array:
    """Importance ratio `pi(a|s) / mu(a|s)` from log-probabilities (any matching shapes).

    The per-step ratio of Sutton & Barto 2018, eq. 5.3, the weight in `E_mu[f pi/mu] =
    E_pi[f]`; in PPO/TRPO `mu` is the policy that collected the data and this is
    `r_t(theta)` (Schulman et al. 2017, section 3). Computed as `exp(log pi - log mu)` so
    tiny probabilities do not divide.

    Args:
      log_prob: [...] log-probability of the taken action under the policy being evaluated.
      behaviour_log_prob: [...] its log-probability under the behaviour policy.

    Returns:
      [...] ratios, >= 0.
    """
    chex.assert_equal_shape([log_prob, behaviour_log_prob])
    return jnp.exp(log_prob - behaviour_log_prob)


def kl_categorical(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """KL(p || q) between two categorical distributions given by logits, one example.

    `sum_a p(a) (log p(a) - log q(a))` (Cover & Thomas 2006, eq. 2.26), with `0 log 0 = 0`
    so masked actions (logit -inf in p) contribute nothing and keep gradients finite.
    Same value as distrax's `Categorical.kl_divergence` (the tests check it); this array
    kernel is what PPO's penalty and TRPO's constraint call without building distributions.

    Args:
      logits_p: [A] logits of p (e.g. the current policy).
      logits_q: [A] logits of q (e.g. the policy that collected the data).

    Returns:
      scalar KL, >= 0 (inf where q gives 0 to an action p can take).
    """
    chex.assert_rank([logits_p, logits_q], 1)
    chex.assert_equal_shape([logits_p, logits_q])
    log_p = jax.nn.log_softmax(logits_p)
    log_q = jax.nn.log_softmax(logits_q)
    p = jnp.exp(log_p)
    # Double `where`: also the unused branch must be finite, or its gradient is NaN.
    log_ratio = jnp.where(p > 0, log_p - log_q, 0.0)
    return jnp.sum(p * log_ratio)


def kl_diag_gaussian(mean_p: jax.Array, log_std_p: jax.Array, mean_q: jax.Array,
                     log_std_q: jax.Array) -> jax.Array:
    """KL(p || q) between two diagonal Gaussians, one example.

    Sum over dimensions of `log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2`
    (Bishop 2006, exercise 2.13, with diagonal covariances). Same value as
    distrax's `MultivariateNormalDiag.kl_divergence` (the tests check it).

    Args:
      mean_p: [D] mean of p.
      log_std_p: [D] log standard deviation of p.
      mean_q: [D] mean of q.
      log_std_q: [D] log standard deviation of q.

    Returns:
      scalar KL, >= 0.
    """
    chex.assert_rank([mean_p, log_std_p, mean_q, log_std_q], 1)
    chex.assert_equal_shape([mean_p, log_std_p, mean_q, log_std_q])
    # Variance ratio as exp of a difference: no overflow for large log-stds of equal size.
    var_ratio = jnp.exp(2.0 * (log_std_p - log_std_q))
    mean_term = jnp.square(mean_p - mean_q) * jnp.exp(-2.0 * log_std_q)
    return jnp.sum(log_std_q - log_std_p + 0.5 * (var_ratio + mean_term - 1.0))


def adaptive_kl_coefficient(beta: jax.Array, kl: jax.Array, kl_min: jax.Array | float,
                            kl_max: jax.Array | float,
                            factor: jax.Array | float) -> jax.Array:
    """PPO's adaptive KL-penalty coefficient, one update (traced, for `beta` in the state).

    Raise `beta` by `factor` if `kl > kl_max`, lower it by `factor` if `kl < kl_min`,
    else keep it. Schulman et al. 2017, section 4: the paper writes it with a target
    `d_targ` as `kl_min = d_targ / 1.5`, `kl_max = 1.5 d_targ`, `factor = 2`.

    Args:
      beta: scalar current penalty coefficient, > 0.
      kl: scalar KL between the new and old policies, averaged over visited states.
      kl_min: lower edge of the accepted KL band.
      kl_max: upper edge of the accepted KL band (>= kl_min).
      factor: multiplicative step, > 1.

    Returns:
      scalar new beta.
    """
    chex.assert_rank([beta, kl], 0)
    return jnp.where(kl > kl_max, beta * factor,
                     jnp.where(kl < kl_min, beta / factor, beta))
