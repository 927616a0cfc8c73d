"""Per-labeler tests that need no model: gold accuracy (Wilson), position bias (exact
binomial, Benjamini–Hochberg) and speed (medians per group). numpy/scipy only, vectorised
over labelers."""

from __future__ import annotations

import numpy as np
from scipy import stats

Z95 = 1.959963984540054


def wilson(successes: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score intervals, elementwise; nan where n is 0.

    reward/evaluate.py and training/evaluate_policy.py have a scalar one, but labeling may
    not import either (tests/test_import_direction.py), and this one takes arrays."""
    successes, n = np.asarray(successes, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = successes / n
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    low, high = np.where(p == 0, 0.0, low), np.where(p == 1, 1.0, high)  # exact at the ends
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def binomial_two_sided(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact two-sided binomial p-values against p = 0.5, elementwise (nan where n is 0).

    At 0.5 the distribution is symmetric, so scipy.stats.binomtest's two-sided p-value is
    2 * min(P[X <= k], P[X >= k]) capped at 1; written with cdf/sf it runs on arrays."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    tail = np.minimum(stats.binom.cdf(k, n, 0.5), stats.binom.sf(k - 1, n, 0.5))
    return np.where(n > 0, np.minimum(1.0, 2 * tail), np.nan)


def binomial_less(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """One-sided exact p-values of P[X <= k] for X ~ Binomial(n, p), elementwise."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    return np.where(n > 0, stats.binom.cdf(k, n, p), np.nan)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up, monotone); nan p-values stay nan and do not count
    among the tests."""
    p = np.asarray(p, float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    values = p[ok]
    order = np.argsort(values)
    ranked = values[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def group_medians(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """The median of integer `values` (0 <= v < 2**31) within each group 0..n_groups-1 (nan
    for an empty group): one sort of group * 2**32 + value, no loop over groups."""
    values = np.asarray(values, np.int64)
    keys = np.sort(np.asarray(group, np.int64) << 32 | values)
    v = (keys & 0xFFFFFFFF).astype(float)
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = np.full(n_groups, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = (v[lo] + v[hi]) / 2
    return out
