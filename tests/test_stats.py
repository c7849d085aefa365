"""IQM and stratified bootstrap intervals against hand-worked examples and a plain NumPy
loop; the learning-curve band stays within what the seeds reached."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as scipy_stats

from jaxrl import stats


def test_iqm_hand_worked():
    assert stats.iqm([1.0, 2.0, 3.0, 4.0]) == 2.5  # drop 1 and 4
    assert stats.iqm([100.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == 3.5  # drop 0, 1, 6, 100
    assert stats.iqm([7.0, np.nan, 7.0]) == 7.0
    assert np.isnan(stats.iqm([np.nan]))


@given(hnp.arrays(np.float64, st.integers(1, 40),
                  elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_iqm_matches_scipy_trim_mean(x):
    np.testing.assert_allclose(stats.iqm(x), scipy_stats.trim_mean(x, 0.25), rtol=1e-9,
                               atol=1e-6)


def _reference_samples(scores, statistic, reps, seed):
    """The stratified bootstrap written as loops: per task, draw runs with replacement."""
    rng = np.random.default_rng(seed)
    num_runs, num_tasks = scores.shape
    rows = rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))
    out = []
    for r in range(reps):
        sample = np.empty_like(scores)
        for j in range(num_runs):
            for t in range(num_tasks):
                sample[j, t] = scores[rows[r, j, t], t]
        out.append(statistic(sample))
    return np.array(out)


@pytest.mark.parametrize("statistic", [np.mean, stats.iqm], ids=["mean", "iqm"])
def test_stratified_bootstrap_matches_a_loop(statistic):
    scores = np.random.default_rng(1).normal(size=(5, 3)) + np.arange(3) * 10
    got = stats.bootstrap_samples(scores, statistic, reps=200, seed=4)
    np.testing.assert_allclose(got, _reference_samples(scores, statistic, 200, 4))
    # Stratified: every resample keeps each task's runs, so the task means stay apart.
    low, high = stats.interval(scores[:, :1], reps=200)
    assert scores[:, 0].min() <= low <= high <= scores[:, 0].max()


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [lo <= 0.0 <= hi for lo, hi in
            (stats.interval(rng.normal(size=30), reps=400, seed=i) for i in range(300))]
    assert 0.88 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_interval_of_one_run_is_the_point():
    assert stats.interval(np.array([3.0])) == (3.0, 3.0)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 8)),
                  elements=st.one_of(st.floats(0, 500), st.just(np.nan))))
def test_curve_band_stays_within_the_seeds_and_brackets_the_mean(values):
    mean, low, high = stats.mean_band(values, reps=200)
    for i in range(values.shape[1]):
        col = values[:, i][np.isfinite(values[:, i])]
        if col.size == 0:
            assert np.isnan(mean[i])
            continue
        np.testing.assert_allclose(mean[i], col.mean())
        assert col.min() - 1e-9 <= low[i] <= mean[i] + 1e-9 <= high[i] + 2e-9
        assert high[i] <= col.max() + 1e-9
        if col.size == 1:
            assert low[i] == high[i] == mean[i]


def test_a_cartpole_band_does_not_cross_500():
    values = np.array([[500.0], [500.0], [500.0], [430.0]])
    _, low, high = stats.mean_band(values)
    assert high[0] <= 500.0 and low[0] >= 430.0
