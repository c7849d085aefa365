"""Optimizers: the factory every agent uses, non-finite skipping, one gradient step, and
one optax state per parameter group.

Learning rates and clipping thresholds are traced values from `HParams`, so a vmapped
sweep over them compiles once; the optimizer is rebuilt from `hparams` wherever it is
needed (`init` and `update`), which costs nothing after tracing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxrl.types import Metrics, Params

OPTIMIZERS = ("adam", "rmsprop")


def make_optimizer(name: str, learning_rate: jax.Array, max_grad_norm: jax.Array,
                   anneal_steps: int | None, *,
                   skip_nonfinite: int = 0) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam or RMSprop (eps 1e-5, RMSprop decay 0.99).

    Args:
      name: `adam` or `rmsprop`.
      learning_rate: traced scalar, so a sweep over it compiles once.
      max_grad_norm: traced clipping threshold.
      anneal_steps: if given, the rate decays linearly to 0 over this many updates.
      skip_nonfinite: if positive, see `skipping_nonfinite`.
    """
    lr = learning_rate
    if anneal_steps is not None:
        lr = optax.linear_schedule(learning_rate, 0.0, anneal_steps)
    if name == "rmsprop":
        opt = optax.rmsprop(learning_rate=lr, decay=0.99, eps=1e-5)
    else:
        opt = optax.adam(learning_rate=lr, eps=1e-5)
    return skipping_nonfinite(optax.chain(optax.clip_by_global_norm(max_grad_norm), opt),
                              skip_nonfinite)


def skipping_nonfinite(tx: optax.GradientTransformation,
                       max_in_a_row: int) -> optax.GradientTransformation:
    """`tx` that skips updates with a NaN or infinite gradient (opt-in; 0 returns `tx`).

    optax's `apply_if_finite`: a skipped update leaves parameters and optimizer state as
    they were and is counted (`opt/nonfinite_skipped` in the metrics). After `max_in_a_row`
    consecutive skips the next non-finite update goes through, so the runner's non-finite
    guard stops the run with the seed and iteration: skipping never hides a divergence.
    """
    if max_in_a_row <= 0:
        return tx
    return optax.apply_if_finite(tx, max_consecutive_errors=max_in_a_row)


def skipped_updates(opt_state: optax.OptState) -> jax.Array:
    """Updates skipped so far by `skipping_nonfinite` (int32 scalar; 0 when not used)."""
    return jnp.asarray(optax.tree.get(opt_state, "total_notfinite", default=0), jnp.int32)


def apply_gradients(state: Any, grads: Params, tx: optax.GradientTransformation) -> Any:
    """One step of `tx` on `state.params` (and `state.opt_state`); counts it in `state.step`."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state, step=state.step + 1)


def gradient_step(loss_fn: Callable[..., tuple[jax.Array, Metrics]], state: Any, batch: Any,
                  tx: optax.GradientTransformation, *args: Any) -> tuple[Any, Metrics]:
    """One step of `tx` on `loss_fn(params, batch, *args) -> (loss, metrics)`.

    Returns:
      `(state, metrics)`: the loss metrics plus `opt/grad_norm` (before clipping) and
      `opt/nonfinite_skipped`.
    """
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch, *args)
    state = apply_gradients(state, grads, tx)
    return state, {**metrics, "opt/grad_norm": optax.tree.norm(grads),
                   "opt/nonfinite_skipped": skipped_updates(state.opt_state)}


class PartOptimizer:
    """Separate optax transformations for the top-level groups of a params dict.

    `init(params) -> {group: state}` (so it is built like any optax transformation), and
    `step` updates one group, optionally only where a (traced) condition holds, which a
    delayed actor update needs: optax's `multi_transform` updates every group in one call,
    but the actor's gradient must be taken after the critic's update, and a skipped step
    must leave Adam's moments untouched.
    """

    def __init__(self, txs: dict[str, optax.GradientTransformation]):
        self.txs = txs

    def init(self, params: Params) -> dict:
        return {name: tx.init(params[name]) for name, tx in self.txs.items()}

    def step(self, params: Params, opt_state: dict, name: str, grads: Params,
             apply: jax.Array | bool = True) -> tuple[Params, dict]:
        """Params and optimizer state after updating group `name` by `grads` (if `apply`)."""
        updates, new = self.txs[name].update(grads, opt_state[name], params[name])
        group = optax.apply_updates(params[name], updates)
        if apply is not True:
            keep = lambda n, o: jnp.where(apply, n, o)  # noqa: E731
            group = jax.tree.map(keep, group, params[name])
            new = jax.tree.map(keep, new, opt_state[name])
        return {**params, name: group}, {**opt_state, name: new}

    def skipped(self, opt_state: dict) -> jax.Array:
        """Non-finite updates skipped so far, all groups together (see `skipping_nonfinite`)."""
        return sum(skipped_updates(s) for s in opt_state.values())
