"""The training loop: composes an agent's `init` and `iteration` into runs.

Two forms of the same run:

* `make_train(init, iteration, num_iterations) -> train(key, hparams)`: the whole run as
  one pure function, to be `jax.jit`-ed and `jax.vmap`-ed over seeds and hyperparameters.
* `run(...)`: the host loop used by the CLI. It jits a chunk of K iterations vmapped over
  seeds, and between chunks it logs, advances the progress bar and (later) checkpoints.
  Iteration `i` always uses `fold_in(run_key, i)`, so a chunked run computes exactly what
  the one-function run computes.

Scaling across devices lives here and nowhere else: `run(devices=D)` shards the seed axis
(or, for one seed, the env axis of `state.env_state` and `state.obs`) over a 1-D
`jax.sharding.Mesh`; jit's sharding propagation partitions the rest.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl.config import ConfigError
from jaxrl.types import Metrics, PRNGKey

InitFn = Callable[[PRNGKey, Any], Any]
IterationFn = Callable[[Any, PRNGKey, Any], tuple[Any, Metrics]]


def _scan_iterations(iteration: IterationFn, state, run_key: PRNGKey, indices: jax.Array,
                     hparams, num_iterations: int | None = None):
    """Scan `iteration` over iteration `indices`, skipping those >= `num_iterations`."""

    def body(state, i):
        key = jax.random.fold_in(run_key, i)
        if num_iterations is None:
            return iteration(state, key, hparams)
        # The last chunk may run past the end of training: those iterations keep the state
        # as it is (a real `cond`: `i` is not batched), and their metrics are dropped.
        shapes = jax.eval_shape(iteration, state, key, hparams)[1]
        nan_metrics = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype)
                                   if jnp.issubdtype(s.dtype, jnp.floating)
                                   else jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.cond(i < num_iterations,
                            lambda s: iteration(s, key, hparams),
                            lambda s: (s, nan_metrics), state)

    return jax.lax.scan(body, state, indices)


def make_train(init: InitFn, iteration: IterationFn, num_iterations: int):
    """Compose an agent's `init` and `iteration` into one pure training run.

    Args:
      init: `init(key, hparams) -> state`.
      iteration: `iteration(state, key, hparams) -> (state, metrics)`; metrics are scalars.
      num_iterations: iterations in the run (static).

    Returns:
      `train(key, hparams) -> (state, metrics)` with metrics stacked `[num_iterations]`.
      Vmap it over keys for seeds (`in_axes=(0, None)`) and over hparams for sweeps.
    """

    def train(key: PRNGKey, hparams):
        init_key, run_key = jax.random.split(key)
        state = init(init_key, hparams)
        return _scan_iterations(iteration, state, run_key,
                                jnp.arange(num_iterations, dtype=jnp.int32), hparams)

    return train


def bind(init: Callable, iteration: Callable, config: Any) -> tuple[InitFn, IterationFn]:
    """Close an agent's `init(key, config, hparams)` and `iteration(state, key, hparams,
    config)` over a static `config`, giving the `(init, iteration)` pair the runner takes."""
    return (lambda key, hparams: init(key, config, hparams),
            lambda state, key, hparams: iteration(state, key, hparams, config))


def make_chunk(iteration: IterationFn, chunk_iterations: int, num_iterations: int):
    """Build `chunk(state, run_key, start, hparams) -> (state, metrics[K])`.

    Runs iterations `start .. start+K-1` of a run of `num_iterations`; iterations past the
    end leave the state unchanged (their metrics are NaN and dropped by `run`).
    """
    masked = num_iterations % chunk_iterations != 0

    def chunk(state, run_key: PRNGKey, start: jax.Array, hparams):
        indices = start + jnp.arange(chunk_iterations, dtype=jnp.int32)
        return _scan_iterations(iteration, state, run_key, indices, hparams,
                                num_iterations if masked else None)

    return chunk


def split_seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Per-seed keys `[S]`: seed `s` of a vmapped run equals `train(keys[s], hparams)`."""
    return jax.random.split(jax.random.key(seed), num_seeds)


class Callback(Protocol):
    """Host-side observer of a run (logger, progress bar, checkpointer)."""

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        """`metrics[name]` is `[S, K]` for iterations `first_iteration ..`."""

    def on_end(self, result: "RunResult") -> None:
        """Called once after the last chunk."""

    def on_abort(self) -> None:
        """Optional: called instead of `on_end` when the run stops with an error."""


@dataclasses.dataclass
class RunResult:
    """What `run` returns: final state `[S, ...]`, stacked metrics and timings."""

    state: Any
    metrics: dict[str, np.ndarray]  # [S, num_iterations]
    compile_time_s: float
    wall_time_s: float
    train_time_s: float
    env_steps: int  # per seed


def choose_devices(requested: int | None, num_seeds: int, num_envs: int | None) -> int:
    """How many local devices to shard over.

    `None` picks the most devices that divide the seed axis (or, for one seed, the env
    axis); an explicit count must divide that axis and not exceed the devices present.
    """
    available = jax.local_device_count()
    axis = num_seeds if (num_seeds > 1 or num_envs is None) else num_envs
    axis_name = "num_seeds" if (num_seeds > 1 or num_envs is None) else "num_envs"
    if requested is None:
        return max(d for d in range(1, available + 1) if axis % d == 0)
    if type(requested) is not int or requested <= 0:
        raise ConfigError(f"devices must be a positive integer, got {requested!r}")
    if requested > available:
        raise ConfigError(f"devices must be at most {available} (local devices present), "
                          f"got {requested}")
    if axis % requested:
        raise ConfigError(f"devices ({requested}) must divide {axis_name} ({axis})")
    return requested


def _shardings(state_shapes, mesh: Mesh, shard_seeds: bool, env_fields: Sequence[str]):
    """Sharding for every leaf of a seed-batched state `[S, ...]`."""
    replicated = NamedSharding(mesh, PartitionSpec())
    if shard_seeds:
        return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec("d")), state_shapes)
    env_sharded = NamedSharding(mesh, PartitionSpec(None, "d"))
    out = jax.tree.map(lambda _: replicated, state_shapes)
    fields = {f: getattr(state_shapes, f) for f in env_fields if hasattr(state_shapes, f)}
    if not fields or not hasattr(out, "replace"):  # no env axis we know of: replicate
        return out
    return out.replace(**{f: jax.tree.map(lambda _: env_sharded, v) for f, v in fields.items()})


class NonFiniteError(RuntimeError):
    """Training produced NaN or infinite values; the message names seed, iteration, leaves."""


GUARDED_METRIC_PREFIXES = ("loss/", "opt/")
GUARDED_STATE_FIELDS = ("params", "target_params", "opt_state")


@jax.jit
def _finite_per_seed(tree):
    """For each floating leaf `[S, ...]` of `tree`: `[S]` bools, all elements finite."""
    return jax.tree.map(
        lambda x: jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim)))
        if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.ones(x.shape[:1], bool), tree)


def check_finite(state, metrics: dict[str, np.ndarray], first_iteration: int) -> None:
    """Raise `NonFiniteError` if a guarded metric or state leaf is NaN or infinite.

    Guarded: metrics named `loss/*` and `opt/*` (`[S, K]`, checked per iteration) and the
    state fields `params`, `target_params`, `opt_state` when present (checked per seed at
    the end of the chunk). Iterations are numbered from 1, as in `metrics.jsonl`.
    """
    bad_metrics = []
    for name, values in metrics.items():
        if name.startswith(GUARDED_METRIC_PREFIXES):
            for s, k in zip(*np.nonzero(~np.isfinite(values))):
                bad_metrics.append((int(s), first_iteration + int(k) + 1, name))
    if bad_metrics:
        seed, it, _ = min(bad_metrics, key=lambda x: (x[1], x[0]))
        names = sorted({n for s, i, n in bad_metrics if (s, i) == (seed, it)})
        raise NonFiniteError(f"non-finite values in seed {seed} at iteration {it}: "
                             f"{', '.join(names)}")
    fields = {f: getattr(state, f) for f in GUARDED_STATE_FIELDS if hasattr(state, f)}
    if not fields:
        return
    flags = jax.device_get(_finite_per_seed(fields))
    bad = {}  # seed -> names of non-finite leaves
    for field, tree in flags.items():
        for path, ok in jax.tree_util.tree_leaves_with_path(tree):
            for seed in np.nonzero(~np.asarray(ok))[0]:
                bad.setdefault(int(seed), []).append(
                    f"state.{field}{jax.tree_util.keystr(path)}")
    if bad:
        seed = min(bad)
        leaves = bad[seed]
        last = first_iteration + next(iter(metrics.values())).shape[1] if metrics else "?"
        raise NonFiniteError(
            f"non-finite values in seed {seed} by iteration {last} (chunk from iteration "
            f"{first_iteration + 1}): {', '.join(leaves[:5])}"
            + (f" and {len(leaves) - 5} more" if len(leaves) > 5 else ""))


def run(init: InitFn, iteration: IterationFn, *, num_iterations: int, steps_per_iteration: int,
        hparams, seed: int = 0, num_seeds: int = 1, hparams_batched: bool = False,
        chunk_iterations: int | None = None, devices: int | None = None,
        num_envs: int | None = None, callbacks: Sequence[Callback] = (),
        env_fields: Sequence[str] = ("env_state", "obs"), check_finite_values: bool = True
        ) -> RunResult:
    """Train `num_seeds` seeds in chunks, calling `callbacks` on the host between chunks.

    Args:
      init, iteration: the agent's pure functions (see `make_train`).
      num_iterations: iterations in the run.
      steps_per_iteration: env steps one iteration takes per seed (for progress and rates).
      hparams: `HParams`; with `hparams_batched`, every leaf has a leading axis `[S]`.
      seed: base seed; seed `s` uses `split_seed_keys(seed, num_seeds)[s]`.
      chunk_iterations: iterations per jitted chunk (default: about 20 chunks per run).
      devices: local devices to shard over (None: automatic; 1: no sharding).
      num_envs: env copies per seed, for sharding the env axis of a single seed.
      check_finite_values: after each chunk, stop with `NonFiniteError` (naming the seed,
        the iteration and the leaves) if losses, parameters or optimizer state are not
        finite; the callbacks never see that chunk, so logs end with the last good chunk.

    Returns:
      `RunResult` with metrics `[S, num_iterations]` as NumPy arrays.
    """
    if type(num_iterations) is not int or num_iterations <= 0:
        raise ConfigError(f"num_iterations must be a positive integer, got {num_iterations!r}")
    if chunk_iterations is not None and (type(chunk_iterations) is not int
                                         or chunk_iterations <= 0):
        raise ConfigError(f"chunk_iterations must be a positive integer, got "
                          f"{chunk_iterations!r}")
    if chunk_iterations is None:
        chunk_iterations = max(1, math.ceil(num_iterations / 20))
    chunk_iterations = min(chunk_iterations, num_iterations)
    num_devices = choose_devices(devices, num_seeds, num_envs)
    t_start = time.perf_counter()

    keys = split_seed_keys(seed, num_seeds)
    hp_axis = 0 if hparams_batched else None

    def init_one(key, hp):
        init_key, run_key = jax.random.split(key)
        return init(init_key, hp), run_key

    chunk_one = make_chunk(iteration, chunk_iterations, num_iterations)
    init_fn = jax.jit(jax.vmap(init_one, in_axes=(0, hp_axis)))
    chunk_fn = jax.jit(jax.vmap(chunk_one, in_axes=(0, 0, None, hp_axis)), donate_argnums=0)

    if num_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:num_devices]), ("d",))
        shard_seeds = num_seeds % num_devices == 0 and num_seeds > 1
        seed_sharding = NamedSharding(mesh, PartitionSpec("d" if shard_seeds else None))
        keys = jax.device_put(keys, seed_sharding)
        hparams = jax.device_put(hparams, seed_sharding if hparams_batched
                                 else NamedSharding(mesh, PartitionSpec()))
        state_shapes, _ = jax.eval_shape(init_fn, keys, hparams)
        init_fn = jax.jit(jax.vmap(init_one, in_axes=(0, hp_axis)),
                          out_shardings=(_shardings(state_shapes, mesh, shard_seeds, env_fields),
                                         seed_sharding))

    collected: dict[str, list[np.ndarray]] = {}
    try:
        t0 = time.perf_counter()
        init_compiled = init_fn.lower(keys, hparams).compile()
        state, run_keys = init_compiled(keys, hparams)
        chunk_compiled = chunk_fn.lower(state, run_keys, jnp.int32(0), hparams).compile()
        compile_time = time.perf_counter() - t0
        t_train = time.perf_counter()
        for first in range(0, num_iterations, chunk_iterations):
            state, metrics = chunk_compiled(state, run_keys, jnp.int32(first), hparams)
            metrics = jax.device_get(metrics)
            count = min(chunk_iterations, num_iterations - first)
            metrics = {k: np.asarray(v)[:, :count] for k, v in metrics.items()}
            if check_finite_values:
                check_finite(state, metrics, first)
            for k, v in metrics.items():
                collected.setdefault(k, []).append(v)
            info = {"iteration": first + count,
                    "env_steps": (first + count) * steps_per_iteration,
                    "elapsed_s": time.perf_counter() - t_train, "num_seeds": num_seeds}
            for cb in callbacks:
                cb.on_chunk(first, metrics, info)
    except BaseException:
        for cb in callbacks:  # close files and progress bars; the error goes on up
            if hasattr(cb, "on_abort"):
                cb.on_abort()
        raise
    jax.block_until_ready(state)
    train_time = time.perf_counter() - t_train
    result = RunResult(
        state=state,
        metrics={k: np.concatenate(v, axis=1) for k, v in collected.items()},
        compile_time_s=compile_time, wall_time_s=time.perf_counter() - t_start,
        train_time_s=train_time, env_steps=num_iterations * steps_per_iteration)
    for cb in callbacks:
        cb.on_end(result)
    return result
