"""Return and advantage estimators over one trajectory, truncation-aware.

Kernels take one trajectory (`[T]`) and are batched over envs with `jax.vmap`; the
`batched_*` forms take `[T, N]`. A step may end an episode by termination (no bootstrap:
`discount_t = 0`) or by truncation (bootstrap from the pre-reset observation's value,
which the caller puts in `v_t`); either one cuts the multi-step recursion. `n_step_return`
takes instead one replay window of L consecutive transitions and gives the n-step target of
its first transition.
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


def discounted_returns(r_t: jax.Array, discount_t: jax.Array, cut_t: jax.Array,
                       bootstrap_t: jax.Array) -> jax.Array:
    """Discounted reward-to-go for one trajectory, truncation-aware.

    Sutton & Barto 2018, eq. 3.9, `G_t = r_{t+1} + gamma G_{t+1}`, in our indexing (`r_t`
    follows the action at step t) and with the tail replaced by a bootstrap at each cut:
    `G_t = r_t + discount_t * (bootstrap_t if cut_t else G_{t+1})`. rlax's
    `discounted_returns` bootstraps only after the last step and cannot restart the
    recursion inside the window, so it cannot bootstrap a truncated episode; this can.

    Beyond the window the return is taken to be 0: a caller that wants a bootstrap after
    the last step sets `cut_t[-1] = 1` and `bootstrap_t[-1] = V(next obs)`.

    Args:
      r_t: [T] reward received after the action.
      discount_t: [T] gamma * (1 - terminated); zero only at true termination.
      cut_t: [T] 1.0 where the recursion stops here (terminated, truncated, or the last
        step when bootstrapping from it); bool also accepted.
      bootstrap_t: [T] value to bootstrap with where `cut_t` is set: anything finite at a
        termination (discount is 0), V(final observation) at a truncation. Ignored elsewhere.

    Returns:
      [T] returns `G_t`.
    """
    chex.assert_rank([r_t, discount_t, cut_t, bootstrap_t], 1)
    chex.assert_equal_shape([r_t, discount_t, cut_t, bootstrap_t])

    def body(acc, xs):
        r, discount, cut, bootstrap = xs
        # `where`, not arithmetic masking: an inf/NaN in the unused branch must not leak.
        acc = r + discount * jnp.where(cut != 0, bootstrap, acc)
        return acc, acc

    _, g_t = jax.lax.scan(body, jnp.zeros_like(r_t[0]), (r_t, discount_t, cut_t, bootstrap_t),
                          reverse=True)
    return g_t


def episode_returns(r_t: jax.Array, cut_t: jax.Array) -> jax.Array:
    """Undiscounted return of the episode each step belongs to, within one trajectory.

    The whole-trajectory weight `R(tau) = sum_t r_t` of REINFORCE's first form (Williams
    1992; Sutton & Barto 2018, section 13.3 before the reward-to-go refinement), given to
    every step of the episode. Only rewards inside the window count: the episode in
    progress at the start and the one still running at the end get partial sums.

    Args:
      r_t: [T] reward received after the action.
      cut_t: [T] 1.0 where the episode ended here (terminated or truncated); bool also
        accepted.

    Returns:
      [T] the episode total for every step of that episode.
    """
    chex.assert_rank([r_t, cut_t], 1)
    chex.assert_equal_shape([r_t, cut_t])
    ended_t = cut_t != 0

    def reward_to_go(acc, xs):
        r, ended = xs
        acc = r + jnp.where(ended, jnp.zeros_like(acc), acc)
        return acc, acc

    _, to_go_t = jax.lax.scan(reward_to_go, jnp.zeros_like(r_t[0]), (r_t, ended_t),
                              reverse=True)
    # Step t starts an episode when it is the first in the window or follows a cut.
    starts_t = jnp.concatenate([jnp.ones_like(ended_t[:1]), ended_t[:-1]])

    def propagate(total, xs):
        to_go, starts = xs
        total = jnp.where(starts, to_go, total)
        return total, total

    _, total_t = jax.lax.scan(propagate, jnp.zeros_like(r_t[0]), (to_go_t, starts_t))
    return total_t


batched_discounted_returns = jax.vmap(discounted_returns, in_axes=1, out_axes=1)  # [T, N]
batched_episode_returns = jax.vmap(episode_returns, in_axes=1, out_axes=1)  # [T, N]


def n_step_return(r_t: jax.Array, discount_t: jax.Array,
                  cut_t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The n-step return of a window's first transition, cut at its first episode end.

    Sutton & Barto 2018, eq. 7.1, `G = r_0 + g r_1 + ... + g^{n-1} r_{n-1} + g^n Q(s_n)`,
    in our indexing and truncation-aware: rewards are summed up to and including the first
    transition `k` that ends an episode (or the last one, `k = L - 1`), and the bootstrap
    is the value after transition `k` (its `next_obs`: the pre-reset observation on a
    truncation) times the product of discounts through `k` (zero after a termination).
    Returned in parts so that a distributional target can shift and scale its atoms by
    them (`G + discount * z`, Bellemare et al. 2017 with n-step as in Hessel et al. 2018)
    and the caller evaluates the bootstrap network only at `next_obs[k]`.

    Args:
      r_t: [L] rewards of L consecutive transitions of one env.
      discount_t: [L] gamma * (1 - terminated).
      cut_t: [L] 1.0 (or True) where the episode ended at that transition (terminated or
        truncated).

    Returns:
      `(g, discount, k)`: scalar discounted reward sum through `k`, scalar product of the
      discounts through `k`, and int32 `k`. The n-step target is `g + discount * v(k)`.
    """
    chex.assert_rank([r_t, discount_t, cut_t], 1)
    chex.assert_equal_shape([r_t, discount_t, cut_t])
    not_cut = 1.0 - (cut_t != 0).astype(r_t.dtype)
    # Transition i counts iff no episode ended before it (exclusive cumulative products).
    ones = jnp.ones_like(r_t[:1])
    alive_t = jnp.cumprod(jnp.concatenate([ones, not_cut[:-1]]))
    weight_t = jnp.cumprod(jnp.concatenate([ones, discount_t[:-1]]))
    # `where`, not a product: rewards after the cut belong to the next episode.
    g = jnp.sum(jnp.where(alive_t > 0, weight_t * r_t, 0.0))
    k = (jnp.sum(alive_t) - 1.0).astype(jnp.int32)
    discount = jnp.cumprod(discount_t)[k]
    return g, discount, k


def n_step_target(r_t: jax.Array, discount_t: jax.Array, cut_t: jax.Array,
                  q_t: jax.Array) -> jax.Array:
    """The n-step bootstrapped target `G + discount * q_t[k]` of a window (see `n_step_return`).

    Args:
      r_t: [L] rewards of L consecutive transitions of one env.
      discount_t: [L] gamma * (1 - terminated).
      cut_t: [L] 1.0 where the episode ended at that transition (terminated or truncated).
      q_t: [L] bootstrap value of each transition's `next_obs` (e.g. `max_a Q_target`);
        only `q_t[k]` is used, so anything finite elsewhere.

    Returns:
      scalar target for the window's first transition.
    """
    chex.assert_equal_shape([r_t, q_t])
    g, discount, k = n_step_return(r_t, discount_t, cut_t)
    return g + discount * q_t[k]
