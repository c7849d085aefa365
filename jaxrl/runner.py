"""The training loop: composes an agent's `init` and `iteration` into runs.

Two forms of the same run: `make_train(agent, config) -> train(key, hparams)`, one pure
function to `jax.jit` and `jax.vmap` over seeds and hyperparameters (`compose` for
functions that are not an `Agent`), and `run(...)`, the CLI's host loop: a jitted chunk
of K iterations vmapped over seeds (`vmap_seeds`), and between chunks the `Callback`s
(logs, progress bar, checkpoints). Iteration `i` always uses `fold_in(run_key, i)`, so a
chunked run computes exactly what the one-function run computes, and a run resumed at
iteration `N` (`run(start=Start(state, run_keys, N))`) continues exactly like the
uninterrupted one.

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

from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError, check_int
from jaxrl.envs.wrappers import find_guard_state
from jaxrl.guard import Watchdog
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


def compose(init: InitFn, iteration: IterationFn, num_iterations: int):
    """Compose `init(key, hparams) -> state` and `iteration(state, key, hparams) -> (state,
    metrics)` into `train(key, hparams) -> (state, metrics[num_iterations])`, one pure run.

    Vmap `train` over keys for seeds (`in_axes=(0, None)`) and over hparams for sweeps.
    """

    def train(key: PRNGKey, hparams):
        init_key, run_key = jax.random.split(key)
        state = init(init_key, hparams)
        return _scan_iterations(iteration, state, run_key,
                                jnp.arange(num_iterations, dtype=jnp.int32), hparams)

    return train


def parts(agent: Agent, config: Any, setup: Setup | None = None) -> tuple[InitFn, IterationFn]:
    """The agent's `(init(key, hparams), iteration(state, key, hparams))` for `config`.

    `agent.setup(config)` is called here, once, outside any trace (or `setup` is used as
    given), and both functions close over the result.
    """
    setup = agent.setup(config) if setup is None else setup
    return (lambda key, hparams: agent.init(key, setup, hparams),
            lambda state, key, hparams: agent.iteration(state, key, hparams, setup))


def make_train(agent: Agent, config: Any, setup: Setup | None = None):
    """`train(key, hparams) -> (state, metrics[num_iterations])`: the agent's whole run
    for `config` as one pure function, to be `jax.jit`-ed and `jax.vmap`-ed."""
    return compose(*parts(agent, config, setup), config.num_iterations)


def make_chunk(iteration: IterationFn, chunk_iterations: int, num_iterations: int, *,
               first_iteration: int = 0):
    """Build `chunk(state, run_key, start, hparams) -> (state, metrics[K])`.

    Runs iterations `start .. start+K-1` of a run of `num_iterations`; iterations past the
    end leave the state unchanged (their metrics are NaN and dropped by `run`). Chunks
    start at `first_iteration + j * K`; the masking is compiled in only when the last of
    them runs past the end, so a run resumed on that grid compiles the same program.
    """
    masked = (num_iterations - first_iteration) % chunk_iterations != 0

    def chunk(state, run_key: PRNGKey, start: jax.Array, hparams):
        indices = start + jnp.arange(chunk_iterations, dtype=jnp.int32)
        return _scan_iterations(iteration, state, run_key, indices, hparams,
                                num_iterations if masked else None)

    return chunk


def vmap_seeds(fn: Callable, in_axes: tuple[int | None, ...], *,
               seed_batch: int | None = None) -> Callable:
    """`jax.vmap(fn, in_axes)` over seeds, or a loop over them, with vmap's shapes and values.

    With one seed (and unbatched hyperparameters) the arguments mapped by `in_axes` (0 or
    None only) lose their leading axis, `fn` runs as written, and every output gains a
    leading axis of 1 again. With `seed_batch = k` smaller than the number of seeds, the
    seeds run `k` at a time, one group after another, in one program (`lax.map`).
    Why: under `vmap` XLA:CPU runs a replay agent's buffer writes as scatters and its
    warm-up `lax.cond` as a select that computes both branches, so one seed runs faster
    unvmapped; smaller groups also bound the memory of large sweeps. Sizes are read from
    the shapes at trace time, so this is still one function for `jax.jit`. Values agree
    with `vmap` to float rounding, which a long run amplifies: per-seed returns differ
    between group sizes.
    """
    if any(axis not in (0, None) for axis in in_axes):
        raise ValueError(f"vmap_seeds maps leading axes only: in_axes must be 0 or None, "
                         f"got {in_axes}")
    check_seed_batch(seed_batch)
    vmapped = jax.vmap(fn, in_axes=in_axes)

    def call(*args):
        sizes = {leaf.shape[0] for arg, axis in zip(args, in_axes) if axis == 0
                 for leaf in jax.tree.leaves(arg)}
        size = sizes.pop() if len(sizes) == 1 else None
        mapped = [i for i, axis in enumerate(in_axes) if axis == 0]
        if size == 1:
            squeezed = [jax.tree.map(lambda x: x[0], arg) if axis == 0 else arg
                        for arg, axis in zip(args, in_axes)]
            return jax.tree.map(lambda x: x[None], fn(*squeezed))
        if size is None or seed_batch is None or seed_batch >= size:
            return vmapped(*args)

        def one_group(xs):
            full = list(args)
            for i, x in zip(mapped, xs):
                full[i] = x
            return fn(*full)

        return jax.lax.map(one_group, [args[i] for i in mapped],
                           batch_size=None if seed_batch == 1 else seed_batch)

    return call


def check_seed_batch(seed_batch: int | None) -> None:
    """Raise `ConfigError` unless `seed_batch` is None or a positive int."""
    check_int("seed_batch", seed_batch, none=True)


def split_seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Per-seed keys `[S]`: seed `s` of a vmapped run equals `train(keys[s], hparams)`."""
    return jax.random.split(jax.random.key(seed), num_seeds)


