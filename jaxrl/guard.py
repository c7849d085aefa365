"""Trust under hostile input and faults: the checks a run passes before it touches disk,
the guarded run folder, one-line faults, and the host loop's watchdog.

* **Before disk.** `check_int32_fields` and `check_seed` keep every count within the
  dtype the compiled program uses (int32 indices and counters; 64-bit seeds);
  `check_pointless` refuses configurations that would train without learning;
  `estimate_memory` sizes the training state (`jax.eval_shape` of the agent's `init`, so
  replay buffers, env copies, parameters and optimizer state are counted exactly), the
  iteration's batch and the evaluation batch, and `check_memory` refuses a run that cannot
  fit in the memory available. `check_run_options` is the one schema of a run's options
  (`config.json`'s `run` section and `experiment.train`'s arguments).
* **The run folder.** `RunFolder` holds an exclusive advisory lock (`fcntl.flock` on the
  folder itself, so no lock file is left behind) while a process writes the folder,
  refuses a folder that is or holds a symbolic link, and with `overwrite` moves the old
  run aside until the new one has compiled (then deletes it; on an earlier failure it is
  put back). `write_atomic` and `open_append` never follow a link.
* **Faults.** `FaultError` (disk full, a failed checkpoint save), `HangError` (the
  watchdog) and `Interrupted` (Ctrl-C, saying whether there is anything to resume) are
  what `jaxrl.cli.main` turns into one line and an exit status; `defer_sigint` keeps
  Ctrl-C out of a checkpoint save.
* **Watchdog.** `Watchdog` runs beside the host loop: when a chunk (with its callbacks)
  takes far longer than the slowest before it, it writes every thread's stack into the run
  folder and stops the run with one line naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import faulthandler
import fcntl
import math
import os
import shutil
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxrl.config import ConfigError, check_int

INT32_MAX = int(np.iinfo(np.int32).max)
SEED_MAX = 2 ** 63 - 1  # jax.random.key takes a signed 64-bit seed


class FaultError(RuntimeError):
    """The machine failed the run (disk full, a save that could not be written): one line."""


class HangError(RuntimeError):
    """The watchdog stopped a chunk that took far longer than the ones before it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line to print (whether and how the run can be resumed)."""


def check_int32(name: str, value: Any) -> None:
    """Raise `ConfigError` if the int `value` does not fit the int32 the program uses."""
    if type(value) is int and value > INT32_MAX:
        raise ConfigError(f"{name} must be at most {INT32_MAX} (sizes and counters are "
                          f"int32 in the compiled program), got {value}")


def check_seed(name: str, value: Any, *, none: bool = False) -> None:
    """Raise `ConfigError` unless `value` is an int in `[0, 2**63 - 1]` (or None, with `none`)."""
    if none and value is None:
        return
    if type(value) is not int or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer in [0, {SEED_MAX}], got {value!r}")


def check_int32_fields(config: Any) -> None:
    """Every int (and tuple-of-int) field of a `Config` and its derived sizes fit int32."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        for v in value if isinstance(value, tuple) else (value,):
            check_int32(field.name, v)
    for name in ("steps_per_iteration", "num_iterations"):
        if hasattr(config, name):
            check_int32(f"{name} (num_envs * rollout_len)" if name == "steps_per_iteration"
                        else name, getattr(config, name))


def check_pointless(config: Any) -> None:
    """Refuse a configuration that would train without learning anything.

    A replay agent learns after a phase once `learning_starts` env steps are taken; a run
    of fewer steps than that takes no gradient step at all (and would still exit 0).
    """
    starts = getattr(config, "learning_starts", None)
    if starts is None:
        return
    steps = config.num_iterations * config.steps_per_iteration
    if starts > steps:
        raise ConfigError(f"learning_starts ({starts}) is beyond the {steps} env steps the "
                          f"run takes (num_iterations * num_envs * rollout_len): no gradient "
                          "step would be taken; lower learning_starts or raise "
                          "total_timesteps")


