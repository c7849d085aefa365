"""Timing helpers shared by the profiling scripts in `bench/profile/`."""

from __future__ import annotations

import time

import jaxrl  # noqa: F401 - sets jaxrl's XLA:CPU flag before JAX starts its backend
import jax


def best_time(fn, *args, repeats: int = 5) -> float:
    """Best wall time (s) of `repeats` calls of `fn(*args)` after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def scanned(body, n: int):
    """`f(state, key, *rest)`: `body(state, key_i, *rest) -> state` scanned over `n` keys.

    Timing `n` steps inside one compiled program measures the steps, not dispatch.
    """

    def f(state, key, *rest):
        step = lambda s, k: (body(s, k, *rest), None)  # noqa: E731
        return jax.lax.scan(step, state, jax.random.split(key, n))[0]

    return f
