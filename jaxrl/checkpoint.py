"""Checkpoints of a training run: a small wrapper over orbax's `CheckpointManager`.

A run folder keeps its checkpoints in `checkpoints/<iteration>/`, saved at chunk ends by the
`Checkpointer` callback of `jaxrl.runner.run`. Each holds two orbax items: `state`, the
seed-batched training tree `{"state": [S, ...], "run_keys": [S]}` (the agent's whole state:
replay buffer, env states, typed PRNG keys and all), and `meta`, a JSON document with the
iteration, the run's description (see `Checkpointer`) and the path, shape and dtype of
every leaf. Saves are orbax's atomic ones (written under `<iteration>.orbax-checkpoint-tmp`,
then renamed), so a save cut short is never listed; its leftovers are removed when the next
writer opens the folder. `restore` refuses a checkpoint whose saved configuration or tree
differs from the requested one, listing every difference, and turns an unreadable
checkpoint into a `ConfigError` naming its path.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrl import guard
from jaxrl.config import ConfigError, check_int

CHECKPOINT_DIR = "checkpoints"  # inside a run folder
FORMAT = 1  # version of the `meta` document
_MISSING = object()
_FAILURE_GRACE_S = 0.5  # how long a failed read waits for orbax's reads still in flight


@contextlib.contextmanager
def _quiet_orbax(*, reading: bool = False):
    """Silence orbax's absl warnings (e.g. on a damaged folder): we raise our own errors.

    With `reading` (reads, and saves, which fail the same way on a full disk), also what a
    damaged checkpoint makes it print: orbax fails on its first
    bad array and closes its event loop while the reads of the others are in flight; as
    they finish they print "Event loop is closed" tracebacks to `sys.stderr` from
    tensorstore's threads, and their tasks log "exception was never retrieved". So a failed
    read waits for them (a short grace period) with `sys.stderr` and the asyncio logger
    silenced, and collects the tasks before restoring both.
    """
    logs = {"absl": logging.CRITICAL if reading else logging.ERROR,
            **({"asyncio": logging.CRITICAL} if reading else {})}
    levels = {name: logging.getLogger(name).level for name in logs}
    for name, level in logs.items():
        logging.getLogger(name).setLevel(level)
    stderr = sys.stderr
    if reading:
        sys.stderr = io.StringIO()
    try:
        yield
    except BaseException:
        if reading:
            time.sleep(_FAILURE_GRACE_S)
            gc.collect()
        raise
    finally:
        sys.stderr = stderr
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _manager(directory: str, *, keep: int | None = None, write: bool = False):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=write, cleanup_tmp_directories=write,
        enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def describe_tree(tree: Any) -> list[list]:
    """`[path, shape, dtype]` of every leaf of `tree` (arrays or `jax.ShapeDtypeStruct`s).

    Typed PRNG keys show their key shape and dtype (`key<fry>`), not the raw `uint32` data.
    """
    return [[jax.tree_util.keystr(path), list(np.shape(leaf)), str(leaf.dtype)]
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def steps(directory: str) -> list[int]:
    """Iterations of the checkpoints in `directory`, ascending ([] if there is none).

    Only finished saves have a plain number as their name; a save cut short by a crash is
    still named `<iteration>.orbax-checkpoint-tmp` and is not listed.
    """
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory)
                  if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def _cause(error: BaseException) -> str:
    """One line for an exception, preferring the OSError it wraps (e.g. disk full)."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"{seen.strerror}" + (f": {seen.filename}" if seen.filename else "")
        seen = seen.__cause__ or seen.__context__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _corrupted(path: str, error: BaseException) -> ConfigError:
    text = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
    return ConfigError(f"checkpoint {path} is unreadable or corrupted ({detail}); delete it "
                       "to use an earlier one")


