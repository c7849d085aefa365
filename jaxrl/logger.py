"""Host-side logging: the JSONL metrics file, a progress bar, the summary table, and the
optional TensorBoard and Weights & Biases sinks.

All of these are `runner.Callback`s that run between jitted chunks, never inside traced
code. `metrics.jsonl` is the source of truth: one line per iteration, each metric a list
over seeds (`null` where a seed had no value, e.g. no episode ended). It holds nothing
that depends on the wall clock, so the same command gives the same file; the wall-clock
time of each chunk end goes to `timing.jsonl` instead. A resumed run first cuts both files
back to its checkpoint's iteration (`truncate_jsonl`), then appends.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxrl import guard
from jaxrl.config import ConfigError


def json_float(x: Any) -> float | None:
    """A float for JSON, or None for NaN and infinities (strict JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _write_durably(file, text: str) -> None:
    # fsync before the checkpoint callback runs: a checkpoint must never cover lines that
    # a crash of the machine could still lose.
    file.write(text)
    file.flush()
    os.fsync(file.fileno())


class _Sink:
    """A callback whose `on_abort` is its `on_end`: close, whatever the run's outcome."""

    def on_abort(self) -> None:
        self.on_end(None)


class _JsonlFile(_Sink):
    """A JSONL file opened at the first chunk (a run that never trained leaves none).

    With `append`, continue the file of a resumed run (see `truncate_jsonl`); otherwise the
    file must not exist yet.
    """

    def __init__(self, path: str, append: bool):
        self.path = path
        self.append = append
        self._file = None

    def write(self, text: str) -> None:
        if self._file is None:
            # "x": never append to (or clobber) a file that another run wrote; a resumed
            # run appends to its own, cut back to its checkpoint.
            # Never through a symbolic link (O_NOFOLLOW): see `jaxrl.guard`.
            self._file = guard.open_append(self.path, create_new=not self.append)
        _write_durably(self._file, text)

    def on_end(self, result) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class JsonlLogger(_JsonlFile):
    """Append one JSON line per iteration to `path`: iteration, env_steps, metrics per seed."""

    def __init__(self, path: str, steps_per_iteration: int, *, append: bool = False):
        super().__init__(path, append)
        self.steps_per_iteration = steps_per_iteration

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        names = sorted(metrics)
        count = next(iter(metrics.values())).shape[1] if metrics else 0
        lines = []
        for k in range(count):
            it = first_iteration + k + 1
            row = {"iteration": it, "env_steps": it * self.steps_per_iteration}
            row.update({n: [json_float(v) for v in metrics[n][:, k]] for n in names})
            lines.append(json.dumps(row, separators=(",", ":")))
        self.write("\n".join(lines) + "\n")


class TimingLogger(_JsonlFile):
    """Append `{"iteration", "wall_time_s"}` to `path` at every chunk end.

    `wall_time_s` counts from the start of the run (compilation included) plus `offset_s`,
    the wall time a resumed run had already spent; `jaxrl plot --x wall_time` reads it.
    Each row also names its segment (`segment_start`: the iteration this process started
    from) with the segment's `compile_time_s` and `train_time_s` so far, so that the
    summary of a resumed run reports every segment's own speed.
    """

    def __init__(self, path: str, *, offset_s: float = 0.0, append: bool = False,
                 start_iteration: int = 0):
        super().__init__(path, append)
        self.offset_s = offset_s
        self.start_iteration = start_iteration

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        row = {"iteration": info["iteration"],
               "wall_time_s": round(self.offset_s + info["wall_time_s"], 3),
               "segment_start": self.start_iteration,
               "compile_time_s": round(info.get("compile_time_s", 0.0), 4),
               "train_time_s": round(info.get("elapsed_s", 0.0), 4)}
        self.write(json.dumps(row, separators=(",", ":")) + "\n")


def read_jsonl(path: str) -> Iterator[dict]:
    """Yield the rows of a metrics file; a torn (unparsable) last line is skipped."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last non-empty line: a crash mid-write
                return
            raise


def truncate_jsonl(path: str, iteration: int, *, every_iteration: bool = True) -> list[dict]:
    """Cut the JSONL log `path` back to its rows with `iteration <= iteration`, atomically.

    The rows a crashed run wrote after its last checkpoint (and a torn last line) are
    dropped; the rows kept are byte for byte those written, and the file is replaced in one
    `os.replace`, so a crash during the cut leaves either the old or the new file. A file
    that does not exist counts as empty. With `every_iteration` (`metrics.jsonl`: one row
    per iteration) rows `1 .. iteration` are required, none missing. Returns the kept rows,
    parsed.

    Raises:
      ConfigError: a row is unreadable before the last line, or (with `every_iteration`)
        rows up to `iteration` are missing or out of order.
    """
    raw: list[str] = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            raw = f.read().split("\n")
    kept, rows = [], []
    for i, line in enumerate(raw):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            it = row["iteration"]
        except (json.JSONDecodeError, TypeError, KeyError):
            if i >= len(raw) - 2:  # a torn last line: a crash mid-write
                break
            raise ConfigError(f"{path} line {i + 1} is not a log row; cannot resume") from None
        if it <= iteration:
            kept.append(line)
            rows.append(row)
    if every_iteration and [r["iteration"] for r in rows] != list(range(1, iteration + 1)):
        raise ConfigError(f"{path} does not hold one row for each of iterations 1..{iteration} "
                          f"(it holds {len(rows)} rows up to there); cannot resume")
    guard.write_atomic(path, "".join(line + "\n" for line in kept))
    return rows


def read_metrics(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`(env_steps[I], {name: values[S, I]})` from a metrics file (`null` read as NaN)."""
    rows = list(read_jsonl(path))
    steps = np.array([r["env_steps"] for r in rows], dtype=np.float64)
    names = [k for k in (rows[0] if rows else {}) if k not in ("iteration", "env_steps")]
    metrics = {n: np.array([[np.nan if v is None else v for v in r[n]] for r in rows],
                           dtype=np.float64).T for n in names}
    return steps, metrics


FINAL_FRACTION = 0.05
FINAL_RETURN_SOURCE = ("mean undiscounted return of the training episodes completed in the "
                       "last 5% of iterations")


def weighted_return(returns: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean episode return over the last axis, weighting iterations by completed episodes.

    Args:
      returns: [..., I] mean return of the episodes completed in each iteration (NaN if none).
      counts: [..., I] number of episodes completed in each iteration.

    Returns:
      [...] mean return over all those episodes (NaN where there were none).
    """
    returns = np.asarray(returns, np.float64)
    counts = np.nan_to_num(np.asarray(counts, np.float64))
    total = np.where(counts > 0, np.nan_to_num(returns) * counts, 0.0).sum(axis=-1)
    n = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def final_returns(metrics: dict[str, np.ndarray], fraction: float = FINAL_FRACTION):
    """The final return `[...]` from `[..., I]` metrics: see `FINAL_RETURN_SOURCE`.

    The window is the last `ceil(fraction * I)` iterations (at least one).
    """
    num_iterations = np.shape(metrics["episode/return"])[-1]
    tail = max(1, int(np.ceil(num_iterations * fraction)))
    return weighted_return(np.asarray(metrics["episode/return"])[..., -tail:],
                           np.asarray(metrics["episode/count"])[..., -tail:])


class Progress(_Sink):
    """A rich progress bar: env steps, steps per second and the latest mean return."""

    def __init__(self, total_env_steps: int, description: str, *, enabled: bool = True,
                 start_env_steps: int = 0):
        self.enabled = enabled
        self.total = total_env_steps
        self.start = start_env_steps  # a resumed run starts part-way
        if not enabled:
            return
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=16),
            TextColumn("{task.completed:,.0f} steps"), TextColumn("{task.fields[rate]}"),
            TextColumn("return {task.fields[ret]}"), TimeElapsedColumn())
        self._task = self._bar.add_task(description, total=total_env_steps, rate="-", ret="-",
                                        completed=start_env_steps)
        self._bar.start()

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        if not self.enabled:
            return
        ret = metrics.get("episode/return")
        text = "-"
        if ret is not None:
            recent = ret[:, -max(1, ret.shape[1] // 4):]
            recent = recent if np.isfinite(recent).any() else ret
            if np.isfinite(recent).any():
                text = f"{np.nanmean(recent):.1f}"
        rate = ((info["env_steps"] - self.start) * info["num_seeds"]
                / max(info["elapsed_s"], 1e-9))
        self._bar.update(self._task, completed=info["env_steps"], rate=f"{rate:,.0f}/s",
                         ret=text)

    def on_end(self, result) -> None:
        if self.enabled:
            self._bar.stop()


def print_summary(summary: dict) -> None:
    """Print the end-of-run summary as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['agent']} on {summary['env']}")
    evals = summary.get("per_seed_eval_return")
    table.add_column("seed", justify="right")
    table.add_column("final return", justify="right")
    if evals is not None:
        table.add_column("greedy eval return", justify="right")
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    for i, r in enumerate(summary["per_seed_final_return"]):
        table.add_row(str(i), fmt(r), *([fmt(evals[i])] if evals is not None else []))
    mean, std = summary["final_return_mean"], summary["final_return_std"]
    row = ["mean ± std", "-" if mean is None else f"{mean:.2f} ± {std:.2f}"]
    if evals is not None:
        row.append(f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f}")
    table.add_row(*row)
    if summary.get("num_seeds", 1) > 1 and summary.get("final_return_iqm") is not None:
        low, high = summary["final_return_ci95"]
        table.add_row("IQM [95% CI of mean]",
                      f"{summary['final_return_iqm']:.2f} [{low:.2f}, {high:.2f}]",
                      *([""] if evals is not None else []))
    console = Console()
    console.print(table)
    console.print(
        f"{summary['total_timesteps']:,} env steps x {summary['num_seeds']} seeds in "
        f"{summary['wall_time_s']:.1f} s (compile {summary['compile_time_s']:.1f} s, "
        f"{summary['env_steps_per_s']:,.0f} env steps/s)")


def seed_mean_rows(first_iteration: int, metrics: dict[str, np.ndarray],
                   steps_per_iteration: int):
    """Yield `(env_steps, {name: mean over seeds})` per iteration of a chunk's `[S, K]`
    metrics, for the sinks that log one curve per metric; metrics NaN for every seed (no
    episode ended) are left out of that iteration's row."""
    count = next(iter(metrics.values())).shape[1] if metrics else 0
    for k in range(count):
        row = {name: float(np.nanmean(values[:, k])) for name, values in metrics.items()
               if np.isfinite(values[:, k]).any()}
        yield (first_iteration + k + 1) * steps_per_iteration, row


class TensorBoardLogger(_Sink):
    """Write the mean over seeds of every metric to TensorBoard (through tensorboardX).

    TensorBoard is a convenience next to `metrics.jsonl`, never a reason to lose a run: if
    tensorboardX is missing or a write fails, this warns once and turns itself off.
    """

    def __init__(self, logdir: str, steps_per_iteration: int):
        self.steps_per_iteration = steps_per_iteration
        self._writer = None
        try:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir)
        except Exception as e:  # noqa: BLE001 - any failure only disables this sink
            self._disable(e)

    def _disable(self, error: BaseException) -> None:
        warnings.warn(f"TensorBoard logging disabled ({type(error).__name__}: {error}); "
                      "metrics.jsonl is still written", RuntimeWarning, stacklevel=3)
        self._writer = None

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        if self._writer is None:
            return
        try:
            for step, row in seed_mean_rows(first_iteration, metrics, self.steps_per_iteration):
                for name, value in row.items():
                    self._writer.add_scalar(name, value, step)
            self._writer.flush()
        except Exception as e:  # noqa: BLE001
            self._disable(e)

    def on_end(self, result) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:  # noqa: BLE001
                self._disable(e)


