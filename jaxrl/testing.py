"""Test helpers for agents, public so users can property-test their own agents with chex:
the probe environments of `jaxrl.envs.probes` (tiny MDPs with known values), and checks
that a function never retraces, that a pytree is finite, that vmapped seeds match separate
runs and that different seeds differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import logger, runner
from jaxrl.agent import Agent
from jaxrl.envs.probes import (PROBES, ProbeActionReward, ProbeConstantReward,
                               ProbeOneStepDelay, ProbeRewardEqualsObs, ProbeTimeLimitEndless)

__all__ = ["PROBES", "ProbeActionReward", "ProbeConstantReward", "ProbeOneStepDelay",
           "ProbeRewardEqualsObs", "ProbeTimeLimitEndless", "assert_compiles_once",
           "assert_tree_finite", "assert_vmap_matches_separate", "assert_seeds_differ",
           "run_chunks_compiling_once"]


def assert_compiles_once(fn: Callable, arg_sets: Sequence[tuple], *,
                         static_argnames: Sequence[str] = ()) -> list[Any]:
    """Jit `fn` and call it on each argument tuple; fail if it is traced more than once.

    `fn` must be a plain Python function (chex reads its source), not a `partial` or an
    already-jitted function. Argument tuples must share shapes and dtypes.

    Returns:
      The outputs of every call.
    """
    chex.clear_trace_counter()
    jitted = jax.jit(chex.assert_max_traces(fn, n=1), static_argnames=tuple(static_argnames))
    outputs = [jitted(*args) for args in arg_sets]
    jax.block_until_ready(outputs)
    return outputs


def run_chunks_compiling_once(agent: Agent, config: Any, hparams: Any, chunk_iterations: int,
                              *, seed: int = 0) -> tuple[Any, list[Any]]:
    """Run `config` to its end through one jitted runner chunk; fail if it is traced twice.

    The chunk (`runner.make_chunk`) takes `chunk_iterations` iterations per call; the last
    call may run past the end (those iterations keep the state, their metrics are NaN).

    Returns:
      `(state, [metrics of each call])`.
    """
    init_fn, iteration_fn = runner.parts(agent, config)
    state = jax.jit(init_fn)(jax.random.key(seed), hparams)
    chunk = runner.make_chunk(iteration_fn, chunk_iterations, config.num_iterations)
    chex.clear_trace_counter()
    jitted = jax.jit(chex.assert_max_traces(chunk, n=1))
    outputs = []
    for first in range(0, config.num_iterations, chunk_iterations):
        state, metrics = jitted(state, jax.random.key(seed + 1), jnp.int32(first), hparams)
        outputs.append(metrics)
    return state, outputs


def assert_tree_finite(tree: Any, name: str = "tree") -> None:
    """Fail, naming the offending leaves, if any floating leaf has a NaN or an infinity."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad.append(jax.tree_util.keystr(path))
    if bad:
        raise AssertionError(f"{name} has non-finite leaves: {', '.join(bad)}")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def assert_vmap_matches_separate(train: Callable, keys: jax.Array, hparams: Any, *,
                                 rtol: float = 1e-6, atol: float = 1e-6,
                                 exact: Callable[[Any], bool] | None = None) -> Any:
    """`jit(vmap(train))(keys)` equals `jit(train)(keys[s])` for every seed `s`.

    Integer, boolean and key leaves (actions, counters, PRNG keys) must match exactly;
    floating leaves to `rtol`/`atol` (JAX does not promise bitwise equality of batched
    reductions). `exact(leaf)` can mark more leaves for exact comparison.

    Returns:
      The batched output, for further checks without compiling it again.
    """
    batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, hparams)
    single = jax.jit(train)
    for s in range(keys.shape[0]):
        separate = single(keys[s], hparams)
        mine = jax.tree.map(lambda x: x[s], batched)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(mine),
                                jax.tree.leaves(separate)):
            where = f"seed {s} leaf {jax.tree_util.keystr(path)}"
            if _is_key(a):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            a, b = np.asarray(a), np.asarray(b)
            if (not np.issubdtype(a.dtype, np.floating)) or (exact and exact(a)):
                np.testing.assert_array_equal(a, b, err_msg=where)
            else:
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=where)
    return batched


def assert_seeds_differ(values: np.ndarray, name: str = "values") -> None:
    """Fail unless every pair of seeds (rows of `values`) differs somewhere."""
    values = np.asarray(values).reshape(values.shape[0], -1)
    for i in range(values.shape[0]):
        for j in range(i + 1, values.shape[0]):
            if np.array_equal(values[i], values[j]):
                raise AssertionError(f"{name}: seeds {i} and {j} are identical")


def learning_check(agent: Agent, config: Any, hparams: Any, *, num_seeds: int = 4,
                   seed: int = 0) -> np.ndarray:
    """Train `num_seeds` vmapped seeds as `jaxrl train` does and return `[S]` final returns.

    The final return is the CLI's: the mean return of the training episodes completed in
    the last 5% of iterations (`jaxrl.logger.final_returns`). Prints the per-seed values so
    a learning test's log records them.
    """
    init_fn, iteration_fn = runner.parts(agent, config)
    start = time.perf_counter()
    result = runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                        steps_per_iteration=config.steps_per_iteration, hparams=hparams,
                        seed=seed, num_seeds=num_seeds, num_envs=config.num_envs)
    per_seed = logger.final_returns(result.metrics)
    name = f"{agent.name} ({type(config).__name__})"
    print(f"{name} on {config.env}: per-seed final return "
          f"{np.round(per_seed, 1)}, mean {np.nanmean(per_seed):.1f} "
          f"({time.perf_counter() - start:.0f} s with compilation)")
    return per_seed


def constant_actor_critic_params(params: Any, logits_or_mean: Any, value: float) -> Any:
    """Copy `jaxrl.networks.make_actor_critic` parameters so that the policy head outputs
    `logits_or_mean` and the value head `value` for every observation.

    The heads' kernels are zeroed and their biases set, which makes losses computable by
    hand (e.g. a two-action policy `[0.25, 0.75]` from logits `[0, log 3]`).
    """
    p = params["params"]
    head = p["PolicyHead_0"]["Dense_0"]
    vhead = p["ValueHead_0"]["Dense_0"]
    return {"params": {
        **p,
        "PolicyHead_0": {**p["PolicyHead_0"], "Dense_0": {
            "kernel": jnp.zeros_like(head["kernel"]),
            "bias": jnp.asarray(logits_or_mean, jnp.float32)}},
        "ValueHead_0": {"Dense_0": {"kernel": jnp.zeros_like(vhead["kernel"]),
                                    "bias": jnp.asarray([value], jnp.float32)}}}}


class StopAt:
    """A `runner.Callback` that interrupts a run as Ctrl-C does (`KeyboardInterrupt`) at the
    first chunk end at or after `iteration`, after the chunk's checkpoint: for resume tests."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_chunk(self, first_iteration: int, metrics: dict, info: dict) -> None:
        if info["iteration"] >= self.iteration:
            raise KeyboardInterrupt

    def on_end(self, result: Any) -> None:
        pass