# name -> (kind, may be None)
_OPTION_KINDS = {
    "seed": ("seed", False), "num_seeds": ("count", False), "devices": ("count", True),
    "seed_batch": ("count", True), "chunk_iterations": ("count", True),
    "checkpoint_every": ("count", True), "keep_checkpoints": ("count", False),
    "eval_episodes": ("count0", False), "tensorboard": ("bool", False),
    "wandb": ("bool", False), "wandb_project": ("name", True),
    "watchdog_factor": ("factor", False), "watchdog_floor_s": ("seconds", False)}
RUN_OPTIONS = tuple(_OPTION_KINDS)


def check_exact_keys(values: Mapping[str, Any], allowed: Sequence[str], where: str,
                     unknown: str, missing: str) -> None:
    """Raise `ConfigError` unless `values` holds exactly the keys `allowed`.

    The message is `where` followed by `unknown` or `missing` formatted with `key` (the
    first offending key: sorted for unknown ones, in `allowed`'s order for missing ones)
    and `allowed` (the keys, comma-separated). The one check behind every schema here.
    """
    extra = sorted(set(values) - set(allowed))
    if extra:
        raise ConfigError(where + unknown.format(key=extra[0], allowed=", ".join(allowed)))
    absent = [k for k in allowed if k not in values]
    if absent:
        raise ConfigError(where + missing.format(key=absent[0], allowed=", ".join(allowed)))


def check_run_options(options: Mapping[str, Any], where: str = "") -> None:
    """Raise `ConfigError` unless `options` holds exactly `RUN_OPTIONS`, each valid.

    The one schema of a run's options: `experiment.train`'s arguments and `config.json`'s
    `run` section. `where` prefixes the field names (e.g. `".../config.json: run."`).
    """
    kinds = _OPTION_KINDS
    check_exact_keys(options, tuple(kinds), where, "{key} is not a run option; allowed: "
                     "{allowed}", "{key} is missing (a run option)")
    for name, (kind, nullable) in kinds.items():
        value, label = options[name], where + name
        if nullable and value is None:
            continue
        if kind == "seed":
            check_seed(label, value)
        elif kind in ("count", "count0"):
            check_int(label, value, zero=kind == "count0")
            check_int32(label, value)
        elif kind == "bool":
            if type(value) is not bool:
                raise ConfigError(f"{label} must be true or false, got {value!r}")
        elif kind == "name":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{label} must be a non-empty string, got {value!r}")
        else:
            real = (not isinstance(value, bool) and isinstance(value, (int, float))
                    and math.isfinite(value))
            if kind == "factor" and not (real and (value == 0 or value >= 1)):
                raise ConfigError(f"{label} must be 0 (off) or a real number >= 1, "
                                  f"got {value!r}")
            if kind == "seconds" and not (real and value >= 1e-3):
                raise ConfigError(f"{label} must be a real number of seconds >= 0.001, "
                                  f"got {value!r}")


# Memory ---------------------------------------------------------------------------------

