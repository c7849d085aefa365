"""Trust-region pieces for TRPO: Fisher-vector products, conjugate gradient, line search.

Schulman et al. 2015, "Trust Region Policy Optimization", appendix C: the natural-gradient
direction `x = F^-1 g` is found by conjugate gradient using only products `F v`, each the
directional derivative of the gradient of the mean KL (no Fisher matrix is ever formed);
the step `sqrt(2 delta / x^T F x) x` is then shrunk geometrically until the exact KL is
within `delta` and the surrogate improves. Parameters are pytrees throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Params = Any


def fisher_vector_product(kl_fn: Callable[[Params], jax.Array], params: Params,
                          vector: Params, damping: jax.Array | float = 0.0) -> Params:
    """`(F + damping I) v`, with `F` the Hessian of `kl_fn` at `params`.

    At `params = theta_old`, the Hessian of `theta -> mean KL(pi_old || pi_theta)` is the
    Fisher information of the policy averaged over the batch's states (TRPO, appendix C.1).
    Computed as a forward-over-reverse product: one `jvp` of `grad(kl_fn)`.

    Args:
      kl_fn: `params -> scalar` mean KL to the fixed old policy.
      params: where to take the product (the old parameters).
      vector: a tree shaped like `params`.
      damping: added multiple of `vector`, which keeps CG stable when `F` is near-singular.
    """
    _, hvp = jax.jvp(jax.grad(kl_fn), (params,), (vector,))
    return jax.tree.map(lambda h, v: h + damping * v, hvp, vector)


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, *, max_iters: int,
                       tol: float = 1e-10) -> Params:
    """Solve `A x = b` for a symmetric positive-definite `A` given only `matvec(v) = A v`.

    Nocedal & Wright 2006, algorithm 5.2, from `x = 0`, over pytrees. Written here rather
    than taken from `jax.scipy.sparse.linalg.cg`: that one wraps the solve in
    `lax.custom_linear_solve`, which returned NaN under `vmap` (over seeds) with our
    forward-over-reverse Fisher product in jax 0.10.2. Runs exactly `max_iters` iterations
    (a `fori_loop`, the same cost for every seed), freezing once the squared residual is
    below `tol * |b|^2` so that a converged solve never divides 0 by 0.
    """
    zeros = jax.tree.map(jnp.zeros_like, b)
    rs0 = optax.tree.vdot(b, b)
    threshold = tol * rs0

    def body(_, carry):
        x, r, p, rs = carry
        active = rs > threshold
        ap = matvec(p)
        pap = optax.tree.vdot(p, ap)
        alpha = jnp.where(active & (pap > 0), rs / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = jax.tree.map(lambda x, p: x + alpha * p, x, p)
        r = jax.tree.map(lambda r, ap: r - alpha * ap, r, ap)
        rs_new = optax.tree.vdot(r, r)
        beta = jnp.where(active, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        p = jax.tree.map(lambda r, p: jnp.where(active, r + beta * p, p), r, p)
        return x, r, p, jnp.where(active, rs_new, rs)

    x, _, _, _ = jax.lax.fori_loop(0, max_iters, body, (zeros, b, b, rs0))
    return x


def natural_step(grad: Params, fvp: Callable[[Params], Params], max_kl: jax.Array, *,
                 cg_iters: int) -> tuple[Params, jax.Array]:
    """The largest natural-gradient step whose quadratic KL model equals `max_kl`.

    Args:
      grad: gradient `g` of the surrogate (to be maximised).
      fvp: `v -> F v`.
      max_kl: the trust-region size `delta`.
      cg_iters: conjugate-gradient iterations.

    Returns:
      `(step, expected_improvement)`: `step = sqrt(2 delta / x^T F x) x` with `x ~ F^-1 g`,
      and `g . step`, the surrogate's first-order improvement. A degenerate direction
      (`x^T F x <= 0`, e.g. a zero gradient) gives a zero step.
    """
    x = conjugate_gradient(fvp, grad, max_iters=cg_iters)
    shs = optax.tree.vdot(x, fvp(x))
    ok = shs > 0.0
    scale = jnp.where(ok, jnp.sqrt(2.0 * max_kl / jnp.where(ok, shs, 1.0)), 0.0)
    step = jax.tree.map(lambda v: scale * v, x)
    return step, optax.tree.vdot(grad, step)


def line_search(params: Params, step: Params, surrogate_fn: Callable[[Params], jax.Array],
                kl_fn: Callable[[Params], jax.Array], max_kl: jax.Array,
                backtrack_coef: jax.Array, *, max_backtracks: int):
    """Backtracking line search that accepts only steps inside the trust region.

    Tries `params + coef^k step` for `k = 0 .. max_backtracks - 1` (all candidates are
    evaluated at once, which suits accelerators better than a data-dependent loop) and
    takes the first whose exact mean KL is `<= max_kl` and whose surrogate is higher than
    at `params`. If none is, `params` is returned unchanged.

    Returns:
      `(new_params, metrics)` with `trpo/accepted` (0/1), `trpo/step_fraction` (0 if
      rejected), `trpo/kl` and `trpo/improvement` of the taken step.
    """
    fractions = backtrack_coef ** jnp.arange(max_backtracks, dtype=jnp.float32)
    surrogate_0 = surrogate_fn(params)

    def evaluate(fraction):
        candidate = jax.tree.map(lambda p, s: p + fraction * s, params, step)
        return candidate, surrogate_fn(candidate), kl_fn(candidate)

    candidates, surrogates, kls = jax.vmap(evaluate)(fractions)
    improvement = surrogates - surrogate_0
    # A 1e-4 relative margin: the same KL evaluated outside this vmap may round ~1e-5
    # higher, and the constraint must hold however it is recomputed.
    ok = ((kls <= max_kl * (1.0 - 1e-4)) & (improvement > 0.0) & jnp.isfinite(surrogates)
          & jnp.isfinite(kls))
    first = jnp.argmax(ok)  # index of the first acceptable step (0 when none is)
    accepted = ok.any()
    fraction = jnp.where(accepted, fractions[first], 0.0)
    # The very candidate whose KL was measured, not a recomputation that might round
    # differently: the constraint then holds exactly for what is returned.
    new_params = jax.tree.map(lambda c, p: jnp.where(accepted, c[first], p), candidates, params)
    metrics = {"trpo/accepted": accepted.astype(jnp.float32), "trpo/step_fraction": fraction,
               "trpo/kl": jnp.where(accepted, kls[first], 0.0),
               "trpo/improvement": jnp.where(accepted, improvement[first], 0.0)}
    return new_params, metrics