def default_chunk_iterations(num_iterations: int, chunk_iterations: int | None = None) -> int:
    """The chunk length `run` uses: `chunk_iterations` (default about 1/20 of the run),
    capped at `num_iterations`. Record it with a run so that a resume uses the same grid."""
    if chunk_iterations is None:
        chunk_iterations = max(1, math.ceil(num_iterations / 20))
    return min(chunk_iterations, num_iterations)


def _strong(x: jax.Array) -> jax.Array:
    """`x` without a weak type (e.g. a Python-int counter in an env state)."""
    x = jnp.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x
    return jax.lax.convert_element_type(x, x.dtype)


def _make_init(init: InitFn, hparams_batched: bool, seed_batch: int | None = None):
    """`init_all(keys[S], hparams) -> (state[S, ...], run_keys[S])`, vmapped over seeds.

    Weak types are made strong: a state restored from a checkpoint has none, and it must
    have exactly the types of a fresh one for a resumed run to compile the same chunk.
    """

    def init_one(key, hp):
        init_key, run_key = jax.random.split(key)
        return jax.tree.map(_strong, init(init_key, hp)), run_key

    return vmap_seeds(init_one, (0, 0 if hparams_batched else None), seed_batch=seed_batch)


def state_shapes(init: InitFn, hparams, *, seed: int = 0, num_seeds: int = 1,
                 hparams_batched: bool = False):
    """Shapes and dtypes of what `run` starts from, without computing it.

    Returns:
      `(state, run_keys)` as `jax.ShapeDtypeStruct` trees: the state `[S, ...]` after
      `init` and the per-seed run keys `[S]` (typed keys). The template for restoring a
      checkpoint of such a run.
    """
    return jax.eval_shape(_make_init(init, hparams_batched),
                          split_seed_keys(seed, num_seeds), hparams)


@dataclasses.dataclass
class Start:
    """Where a resumed run starts: the state `[S, ...]` and run keys `[S]` after
    `iteration` iterations, as a checkpoint saved them."""

    state: Any
    run_keys: jax.Array
    iteration: int


class Callback(Protocol):
    """Host-side observer of a run (logger, progress bar, checkpointer)."""

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        """`metrics[name]` is `[S, K]` for iterations `first_iteration ..`.

        `info` holds `iteration` (iterations done), `num_iterations`, `env_steps` (per
        seed), `elapsed_s` (training time of this call of `run`), `wall_time_s` (since
        `run` started, compilation included), `compile_time_s` (this call's), `num_seeds`,
        and `state` and `run_keys`: what
        a checkpoint must save to continue from here. The state is donated to the next
        chunk, so a callback must finish with it (or copy it) before returning.
        """

    def on_end(self, result: "RunResult") -> None:
        """Called once after the last chunk."""

    def on_abort(self) -> None:
        """Optional: called instead of `on_end` when the run stops with an error."""

    def on_compiled(self, compile_time_s: float) -> None:
        """Optional: called once the programs are compiled, before the first chunk."""


@dataclasses.dataclass
class RunResult:
    """What `run` returns: final state `[S, ...]`, stacked metrics and timings."""

    state: Any
    metrics: dict[str, np.ndarray]  # [S, num_iterations]
    compile_time_s: float
    wall_time_s: float
    train_time_s: float
    env_steps: int  # per seed, at the end of the run
    first_iteration: int = 0  # where this call started (> 0 when resumed); metrics from here