class Checkpointer:
    """A `runner.Callback` that saves the run's state in `directory` (`RUN/checkpoints`,
    created at the first save) at chunk ends and at the end.

    Saves when a chunk ends at or after the next multiple of `every` iterations (every chunk
    when `every` is None) and always after the last iteration, keeping the newest `keep`
    checkpoints. `meta`, the JSON description of the run (agent, env, config, hparams, run
    options, versions), is stored with every checkpoint and compared on restore. It runs
    after the logging callbacks, so `metrics.jsonl` already holds every iteration a
    checkpoint covers. A chunk that fails the runner's non-finite check never reaches it, so
    the last good checkpoint stays in place. Saves are synchronous: the state is donated to
    the next chunk as soon as the callbacks return.
    """

    def __init__(self, directory: str, meta: Mapping[str, Any], *, every: int | None = None,
                 keep: int = 3):
        check_int("checkpoint_every", every, none=True)
        check_int("keep_checkpoints", keep, none=True)
        self.directory = directory
        self.meta = dict(meta)
        self.every = every
        self.keep = keep
        self._manager = None
        self._last: int | None = None  # iteration of the last save (or of the start)

    def save(self, iteration: int, tree: Any) -> str:
        """Save `tree` as the checkpoint of `iteration`; returns its folder."""
        if self._manager is None:
            with _quiet_orbax():
                self._manager = _manager(self.directory, keep=self.keep, write=True)
        meta = {"format": FORMAT, "iteration": int(iteration), **self.meta,
                "tree": describe_tree(tree)}
        path = os.path.join(self.directory, str(iteration))
        try:
            # Ctrl-C waits for the save: orbax's worker threads would print tracebacks.
            with guard.defer_sigint(), _quiet_orbax(reading=True):
                saved = self._manager.save(int(iteration), args=ocp.args.Composite(
                    state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)))
        except KeyboardInterrupt:
            self.remove_partial_saves()
            raise
        except Exception as e:  # noqa: BLE001 - orbax wraps the OSError (disk full, ...)
            self.remove_partial_saves()
            raise guard.FaultError(f"checkpoint {path} could not be saved "
                                   f"({_cause(e)}); the newest earlier checkpoint is "
                                   "intact") from None
        if not saved:  # orbax skips a step at or below the newest one it finds
            raise ConfigError(f"checkpoint {path} was not written: {self.directory!r} already "
                              f"holds checkpoint {self._manager.latest_step()}")
        self._last = int(iteration)
        return path

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        iteration = info["iteration"]
        if self._last is None:
            self._last = first_iteration
        due = (iteration >= info["num_iterations"] or self.every is None
               or iteration // self.every > self._last // self.every)
        if due:
            self.save(iteration, {"state": info["state"], "run_keys": info["run_keys"]})

    def close(self) -> None:
        if self._manager is not None:
            with _quiet_orbax():
                with contextlib.suppress(Exception):  # a failed save may leave it broken
                    self._manager.close()
            self._manager = None

    def remove_partial_saves(self) -> None:
        """Delete the temporary folders of saves that did not finish (never links)."""
        if not os.path.isdir(self.directory) or os.path.islink(self.directory):
            return
        for name in os.listdir(self.directory):
            if ".orbax-checkpoint-tmp" in name:
                with contextlib.suppress(OSError):
                    guard.remove_tree(os.path.join(self.directory, name))

    def on_end(self, result) -> None:
        self.close()

    def on_abort(self) -> None:
        self.close()  # never saves: the chunk that failed is not one to continue from
        self.remove_partial_saves()


def read_meta(directory: str, step: int) -> dict:
    """The `meta` document of checkpoint `step` in `directory`.

    Raises:
      ConfigError: it is missing or unreadable (naming the checkpoint's path).
    """
    path = os.path.join(directory, str(step))
    try:
        with _quiet_orbax(reading=True):
            with _manager(directory) as manager:
                meta = manager.restore(step, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore()))["meta"]
        if not isinstance(meta, dict) or meta.get("iteration") != step or \
                not isinstance(meta.get("tree"), list):
            raise ValueError("its meta document is not a jaxrl checkpoint description")
    except Exception as e:  # noqa: BLE001 - any failure to read is a damaged checkpoint
        raise _corrupted(path, e) from None
    return meta


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else json.dumps(value)


