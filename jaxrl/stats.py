"""Statistics over a few seeds that hold up: the interquartile mean and stratified percentile
bootstrap intervals (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice").

Written here rather than taken from `rliable` because the three functions below are all we
need, in NumPy, and rliable would pull in arch, pandas and seaborn for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the flattened `scores`.

    The lowest and highest quarter are dropped (`floor(n / 4)` values each side, as
    `scipy.stats.trim_mean(x, 0.25)`), so one lucky or failed seed moves it less than the
    mean while it uses more of the data than the median. NaNs are ignored.
    """
    x = np.sort(np.asarray(scores, np.float64).reshape(-1))
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    cut = x.size // 4
    return float(x[cut:x.size - cut].mean())


def bootstrap_samples(scores: np.ndarray, statistic: Callable[[np.ndarray], float],
                      reps: int = 2000, seed: int = 0) -> np.ndarray:
    """`[reps]` values of `statistic` on stratified bootstrap resamples of `scores [S, T]`.

    Each resample draws `S` runs with replacement independently for every task (column),
    keeping the task mix fixed; `statistic` maps a `[S, T]` resample to a number. A 1-D
    `scores [S]` is one task.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    num_runs, num_tasks = scores.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))
    resampled = scores[rows, np.arange(num_tasks)]  # [reps, S, T]
    return np.array([statistic(r) for r in resampled])


def interval(scores: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
             confidence: float = 0.95, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile stratified-bootstrap interval `(low, high)` of `statistic(scores)`.

    With fewer than two runs there is nothing to resample: the interval is the point.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape[0] < 2:
        value = float(statistic(scores))
        return value, value
    samples = bootstrap_samples(scores, statistic, reps, seed)
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def mean_band(values: np.ndarray, confidence: float = 0.95, reps: int = 1000,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of `[S, I]` curves over seeds and a percentile bootstrap band of that mean.

    The band resamples seeds (the same draws for every column) and is a set of means of
    observed values, so it never leaves the range the seeds reached (a Student-t band over
    four CartPole seeds crosses 500). NaNs (a seed without a value yet) are left out of
    each column; a column with fewer than two values collapses to its mean.

    Returns:
      `(mean, low, high)`, each `[I]`.
    """
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0)
    mean = np.where(count > 0, total.sum(axis=0) / np.maximum(count, 1), np.nan)
    rows = np.random.default_rng(seed).integers(0, values.shape[0], (reps, values.shape[0]))
    drawn_count = finite[rows].sum(axis=1)  # [reps, I]
    drawn = total[rows].sum(axis=1) / np.maximum(drawn_count, 1)
    drawn = np.where(drawn_count > 0, drawn, np.nan)
    tail = 50.0 * (1.0 - confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns before any episode ended
        low, high = np.nanpercentile(drawn, [tail, 100.0 - tail], axis=0)
    keep = count > 1
    return mean, np.where(keep, low, mean), np.where(keep, high, mean)