def choose_devices(requested: int | None, num_seeds: int, num_envs: int | None) -> int:
    """How many local devices to shard over.

    `None` picks the most devices that divide the seed axis (or, for one seed, the env
    axis); an explicit count must divide that axis and not exceed the devices present.
    """
    available = jax.local_device_count()
    seeds = num_seeds > 1 or num_envs is None
    axis_name, axis = ("num_seeds", num_seeds) if seeds else ("num_envs", num_envs)
    if requested is None:
        return max(d for d in range(1, available + 1) if axis % d == 0)
    check_int("devices", requested)
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


def check_env_finite(state) -> None:
    """Raise `NonFiniteError` if a `GuardFinite` in `state.env_state` saw a NaN or inf.

    The leaves of `state.env_state` are `[S, N, ...]`. Of all env copies with a record, the
    one with the earliest step is reported (ties: lowest seed, then env), with its seed
    index, env index, step and the action taken on that step.
    """
    guard = find_guard_state(getattr(state, "env_state", None))
    if guard is None:
        return
    bad_step = np.asarray(jax.device_get(guard.bad_step))  # [S, N]
    seeds, envs_ = np.nonzero(bad_step >= 0)
    if not seeds.size:
        return
    seed, env, step = min(zip(seeds.tolist(), envs_.tolist(),
                              bad_step[seeds, envs_].tolist()), key=lambda x: (x[2], x[0], x[1]))
    action = np.asarray(jax.device_get(guard.bad_action[seed, env])).tolist()
    raise NonFiniteError(f"environment produced a non-finite observation or reward: seed "
                         f"{seed}, env {env}, step {step}, last action {action}")


