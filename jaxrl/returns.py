"""Return and advantage estimators over one trajectory, truncation-aware.

Kernels take one trajectory (`[T]`) and are batched over envs with `jax.vmap`; the
`batched_*` forms take `[T, N]`. A step may end an episode by termination (no bootstrap:
`discount_t = 0`) or by truncation (bootstrap from the pre-reset observation's value,
which the caller puts in `v_t`); either one cuts the multi-step recursion.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gae(r_t: jax.Array, discount_t: jax.Array, v_tm1: jax.Array, v_t: jax.Array,
        cut_t: jax.Array, lambda_: jax.Array | float) -> jax.Array:
    """Generalised advantage estimates for one trajectory, truncation-aware.

    Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", eq. 16, with the sum cut at episode boundaries. rlax's
    `truncated_generalized_advantage_estimation` has no separate cut flag, so it cannot
    bootstrap a truncated episode and start a fresh recursion at the next step; this can.

    Args:
      r_t: [T] reward received after the action.
      discount_t: [T] gamma * (1 - terminated); zero only at true termination.
      v_tm1: [T] value of the observation the action was taken from.
      v_t: [T] value of the observation that followed (the final one on a reset step).
      cut_t: [T] 1.0 where the episode ended here (terminated or truncated).
      lambda_: scalar mixing parameter.

    Returns:
      [T] advantages.
    """
    chex.assert_rank([r_t, discount_t, v_tm1, v_t, cut_t], 1)
    chex.assert_equal_shape([r_t, discount_t, v_tm1, v_t, cut_t])
    delta_t = r_t + discount_t * v_t - v_tm1

    def body(acc, xs):
        delta, discount, cut = xs
        # A cut stops the lambda-recursion; bootstrapping already happened in delta.
        acc = delta + discount * lambda_ * (1.0 - cut) * acc
        return acc, acc

    _, adv_t = jax.lax.scan(
        body, jnp.zeros_like(r_t[0]), (delta_t, discount_t, cut_t), reverse=True)
    return adv_t


batched_gae = jax.vmap(gae, in_axes=(1, 1, 1, 1, 1, None), out_axes=1)  # [T, N] in and out