def config_differences(saved: Mapping[str, Any], requested: Mapping[str, Any]) -> list[str]:
    """Every field where `requested` differs from `saved`, as `section.field: ...` lines.

    Only the sections of `requested` are compared (e.g. `agent`, `env`, `config`, `hparams`,
    `run`); dict sections are compared field by field, including fields only one side has.
    """
    out = []
    for section, want in requested.items():
        have = saved.get(section, _MISSING)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            names = list(want) + [n for n in have if n not in want]
            for name in names:
                a, b = have.get(name, _MISSING), want.get(name, _MISSING)
                if a != b:
                    out.append(f"{section}.{name}: checkpoint {_show(a)}, requested {_show(b)}")
        elif have != want:
            out.append(f"{section}: checkpoint {_show(have)}, requested {_show(want)}")
    return out


def tree_differences(saved: Sequence[Sequence], requested: Sequence[Sequence],
                     limit: int = 5) -> list[str]:
    """Leaves whose presence, shape or dtype differ between two `describe_tree` lists."""
    have = {path: (list(shape), dtype) for path, shape, dtype in saved}
    want = {path: (list(shape), dtype) for path, shape, dtype in requested}
    out = []
    for path in list(want) + [p for p in have if p not in want]:
        a, b = have.get(path), want.get(path)
        if a == b:
            continue
        fmt = lambda x: "(absent)" if x is None else f"{tuple(x[0])} {x[1]}"  # noqa: E731
        out.append(f"leaf {path}: checkpoint {fmt(a)}, requested {fmt(b)}")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more leaves"]
    return out


def _with_sharding(template: Any) -> Any:
    """Give every `ShapeDtypeStruct` a sharding (the default device when it has none)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, "sharding", None) or device),
        template)


def restore(directory: str, template: Any, *, expected: Mapping[str, Any] | None = None,
            step: int | None = None) -> tuple[Any, dict]:
    """Restore checkpoint `step` (default: the newest) of `directory` into `template`.

    Args:
      directory: the checkpoint folder (`RUN/checkpoints`).
      template: a tree of `jax.ShapeDtypeStruct` with the structure, shapes and dtypes to
        restore into: build it from the run's config (`runner.state_shapes` gives
        `(state, run_keys)`; pass `{"state": ..., "run_keys": ...}`).
      expected: sections of the run description the checkpoint must have been saved with
        (e.g. `{"agent": ..., "config": {...}, "hparams": {...}}`), compared field by field.
      step: the iteration of the checkpoint to restore.

    Returns:
      `(tree, meta)`: the restored tree (structure of `template`, typed keys included) and
      the checkpoint's `meta` document.

    Raises:
      ConfigError: no checkpoint (or no checkpoint `step`); the saved configuration or tree
        differs from the requested one (every differing field and up to five leaves are
        listed); the checkpoint is unreadable or corrupted (its path is named).
    """
    available = steps(directory)
    if not available:
        raise ConfigError(f"no checkpoint in {directory!r}")
    if step is None:
        step = available[-1]
    if step not in available:
        raise ConfigError(f"checkpoint {step} is not in {directory!r}; available: "
                          f"{', '.join(map(str, available))}")
    path = os.path.join(directory, str(step))
    meta = read_meta(directory, step)
    problems = config_differences(meta, expected) if expected else []
    problems += tree_differences(meta["tree"], describe_tree(template))
    if problems:
        raise ConfigError(f"checkpoint {path} does not match the requested run: "
                          + "; ".join(problems))
    try:
        with _quiet_orbax(reading=True):
            with _manager(directory) as manager:
                tree = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_with_sharding(template))))["state"]
        if describe_tree(tree) != describe_tree(template):
            raise ValueError("the restored tree does not have the requested structure")
    except Exception as e:  # noqa: BLE001 - any failure to read is a damaged checkpoint
        raise _corrupted(path, e) from None
    return tree, meta
