"""Intervals over seeds.

Two intervals, chosen by the metric's range:

* :func:`mean_ci95` — the Student-t interval of the mean, for unbounded metrics (payoff per
  round);
* :func:`bootstrap_ci95` — the percentile bootstrap interval of the mean, for metrics with a
  range (adherence, shares of seeds, fractions of the reference). Every resampled mean is a mean
  of observed values, so the interval lies within [min, max] of the data and never leaves the
  metric's range (a t interval over 2 seeds of adherence can span ± 1.9). With up to
  ``EXACT_BOOTSTRAP_MAX`` values the bootstrap distribution is enumerated exactly (all multisets
  of n draws with their multinomial weights), so the interval is a deterministic function of the
  data; beyond that it is estimated from a fixed-seed Monte-Carlo sample.

Records hold ``{"mean", "ci95"}`` (t: half-width) or ``{"mean", "low", "high"}`` (bootstrap);
:func:`reciprocity.report.format_interval` prints either.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

__all__ = ["bootstrap_ci95", "interval", "mean_ci95", "t975"]

#: Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (normal beyond).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

EXACT_BOOTSTRAP_MAX = 10  # n <= 10: C(2n - 1, n) <= 92,378 multisets
MONTE_CARLO_RESAMPLES = 20_000


def t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci95(values) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of the mean (nan for one value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    half = t975(values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


@functools.cache
def _multisets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of n draws from n values: counts (M, n) and probabilities (M,)."""
    draws = np.array(list(itertools.combinations_with_replacement(range(n), n)))
    counts = (draws[:, :, None] == np.arange(n)).sum(axis=1)
    log_weight = math.lgamma(n + 1) - n * math.log(n) - \
        np.vectorize(math.lgamma)(counts + 1).sum(axis=1)
    return counts, np.exp(log_weight)


def bootstrap_ci95(values, *, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval (low, high) of the mean of ``values``.

    The bounds are the 2.5% and 97.5% quantiles of the bootstrap distribution of the mean
    (the smallest resampled mean whose cumulative probability reaches the level). NaN values
    are dropped; with no value left everything is nan, with one value the interval is that
    value.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    if n <= EXACT_BOOTSTRAP_MAX:
        counts, weights = _multisets(n)
        means = counts @ values / n
    else:
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, n, size=(MONTE_CARLO_RESAMPLES, n))].mean(axis=1)
        weights = np.full(means.size, 1.0 / means.size)
    order = np.argsort(means, kind="stable")
    cdf = np.cumsum(weights[order])
    low, high = (means[order][min(np.searchsorted(cdf, q - 1e-12), means.size - 1)]
                 for q in (0.025, 0.975))
    return float(values.mean()), float(low), float(high)


def interval(values, bounded: bool) -> dict:
    """The record entry of a metric over seeds: bootstrap if ``bounded``, else Student t."""
    if bounded:
        mean, low, high = bootstrap_ci95(values)
        return {"mean": mean, "low": low, "high": high}
    mean, half = mean_ci95(values)
    return {"mean": mean, "ci95": half}
