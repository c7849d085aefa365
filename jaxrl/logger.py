"""Host-side logging: the JSONL metrics file, a progress bar, and the summary table.

All of these are `runner.Callback`s that run between jitted chunks, never inside traced
code. `metrics.jsonl` is the source of truth: one line per iteration, each metric a list
over seeds (`null` where a seed had no value, e.g. no episode ended). It holds nothing
that depends on the wall clock, so the same command gives the same file.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np


def _json_value(x: Any) -> Any:
    x = float(x)
    return x if math.isfinite(x) else None


class JsonlLogger:
    """Append one JSON line per iteration to `path`: iteration, env_steps, metrics per seed."""

    def __init__(self, path: str, steps_per_iteration: int):
        self.path = path
        self.steps_per_iteration = steps_per_iteration
        self._file = None  # created with the first chunk: a run that never trained leaves none

    def on_chunk(self, first_iteration: int, metrics: dict[str, np.ndarray], info: dict) -> None:
        if self._file is None:
            # "x": never append to (or clobber) a metrics file that another run wrote.
            self._file = open(self.path, "x", encoding="utf-8")
        names = sorted(metrics)
        count = next(iter(metrics.values())).shape[1] if metrics else 0
        lines = []
        for k in range(count):
            it = first_iteration + k + 1
            row = {"iteration": it, "env_steps": it * self.steps_per_iteration}
            row.update({n: [_json_value(v) for v in metrics[n][:, k]] for n in names})
            lines.append(json.dumps(row, separators=(",", ":")))
        self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    def on_end(self, result) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def on_abort(self) -> None:
        if self._file is not None:
            self._file.close()


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


class Progress:
    """A rich progress bar: env steps, steps per second and the latest mean return."""

    def __init__(self, total_env_steps: int, description: str, *, enabled: bool = True):
        self.enabled = enabled
        self.total = total_env_steps
        if not enabled:
            return
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=16),
            TextColumn("{task.completed:,.0f} steps"), TextColumn("{task.fields[rate]}"),
            TextColumn("return {task.fields[ret]}"), TimeElapsedColumn())
        self._task = self._bar.add_task(description, total=total_env_steps, rate="-", ret="-")
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
        rate = info["env_steps"] * info["num_seeds"] / max(info["elapsed_s"], 1e-9)
        self._bar.update(self._task, completed=info["env_steps"], rate=f"{rate:,.0f}/s",
                         ret=text)

    def on_end(self, result) -> None:
        if self.enabled:
            self._bar.stop()

    def on_abort(self) -> None:
        self.on_end(None)


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
    console = Console()
    console.print(table)
    console.print(
        f"{summary['total_timesteps']:,} env steps x {summary['num_seeds']} seeds in "
        f"{summary['wall_time_s']:.1f} s (compile {summary['compile_time_s']:.1f} s, "
        f"{summary['env_steps_per_s']:,.0f} env steps/s)")


class TensorBoardLogger:
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
            count = next(iter(metrics.values())).shape[1] if metrics else 0
            for k in range(count):
                step = (first_iteration + k + 1) * self.steps_per_iteration
                for name, values in metrics.items():
                    column = values[:, k]
                    if np.isfinite(column).any():
                        self._writer.add_scalar(name, float(np.nanmean(column)), step)
            self._writer.flush()
        except Exception as e:  # noqa: BLE001
            self._disable(e)

    def on_end(self, result) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:  # noqa: BLE001
                self._disable(e)

    def on_abort(self) -> None:
        self.on_end(None)
