"""Learning-curve plots: mean and a 95% confidence band over seeds, against env steps."""

from __future__ import annotations

import os
import warnings

import numpy as np

from jaxrl.logger import read_jsonl


def forward_fill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward along the last axis (NaN until the first)."""
    out = np.array(values, dtype=np.float64, copy=True)
    for idx in np.ndindex(out.shape[:-1]):
        row = out[idx]
        last = np.nan
        for t in range(row.shape[0]):
            if np.isfinite(row[t]):
                last = row[t]
            else:
                row[t] = last
    return out


def mean_and_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and a 95% normal-approximation confidence interval of the mean.

    Args:
      values: [S, I] per-seed curves (NaN where a seed has no value yet).

    Returns:
      `(mean, low, high)`, each `[I]`; with one seed the band collapses to the mean.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any episode
        mean = np.nanmean(values, axis=0)
        n = np.sum(np.isfinite(values), axis=0)
        std = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.zeros_like(mean)
    half = np.where(n > 1, 1.96 * np.nan_to_num(std) / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, mean - half, mean + half


def load_curve(run_dir: str, metric: str = "episode/return"):
    """Read `(env_steps[I], values[S, I])` for `metric` from a run folder's metrics.jsonl."""
    rows = list(read_jsonl(os.path.join(run_dir, "metrics.jsonl")))
    steps = np.array([r["env_steps"] for r in rows], dtype=np.float64)
    vals = np.array([[np.nan if v is None else v for v in r[metric]] for r in rows],
                    dtype=np.float64).T
    return steps, vals


def plot_curves(curves: list[tuple[str, np.ndarray, np.ndarray]], out_path: str, *,
                ylabel: str = "episode return", xlabel: str = "env steps",
                title: str | None = None) -> str:
    """Plot `(label, x[I], values[S, I])` curves on one figure and save a PNG.

    Each curve is forward-filled per seed (an iteration with no finished episode keeps the
    previous value), then drawn as the mean with a shaded 95% band over seeds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