def available_memory() -> int:
    """Bytes of memory available to a new allocation (psutil, else /proc/meminfo, else
    physical pages)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil is optional
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _leaf_bytes(leaf: Any) -> int:
    size = math.prod(leaf.shape)
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return size * 8  # threefry key data: two uint32
    return size * np.dtype(leaf.dtype).itemsize


def tree_bytes(tree: Any) -> int:
    """Bytes of every leaf of a tree of arrays or `jax.ShapeDtypeStruct`s."""
    return sum(_leaf_bytes(leaf) for leaf in jax.tree.leaves(tree))


def format_bytes(n: float) -> str:
    """`1536` -> `1.5 KiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """What a run needs: `parts` (name -> bytes), their `total`, and what is `available`."""

    parts: dict
    available: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {format_bytes(b)}" for name, b in self.parts.items())
        return (f"estimated memory {format_bytes(self.total)} ({parts}) of "
                f"{format_bytes(self.available)} available")


def estimate_memory(state_per_seed: Any, config: Any, *, num_seeds: int, eval_episodes: int,
                    obs_bytes: int, max_episode_steps: int,
                    available: int | None = None) -> MemoryEstimate:
    """Estimate the memory of a run from the shapes of one seed's training state.

    Args:
      state_per_seed: `jax.eval_shape` of the agent's init for one seed (parameters,
        optimizer state, replay buffer, the `N` env copies, ...).
      config: the agent's `Config` (`num_envs`, `rollout_len`, `hidden_sizes`,
        `minibatch_size` if any).
      num_seeds: seeds `S` trained side by side.
      eval_episodes: greedy evaluation episodes per seed after training (`E`).
      obs_bytes: bytes of one observation.
      max_episode_steps: steps an evaluation episode may run (`T_eval`).

    Returns:
      A `MemoryEstimate` with three parts. The training state is counted twice: the chunk
      donates its input, but a checkpoint save holds a host copy while the next chunk
      runs. The iteration batch is what one iteration materialises per seed (transitions
      of `num_envs * rollout_len` steps or a minibatch, and the activations of every
      hidden layer for them, forward and backward). The evaluation batch is
      `S * E * T_eval` stored steps and the env state of `S * E` fresh copies.
    """
    state = tree_bytes(state_per_seed) * num_seeds
    width = sum(getattr(config, "hidden_sizes", (64, 64)))
    per_sample = 2 * obs_bytes + 32 + 3 * 4 * width  # obs, next obs, scalars; activations
    samples = max(config.steps_per_iteration, getattr(config, "minibatch_size", 0))
    batch = samples * per_sample * num_seeds
    env_state = tree_bytes(getattr(state_per_seed, "env_state", ())) // max(config.num_envs, 1)
    evaluation = (num_seeds * eval_episodes * (max_episode_steps * (obs_bytes + 16)
                                               + env_state + 3 * 4 * width)
                  if eval_episodes else 0)
    parts = {"training state x2": 2 * state, "iteration batch": batch}
    if evaluation:
        parts["evaluation batch"] = evaluation
    return MemoryEstimate(parts, available_memory() if available is None else available)


_SIZED_BY = {"training state x2": "num_seeds x (buffer_size, num_envs, hidden_sizes)",
             "iteration batch": "num_seeds x (num_envs * rollout_len or minibatch_size) x "
                                "hidden_sizes",
             "evaluation batch": "num_seeds x eval_episodes"}


def check_memory(estimate: MemoryEstimate) -> None:
    """Raise `ConfigError` if `estimate` exceeds the memory available, naming the largest
    part and the fields that size it."""
    if estimate.total <= estimate.available:
        return
    largest = max(estimate.parts, key=estimate.parts.get)
    raise ConfigError(f"the run does not fit in memory: {estimate.describe()}; the "
                      f"{largest} is the largest part, sized by {_SIZED_BY[largest]}")


# The run folder --------------------------------------------------------------------------

def find_symlink(root: str) -> str | None:
    """The first symbolic link at or under `root` (never following one), else None."""
    if os.path.islink(root):
        return root
    if not os.path.isdir(root):
        return None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                return path
    return None


def check_no_symlink(root: str) -> None:
    """Raise `ConfigError` if `root` is, or holds, a symbolic link.

    Why: a run writes, rotates and (with --overwrite) deletes files in its folder; a link
    there would turn any of those into a write or delete outside it.
    """
    link = find_symlink(root)
    if link is not None:
        raise ConfigError(f"run folder {root!r} holds a symbolic link ({link}); jaxrl never "
                          "writes or deletes through links: remove it or choose another "
                          "folder")


def write_atomic(path: str, data: bytes | str) -> None:
    """Write `path` by a new temporary file and a rename: never through a link at `path`
    (the rename replaces the link itself), never half-written; the temporary file is
    removed if the write fails."""
    tmp = f"{path}.tmp-{os.getpid()}"
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def open_append(path: str, *, create_new: bool = False):
    """Open `path` for appending text, refusing a link (`O_NOFOLLOW`); with `create_new`,
    the file must not exist yet (`O_EXCL`)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CREAT
    if create_new:
        flags |= os.O_EXCL
    return os.fdopen(os.open(path, flags, 0o644), "a", encoding="utf-8")


def remove_tree(path: str) -> None:
    """Delete a file or folder without following links (a link is removed, not its
    target); missing is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)  # fd-based on Linux: never descends into a link
    else:
        os.remove(path)


class RunFolder:
    """Exclusive ownership of a run folder for one writing process (train or resume).

    `acquire` creates the folder if needed (never through a link), takes an exclusive
    `fcntl.flock` on the folder itself (released when the process ends, however it ends)
    and refuses a second writer in one line. With `replace`, the files of an earlier run
    named in `replace` are moved into a hidden folder inside it; `commit` deletes them
    (call it once the new run has compiled), `rollback` puts them back and removes what
    the new run wrote (call it when the new run failed before that).
    """

    ASIDE = ".jaxrl-replaced"
    DELETING = ".jaxrl-replaced-deleting"

    def __init__(self, out: str):
        self.out = out
        self._fd: int | None = None
        self._aside: list[str] = []
        self._written: tuple[str, ...] = ()

    def acquire(self, *, create: bool) -> "RunFolder":
        if os.path.islink(self.out):
            check_no_symlink(self.out)
        if create:
            os.makedirs(self.out, exist_ok=True)
        fd = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"run folder {self.out!r} is in use by another jaxrl "
                                  "process (train or resume); wait for it to finish or "
                                  "choose another folder") from None
            raise
        self._fd = fd
        check_no_symlink(self.out)  # again, under the lock
        self._recover()
        return self

    @property
    def replacing(self) -> bool:
        """True while an earlier run is moved aside (neither committed nor rolled back)."""
        return bool(self._aside)

    def _recover(self) -> None:
        """Finish what a killed writer left: a deletion it had started is completed; an
        earlier run still aside (the new one never compiled, or it would have been
        committed) is put back in place of what the new run wrote."""
        remove_tree(os.path.join(self.out, self.DELETING))
        aside = os.path.join(self.out, self.ASIDE)
        if os.path.isdir(aside):
            self._aside = sorted(os.listdir(aside))
            self._written = tuple(self._aside)
            self.rollback()

    def move_aside(self, names: tuple[str, ...], written: tuple[str, ...]) -> None:
        """Move the earlier run's `names` (files or folders) aside; `written`: what the new
        run may create, removed again by `rollback`."""
        aside = os.path.join(self.out, self.ASIDE)
        present = [n for n in names if os.path.lexists(os.path.join(self.out, n))]
        self._written = written
        if not present:
            return
        os.mkdir(aside)
        for name in present:
            os.rename(os.path.join(self.out, name), os.path.join(aside, name))
            self._aside.append(name)

    def commit(self) -> None:
        """The new run compiled: delete the earlier run for good."""
        if self._aside:
            # Renamed first: a writer killed during the deletion leaves a name that says so.
            os.rename(os.path.join(self.out, self.ASIDE), os.path.join(self.out, self.DELETING))
            remove_tree(os.path.join(self.out, self.DELETING))
            self._aside = []

    def rollback(self) -> None:
        """The new run failed before compiling: remove what it wrote, restore the old run."""
        if not self._aside:
            return
        aside = os.path.join(self.out, self.ASIDE)
        for name in self._written:
            remove_tree(os.path.join(self.out, name))
        for name in self._aside:
            os.rename(os.path.join(aside, name), os.path.join(self.out, name))
        os.rmdir(aside)
        self._aside = []

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# Signals ---------------------------------------------------------------------------------

@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends (then raise `KeyboardInterrupt`).

    Why: orbax saves with worker threads; a `KeyboardInterrupt` in the middle of a save
    leaves them printing tracebacks. A save is short, so it finishes first. Outside the
    main thread signals cannot be handled and the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


# Watchdog --------------------------------------------------------------------------------

class Watchdog:
    """Stop a host loop whose current chunk takes far longer than the ones before it.

    The limit of a chunk is `max(floor_s, factor * slowest)`, `slowest` the longest earlier
    chunk or the compile time, whichever is longer (a replay agent's warm-up chunks are
    fast, its first learning chunk is not: the compile time keeps that from tripping).
    The first chunk, with nothing to compare with, gets `factor` times that again. A
    stopped run resumes from its last checkpoint (`jaxrl resume --watchdog-factor`, if the
    chunk was only slow). Past the limit, a thread writes every thread's
    Python stack (`faulthandler.dump_traceback`) to `stacks_path` and raises `HangError`
    in the main thread (by a signal, which also wakes a sleeping call). If the main thread
    is wedged in native code and does not react within `grace_s`, it prints the one line
    and ends the process (`os._exit(1)`): a run must never hang silently.

    Use: `start(reference_s)` once, then `begin()` / `end()` around every chunk, and
    `stop()` at the end (also on errors).
    """

    def __init__(self, stacks_path: str, *, factor: float = 20.0, floor_s: float = 60.0,
                 grace_s: float = 30.0):
        self.stacks_path = stacks_path
        self.factor = factor
        self.floor_s = floor_s
        self.grace_s = grace_s
        self.message: str | None = None
        self._slowest = 0.0
        self._measured = False
        self._deadline: float | None = None
        self._chunk = 0
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler = None

    def _on_signal(self, signum, frame):
        raise HangError(self.message or "watchdog")

    def start(self, reference_s: float) -> None:
        self._slowest = reference_s
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="jaxrl-watchdog",
                                        daemon=True)
        self._thread.start()

    def begin(self, chunk: int) -> None:
        with self._lock:
            self._chunk = chunk
            self._started_at = time.perf_counter()
            reference = self.factor * self._slowest
            if not self._measured:
                reference *= self.factor
            self._deadline = self._started_at + max(self.floor_s, reference)
        self._wake.set()

    def end(self) -> None:
        with self._lock:
            self._slowest = max(self._slowest, time.perf_counter() - self._started_at)
            self._measured = True
            self._deadline = None

    def stop(self) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._previous_handler is not None:
            signal.signal(signal.SIGUSR1, self._previous_handler)
            self._previous_handler = None

    def _watch(self) -> None:
        while not self._done.is_set():
            with self._lock:
                deadline = self._deadline
            if deadline is None:
                self._wake.wait()
                self._wake.clear()
                continue
            now = time.perf_counter()
            if now < deadline:
                self._done.wait(min(deadline - now, 1.0))
                continue
            with self._lock:
                if self._deadline != deadline:  # the chunk ended meanwhile
                    continue
                elapsed, limit = now - self._started_at, deadline - self._started_at
                chunk = self._chunk
            self._trip(chunk, elapsed, limit)
            return

    def _trip(self, chunk: int, elapsed: float, limit: float) -> None:
        try:
            with open(self.stacks_path, "w") as f:
                f.write(f"jaxrl watchdog: chunk from iteration {chunk + 1} ran {elapsed:.1f} s "
                        f"(limit {limit:.1f} s); stacks of every thread:\n")
                f.flush()
                faulthandler.dump_traceback(f, all_threads=True)
            where = f"all thread stacks written to {self.stacks_path}"
        except OSError as e:
            where = f"thread stacks could not be written ({e.strerror})"
        self.message = (f"the chunk from iteration {chunk + 1} ran over {limit:.0f} s "
                        f"(watchdog: {self.factor:g}x the slowest earlier chunk, at least "
                        f"{self.floor_s:g} s) and was stopped; {where}; if it was only "
                        "slow, `jaxrl resume RUN_DIR --watchdog-factor F` continues it")
        if self._previous_handler is not None:
            signal.pthread_kill(self._main, signal.SIGUSR1)
        if self._done.wait(self.grace_s):
            return
        sys.stderr.write(f"jaxrl: error: {self.message} (the process did not respond and "
                         "was ended)\n")
        sys.stderr.flush()
        os._exit(1)
