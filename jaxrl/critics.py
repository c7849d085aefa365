"""Value prediction for a fixed policy: V^pi from a fixed batch of experience.

Kernels here estimate state values of the policy that generated the data, for small
discrete state spaces (state indices in `[0, num_states)`): every-visit Monte-Carlo
averaging of observed returns, and batch TD(0) swept to its fixed point. They check
function-approximating critics against exact answers and reproduce the textbook contrast
between the two (Sutton & Barto 2018, Example 6.4); states never seen in the batch get
value 0 from both. `fit_values` is the same prediction with function approximation.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl import returns
from jaxrl.types import Params, Transition


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


def value_targets(r_t: jax.Array, discount_t: jax.Array, cut_t: jax.Array, v_tm1: jax.Array,
                  v_t: jax.Array, lambda_: jax.Array | float) -> jax.Array:
    """Lambda-return regression targets for V over one trajectory, truncation-aware.

    `G^lambda_t = A^GAE_t + V(s_t)` (Sutton & Barto 2018, eq. 12.3, in the recursive form of
    GAE): lambda = 0 gives the TD(0) target `r_t + discount_t V(s_t+1)`, lambda = 1 the
    Monte-Carlo return, bootstrapped only where an episode was truncated or the window ends.

    Args:
      r_t, discount_t, cut_t: [T] as in `jaxrl.returns.gae`.
      v_tm1: [T] current values of the observations acted from.
      v_t: [T] current values of the observations that followed (pre-reset).
      lambda_: scalar in [0, 1].

    Returns:
      [T] targets.
    """
    return returns.gae(r_t, discount_t, v_tm1, v_t, cut_t, lambda_) + v_tm1


_batched_value_targets = jax.vmap(value_targets, in_axes=(1, 1, 1, 1, 1, None), out_axes=1)


def fit_values(value_fn: Callable[[Params, jax.Array], jax.Array], params: Params,
               traj: Transition, gamma: jax.Array | float, lambda_: jax.Array | float,
               tx: optax.GradientTransformation, num_steps: int) -> tuple[Params, jax.Array]:
    """Fit `value_fn(params, obs[..., *obs_shape]) -> [...]` to a fixed batch of experience.

    Each of `num_steps` full-batch steps recomputes the targets with the current values
    (held constant in the gradient: semi-gradient TD, Sutton & Barto 2018, section 9.3)
    and takes one step of `tx` on `0.5 mean (V(s) - G^lambda)^2`. With lambda = 1 the
    targets are returns and this is Monte-Carlo regression; with lambda = 0 it is batch
    TD(0), whose fixed point for a tabular (one-hot) critic is the certainty-equivalence
    value of `tabular_td0_batch`.

    Args:
      value_fn: the critic, e.g. a value head of `jaxrl.networks`.
      params: its initial parameters.
      traj: `[T, N]` transitions of the policy to evaluate.
      gamma: discount factor; `discount_t = gamma * (1 - terminated)`.
      lambda_: 0 (TD(0)) .. 1 (Monte Carlo).
      tx: optimizer.
      num_steps: static number of full-batch steps.

    Returns:
      `(params, losses[num_steps])`.
    """
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    cut_t = jnp.logical_or(traj.terminated, traj.truncated).astype(jnp.float32)

    def loss(p, target):
        return 0.5 * jnp.mean(jnp.square(value_fn(p, traj.obs) - target))

    def step(carry, _):
        p, opt_state = carry
        v_tm1 = value_fn(p, traj.obs)
        v_t = value_fn(p, traj.next_obs)
        target = jax.lax.stop_gradient(
            _batched_value_targets(traj.reward, discount_t, cut_t, v_tm1, v_t, lambda_))
        value, grads = jax.value_and_grad(loss)(p, target)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=num_steps)
    return params, losses
