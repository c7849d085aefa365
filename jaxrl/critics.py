"""Tabular value prediction for a fixed policy: V^pi from a fixed batch of experience.

Kernels here estimate state values of the policy that generated the data, for small
discrete state spaces (state indices in `[0, num_states)`): every-visit Monte-Carlo
averaging of observed returns, and batch TD(0) that sweeps the whole batch to its fixed
point. They exist to check function-approximating critics against exact answers and to
reproduce the textbook contrast between the two (Sutton & Barto 2018, Example 6.4).
States never seen in the batch get value 0 from both, the initial value batch TD starts
from (and never moves, since no increment touches them).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def tabular_mc_values(states: jax.Array, returns: jax.Array, num_states: int) -> jax.Array:
    """Every-visit Monte-Carlo values: the mean return observed from each state.

    Sutton & Barto 2018, section 5.1 (every-visit MC prediction) with the running average
    of eq. 2.3 computed in closed form over the batch: `V(s) = sum_{t: s_t = s} G_t / N(s)`.

    Args:
      states: [B] int, the state each return was observed from (any visits, any episodes).
      returns: [B] the return observed from that visit (e.g. `returns.discounted_returns`).
      num_states: static number of states.

    Returns:
      [num_states] values; 0.0 for states with no visit in the batch.
    """
    chex.assert_rank([states, returns], 1)
    chex.assert_equal_shape([states, returns])
    chex.assert_type(states, int)
    total = jax.ops.segment_sum(returns, states, num_segments=num_states)
    count = jax.ops.segment_sum(jnp.ones_like(returns), states, num_segments=num_states)
    # Unseen states: 0, not 0/0 = NaN, so the result can seed a bootstrap or a TD sweep.
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)


def tabular_td0_batch(states_tm1: jax.Array, r_t: jax.Array, discount_t: jax.Array,
                      states_t: jax.Array, num_states: int, *, num_sweeps: int,
                      step_size: jax.Array | float) -> jax.Array:
    """Batch TD(0) values: sweep a fixed batch of transitions until TD(0) converges.

    Sutton & Barto 2018, section 6.3 ("batch updating"): starting from V = 0, each sweep
    computes the TD(0) increment of eq. 6.2, `delta = r_t + discount_t V(s_t) - V(s_tm1)`,
    for every transition of the batch with the same V, and applies their sum,
    `V(s) += step_size * sum_{i: s_tm1_i = s} delta_i`. The fixed point is the
    certainty-equivalence estimate: V solves the Bellman equation of the maximum-likelihood
    model of the batch, `V(s) = mean_{i: s_tm1_i = s} (r_i + discount_i V(s_t_i))`.

    Because increments are summed, not averaged, a state visited `N(s)` times moves by
    `step_size * N(s)` times its mean TD error: with `step_size * max_s N(s) <= 1` and
    every chain reaching a zero discount (or discounts < 1) the sweep is a damped Jacobi
    iteration and converges geometrically. Larger step sizes may diverge.

    Args:
      states_tm1: [B] int, the state each action was taken from.
      r_t: [B] reward received after the action.
      discount_t: [B] gamma * (1 - terminated); 0 makes the next state's value irrelevant,
        so a terminal transition may name any valid index in `states_t`.
      states_t: [B] int, the state that followed.
      num_states: static number of states.
      num_sweeps: number of full-batch updates (may be traced; a traced count compiles
        to a while loop).
      step_size: step size alpha of eq. 6.2.

    Returns:
      [num_states] values after `num_sweeps` sweeps; 0.0 for states never in `states_tm1`.
    """
    chex.assert_rank([states_tm1, r_t, discount_t, states_t], 1)
    chex.assert_equal_shape([states_tm1, r_t, discount_t, states_t])
    chex.assert_type([states_tm1, states_t], int)

    def sweep(_, v):
        delta = r_t + discount_t * v[states_t] - v[states_tm1]
        return v + step_size * jax.ops.segment_sum(delta, states_tm1, num_segments=num_states)

    v0 = jnp.zeros((num_states,), jnp.result_type(r_t, discount_t))
    return jax.lax.fori_loop(0, num_sweeps, sweep, v0)
