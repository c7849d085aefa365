"""Per-example losses that rlax lacks. Callers average over the batch (after `vmap`)."""

from __future__ import annotations

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