class WandbLogger(_Sink):
    """Log the mean over seeds of every metric to Weights & Biases, at step = env steps.

    Like `TensorBoardLogger`, a convenience next to `metrics.jsonl`: if `wandb` is missing
    (install the `wandb` extra) or any call fails, this warns once and turns itself off.
    """

    def __init__(self, steps_per_iteration: int, *, project: str | None = None,
                 name: str | None = None, config: dict | None = None,
                 directory: str | None = None):
        self.steps_per_iteration = steps_per_iteration
        self._run = None
        try:
            import wandb
        except ImportError as e:
            self._disable(e, hint="; install the wandb extra: pip install 'jaxrl[wandb]'")
            return
        try:
            self._run = wandb.init(project=project, name=name, config=config, dir=directory)
        except Exception as e:  # noqa: BLE001 - any failure only disables this sink
            self._disable(e)

    def _disable(self, error: BaseException, hint: str = "") -> None:
        warnings.warn(f"Weights & Biases logging disabled ({type(error).__name__}: {error})"
                      f"{hint}; metrics.jsonl is still written", RuntimeWarning, stacklevel=3)
        self._run = None

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        if self._run is None:
            return
        try:
            for step, row in seed_mean_rows(first_iteration, metrics, self.steps_per_iteration):
                self._run.log(row, step=step)
        except Exception as e:  # noqa: BLE001
            self._disable(e)

    def on_end(self, result) -> None:
        if self._run is not None:
            run, self._run = self._run, None
            try:
                run.finish()
            except Exception as e:  # noqa: BLE001
                self._disable(e)
