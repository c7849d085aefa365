"""Learning-curve plots: mean and a 95% bootstrap band over seeds, against env steps or
wall time, for one run (`plot_curves`) or several run folders on one figure (`plot_runs`)."""

from __future__ import annotations

import json
import os

import numpy as np

from jaxrl import stats
from jaxrl.config import ConfigError, check_choice
from jaxrl.logger import read_jsonl, read_metrics

X_AXES = ("env_steps", "wall_time")


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward along the last axis (NaN until the first)."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.where(np.isfinite(values), np.arange(values.shape[-1]), 0)
    idx = np.maximum.accumulate(idx, axis=-1)
    filled = np.take_along_axis(values, idx, axis=-1)
    seen = np.maximum.accumulate(np.isfinite(values), axis=-1)
    return np.where(seen, filled, np.nan)


def load_curve(run_dir: str, metric: str = "episode/return", x: str = "env_steps"):
    """Read `(x[I], values[S, I])` for `metric` from a run folder.

    Args:
      run_dir: a run folder (`metrics.jsonl`; for wall time also `timing.jsonl`).
      metric: a metric name of `metrics.jsonl`.
      x: `env_steps` (per seed), or `wall_time`: seconds since the run started, from the
        chunk ends in `timing.jsonl`, interpolated linearly within a chunk.

    Raises:
      ConfigError: the folder, a file or the metric is missing, or a file is unreadable.
    """
    check_choice("x", x, X_AXES)
    if not os.path.isdir(run_dir):
        raise ConfigError(f"run folder {run_dir!r} does not exist")
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise ConfigError(f"run folder {run_dir!r} has no metrics.jsonl (not a jaxrl run, or "
                          "it never finished a chunk)")
    try:
        steps, metrics = read_metrics(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is unreadable: {type(e).__name__}: {e}") from None
    if metric not in metrics:
        raise ConfigError(f"metric {metric!r} is not in {path}; allowed: "
                          f"{', '.join(metrics) or '(the file has no rows)'}")
    if x == "wall_time":
        timing = os.path.join(run_dir, "timing.jsonl")
        try:
            rows = list(read_jsonl(timing))
            ends = np.array([0] + [r["iteration"] for r in rows], dtype=np.float64)
            times = np.array([0.0] + [r["wall_time_s"] for r in rows], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"run folder {run_dir!r} has no readable timing.jsonl "
                              f"({type(e).__name__}); use --x env_steps") from None
        iterations = np.arange(1, len(steps) + 1, dtype=np.float64)
        return np.interp(iterations, ends, times), metrics[metric]
    return steps, metrics[metric]


def _check_out_path(out_path: str) -> None:
    """Raise `ConfigError` unless a figure can be written to `out_path`."""
    from matplotlib.figure import Figure

    ext = os.path.splitext(out_path)[1].lstrip(".").lower()
    formats = Figure().canvas.get_supported_filetypes()
    if ext not in formats:
        raise ConfigError(f"out {out_path!r} must end in one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise ConfigError(f"out {out_path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or os.path.isdir(out_path) or (
            os.path.exists(out_path) and not os.access(out_path, os.W_OK)):
        raise ConfigError(f"out {out_path!r} is not writable")


def _run_label(run_dir: str, label: str) -> str:
    """`label: agent on env` when the run's config.json says so, else `label`."""
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        return f"{label}: {config['agent']} on {config['env']}"
    except (OSError, ValueError, KeyError, TypeError):
        return label


def plot_runs(run_dirs: list[str], out_path: str, *, x: str = "env_steps",
              metric: str = "episode/return"):
    """Learning curves of several run folders on one figure, saved to `out_path`.

    Each run is drawn as its mean over seeds with a 95% bootstrap band (see `plot_curves`).

    Raises:
      ConfigError: no runs, an unusable run folder (see `load_curve`), or an `out_path`
        that cannot be written (unknown extension, missing or read-only folder).
    """
    if not run_dirs:
        raise ConfigError("at least one run folder is required")
    _check_out_path(out_path)
    names = [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
    if len(set(names)) < len(names):  # e.g. seed-1/run and seed-2/run: show the paths
        names = list(run_dirs)
    curves = [(_run_label(d, name), *load_curve(d, metric, x))
              for d, name in zip(run_dirs, names)]
    fig = plot_curves(curves, None, ylabel=metric,
                      xlabel="env steps per seed" if x == "env_steps" else "wall time (s)")
    try:
        fig.savefig(out_path, dpi=120)
    except OSError as e:
        raise ConfigError(f"out {out_path!r} is not writable: {e.strerror or e}") from None
    return fig


def plot_curves(curves: list[tuple[str, np.ndarray, np.ndarray]],
                out_path: str | None = None, *, ax=None, ylabel: str = "episode return",
                xlabel: str = "env steps", title: str | None = None):
    """Plot `(label, x[I], values[S, I])` curves on one axes; optionally save a PNG.

    Each curve is forward-filled per seed (an iteration with no finished episode keeps the
    previous value), then drawn as the mean with a shaded 95% t-interval over seeds. Uses a
    `matplotlib.figure.Figure` directly (no pyplot, no backend switch), so it is safe in
    notebooks and headless runs alike.

    Returns:
      The figure.
    """
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
    else:
        fig = ax.figure
    for label, x, values in curves:
        mean, low, high = stats.mean_band(forward_fill(values))
        line, = ax.plot(x, mean, label=f"{label} ({values.shape[0]} seeds)")
        ax.fill_between(x, low, high, alpha=0.25, color=line.get_color(), linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=120)
    return fig
