"""Intervals over seeds: the t interval by hand, the bootstrap against brute-force resampling."""

import itertools

import numpy as np
import pytest

from reciprocity.report import format_interval
from reciprocity.stats import bootstrap_ci95, interval, mean_ci95


def _brute_force_percentiles(values):
    """Every one of the n^n equally likely resamples, and the same quantile rule."""
    n = len(values)
    means = np.sort([np.mean([values[i] for i in draw])
                     for draw in itertools.product(range(n), repeat=n)])
    cdf = np.arange(1, means.size + 1) / means.size
    return tuple(means[np.searchsorted(cdf, q - 1e-12)] for q in (0.025, 0.975))


@pytest.mark.parametrize("values", [[0.2, 0.9, 0.4, 0.7], [1.0, 0.0, 1.0, 1.0, 0.5],
                                    [3.0, 1.0, 2.0]])
def test_exact_bootstrap_equals_enumerating_every_resample(values):
    mean, low, high = bootstrap_ci95(values)
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(_brute_force_percentiles(values))


def test_bootstrap_interval_stays_in_the_metric_range():
    """The t interval of two adherence values leaves [0, 1]; the bootstrap one cannot: with two
    values the resampled means are x1, (x1 + x2) / 2, x2 with probabilities 1/4, 1/2, 1/4."""
    values = [0.5, 1.0]
    mean, half = mean_ci95(values)
    assert mean + half > 1 and mean - half < 0  # t_{0.975, 1} = 12.7
    _, low, high = bootstrap_ci95(values)
    assert (low, high) == (0.5, 1.0)
    rng = np.random.default_rng(0)
    for n in (3, 5, 12, 30):  # exact and Monte-Carlo paths
        shares = rng.random(n) ** 3
        m, lo, hi = bootstrap_ci95(shares)
        assert shares.min() <= lo <= m <= hi <= shares.max()
        assert bootstrap_ci95(shares) == (m, lo, hi)  # deterministic
    assert bootstrap_ci95([0.7] * 5) == (0.7, 0.7, 0.7)


def test_bootstrap_drops_undefined_values():
    assert bootstrap_ci95([0.5, float("nan"), 0.5]) == (0.5, 0.5, 0.5)
    assert all(v != v for v in bootstrap_ci95([float("nan")]))


def test_records_and_their_printing():
    assert interval([1.0, 2.0, 3.0], bounded=False) == {
        "mean": 2.0, "ci95": pytest.approx(4.303 * 1.0 / np.sqrt(3))}
    assert set(interval([0.1, 0.2], bounded=True)) == {"mean", "low", "high"}
    assert format_interval({"mean": 0.5, "low": 0.25, "high": 0.75}) == "0.500 [0.250, 0.750]"
    assert format_interval({"mean": 1.0, "low": 1.0, "high": 1.0}) == "1.000"
    assert format_interval({"mean": 2.0, "ci95": 0.125}) == "2.000 ± 0.125"
    assert format_interval({"mean": 2.0, "ci95": float("nan")}) == "2.000"
    assert format_interval({"mean": float("nan"), "ci95": float("nan")}) == "n/a"