def check_finite(state, metrics: dict[str, np.ndarray], first_iteration: int) -> None:
    """Raise `NonFiniteError` if a guarded metric or state leaf is NaN or infinite.

    Guarded: first the environments (`check_env_finite`: a NaN observation is usually the
    root cause of the rest), then `GUARDED_METRIC_PREFIXES` (`[S, K]`, per iteration,
    numbered from 1 as in `metrics.jsonl`) and `GUARDED_STATE_FIELDS` (per seed).
    """
    check_env_finite(state)
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
        env_fields: Sequence[str] = ("env_state", "obs"), check_finite_values: bool = True,
        start: Start | None = None, seed_batch: int | None = None,
        watchdog: Watchdog | None = None) -> RunResult:
    """Train `num_seeds` seeds in chunks, calling `callbacks` on the host between chunks.

    Args:
      init, iteration: the agent's pure functions (see `parts`).
      steps_per_iteration: env steps one iteration takes per seed (for progress and rates).
      hparams: `HParams`; with `hparams_batched`, every leaf has a leading axis `[S]`.
      seed: base seed; seed `s` uses `split_seed_keys(seed, num_seeds)[s]`.
      chunk_iterations: iterations per jitted chunk (`default_chunk_iterations`).
      devices: local devices to shard over (`choose_devices`; 1: no sharding).
      num_envs: env copies per seed, for sharding the env axis of a single seed.
      check_finite_values: after each chunk, `check_finite`; the callbacks never see a
        failing chunk, so logs and checkpoints end with the last good one.
      seed_batch: seeds computed side by side (None: all, with `vmap`; see `vmap_seeds`).
        One device only. A resume uses the recorded value.
      start: continue a run from a checkpoint instead of calling `init`. Iteration `i`
        still uses `fold_in(run_keys[s], i)`, so when `start.iteration` is a chunk boundary
        of the original run (a multiple of `chunk_iterations`, where checkpoints are saved)
        and `chunk_iterations` is the same, the resumed run compiles the same programs and
        computes exactly what the uninterrupted run computes.
      watchdog: a `jaxrl.guard.Watchdog` timing every chunk with its callbacks (the
        first against the compile time); it stops a run whose chunk hangs.

    Returns:
      `RunResult` with metrics `[S, num_iterations - first_iteration]` as NumPy arrays.
    """
    check_int("num_iterations", num_iterations)
    check_int("chunk_iterations", chunk_iterations, none=True)
    first_iteration = 0 if start is None else start.iteration
    if type(first_iteration) is not int or not 0 <= first_iteration <= num_iterations:
        raise ConfigError(f"start iteration must be an integer in [0, {num_iterations}], got "
                          f"{first_iteration!r}")
    chunk_iterations = default_chunk_iterations(num_iterations, chunk_iterations)
    num_devices = choose_devices(devices, num_seeds, num_envs)
    check_seed_batch(seed_batch)
    if seed_batch is not None and num_devices > 1:
        raise ConfigError(f"seed_batch ({seed_batch}) runs seeds in groups on one device; "
                          f"it cannot be combined with sharding over {num_devices} devices "
                          f"(use devices=1, or leave seed_batch unset)")
    t_start = time.perf_counter()

    keys = split_seed_keys(seed, num_seeds)
    hp_axis = 0 if hparams_batched else None
    chunk_one = make_chunk(iteration, chunk_iterations, num_iterations,
                           first_iteration=first_iteration)
    init_fn = jax.jit(_make_init(init, hparams_batched, seed_batch))
    chunk_fn = jax.jit(vmap_seeds(chunk_one, (0, 0, None, hp_axis), seed_batch=seed_batch),
                       donate_argnums=0)

    state_sharding = seed_sharding = None
    if num_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:num_devices]), ("d",))
        shard_seeds = num_seeds % num_devices == 0 and num_seeds > 1
        seed_sharding = NamedSharding(mesh, PartitionSpec("d" if shard_seeds else None))
        keys = jax.device_put(keys, seed_sharding)
        hparams = jax.device_put(hparams, seed_sharding if hparams_batched
                                 else NamedSharding(mesh, PartitionSpec()))
        state_shapes_, _ = jax.eval_shape(init_fn, keys, hparams)
        state_sharding = _shardings(state_shapes_, mesh, shard_seeds, env_fields)
        init_fn = jax.jit(_make_init(init, hparams_batched),
                          out_shardings=(state_sharding, seed_sharding))

    collected: dict[str, list[np.ndarray]] = {}
    try:
        t0 = time.perf_counter()
        if start is None:
            init_compiled = init_fn.lower(keys, hparams).compile()
            state, run_keys = init_compiled(keys, hparams)
        else:
            state, run_keys = start.state, start.run_keys
        # Commit the state to its devices whether it is fresh (uncommitted) or restored
        # (committed): the chunk must be the same program in both cases, so that a resumed
        # run computes exactly what the uninterrupted one did.
        first_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state = jax.device_put(state, first_device if state_sharding is None else state_sharding)
        run_keys = jax.device_put(run_keys, first_device if seed_sharding is None
                                  else seed_sharding)
        if first_iteration < num_iterations:
            chunk_compiled = chunk_fn.lower(state, run_keys, jnp.int32(first_iteration),
                                            hparams).compile()
        compile_time = time.perf_counter() - t0
        for cb in callbacks:
            if hasattr(cb, "on_compiled"):
                cb.on_compiled(compile_time)
        if watchdog is not None:
            watchdog.start(compile_time)
        t_train = time.perf_counter()
        for first in range(first_iteration, num_iterations, chunk_iterations):
            if watchdog is not None:
                watchdog.begin(first)
            state, metrics = chunk_compiled(state, run_keys, jnp.int32(first), hparams)
            metrics = jax.device_get(metrics)
            count = min(chunk_iterations, num_iterations - first)
            metrics = {k: np.asarray(v)[:, :count] for k, v in metrics.items()}
            if check_finite_values:
                check_finite(state, metrics, first)
            for k, v in metrics.items():
                collected.setdefault(k, []).append(v)
            now = time.perf_counter()
            info = {"iteration": first + count, "num_iterations": num_iterations,
                    "env_steps": (first + count) * steps_per_iteration,
                    "elapsed_s": now - t_train, "wall_time_s": now - t_start,
                    "compile_time_s": compile_time,
                    "num_seeds": num_seeds, "state": state, "run_keys": run_keys}
            for cb in callbacks:
                cb.on_chunk(first, metrics, info)
            if watchdog is not None:
                watchdog.end()
    except BaseException:
        if watchdog is not None:
            watchdog.stop()
        for cb in callbacks:  # close files and progress bars; the error goes on up
            if hasattr(cb, "on_abort"):
                cb.on_abort()
        raise
    if watchdog is not None:
        watchdog.stop()
    jax.block_until_ready(state)
    train_time = time.perf_counter() - t_train
    result = RunResult(
        state=state,
        metrics={k: np.concatenate(v, axis=1) for k, v in collected.items()},
        compile_time_s=compile_time, wall_time_s=time.perf_counter() - t_start,
        train_time_s=train_time, env_steps=num_iterations * steps_per_iteration,
        first_iteration=first_iteration)
    for cb in callbacks:
        cb.on_end(result)
    return result
