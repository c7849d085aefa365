"""Learning-curve plots: mean and a 95% confidence band over seeds, against env steps."""

from __future__ import annotations

import os
import warnings

import numpy as np

from jaxrl.logger import read_jsonl


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward along the last axis (NaN until the first)."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.where(np.isfinite(values), np.arange(values.shape[-1]), 0)
    idx = np.maximum.accumulate(idx, axis=-1)
    filled = np.take_along_axis(values, idx, axis=-1)
    seen = np.maximum.accumulate(np.isfinite(values), axis=-1)
    return np.where(seen, filled, np.nan)


def mean_and_band(values: np.ndarray, confidence: float = 0.95):
    """Mean over seeds and a Student-t confidence interval of that mean.

    Args:
      values: [S, I] per-seed curves (NaN where a seed has no value yet).
      confidence: coverage of the interval (t quantile with n-1 degrees of freedom, so a
        band over 2-4 seeds is honestly wide).

    Returns:
      `(mean, low, high)`, each `[I]`; where fewer than two seeds have a value the band
      collapses to the mean.
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n = np.sum(np.isfinite(values), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1)
    quantile = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1))
    half = np.where(n > 1, quantile * np.nan_to_num(std) / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, mean - half, mean + half


def load_curve(run_dir: str, metric: str = "episode/return"):
    """Read `(env_steps[I], values[S, I])` for `metric` from a run folder's metrics.jsonl."""
    rows = list(read_jsonl(os.path.join(run_dir, "metrics.jsonl")))
    steps = np.array([r["env_steps"] for r in rows], dtype=np.float64)
    vals = np.array([[np.nan if v is None else v for v in r[metric]] for r in rows],
                    dtype=np.float64).T
    return steps, vals


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
        mean, low, high = mean_and_band(forward_fill(values))
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
