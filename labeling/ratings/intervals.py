"""Confidence intervals for the ratings: bootstrap rounds (all solved at once) or the
sandwich covariance H⁻¹JH⁻¹ (see labeling/ratings/leaderboard.py, "Intervals")."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from labeling.ratings.bradley_terry import (
    ELO_SCALE,
    _newton,
    _Objective,
    _Problem,
    _scatter,
    _solve_spd,
    _to_elo,
)

# Bootstrap rounds only feed interval ends: 1e-7 (≈ 2e-5 Elo) is plenty.
_TOL_BOOTSTRAP = 1e-7
# Bound on the floats in one batch of bootstrap rounds' Hessians or row arrays (80 MB); the
# per-row work keeps about 20 arrays of rounds × rows alive.
_BATCH_FLOATS = 10_000_000


@dataclass
class _Intervals:
    low: np.ndarray  # (m,) Elo
    high: np.ndarray
    covariance: np.ndarray  # (m, m) Elo²
    extra_low: np.ndarray  # β and η ends, natural-log units
    extra_high: np.ndarray
    text: str


def _intervals(problem, objective, x, H, settings, anchor_at) -> _Intervals:
    """Interval ends and covariance; H is the Hessian at x (for the sandwich)."""
    m, confidence, rounds = problem.m, settings["confidence"], settings["bootstrap"]
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    if rounds:
        samples = _bootstrap(problem, x, rounds, settings["seed"])
        ratings = _to_elo(samples[:, :m], anchor_at, settings["anchor_rating"])
        low, high = np.quantile(ratings, [lo_q, hi_q], axis=0)
        extra_low, extra_high = np.quantile(samples[:, m:], [lo_q, hi_q], axis=0)
        return _Intervals(
            low,
            high,
            np.atleast_2d(np.cov(ratings, rowvar=False)),
            extra_low,
            extra_high,
            f"{confidence:.0%} intervals from {rounds} bootstrap rounds",
        )
    # Sandwich: V = H⁻¹ J H⁻¹ for all parameters, then the ratings' linear map T (centring or
    # anchoring) and the Elo scale.
    H_inv = _solve_spd(H[None], np.eye(len(x))[None])[0]
    V = H_inv @ objective.score_outer(x[None])[0] @ H_inv
    V = (V + V.T) / 2
    T = np.eye(m) - (np.full((m, m), 1 / m) if anchor_at is None else np.eye(m)[[anchor_at] * m])
    covariance = ELO_SCALE**2 * T @ V[:m, :m] @ T.T
    z = NormalDist().inv_cdf(hi_q)
    se = np.sqrt(np.clip(np.diag(covariance), 0, None))
    point = _to_elo(x[:m], anchor_at, settings["anchor_rating"])
    extra_se = np.sqrt(np.clip(np.diag(V)[m:], 0, None))
    return _Intervals(
        point - z * se,
        point + z * se,
        covariance,
        x[m:] - z * extra_se,
        x[m:] + z * extra_se,
        f"{confidence:.0%} intervals from the sandwich covariance (no resampling)",
    )


def _bootstrap(problem: _Problem, x_hat: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """Parameters (rounds, p) refitted on resampled battles, batches of rounds at once, each
    round starting from the full-data estimate x_hat."""
    rng = np.random.default_rng(seed)
    design = problem.design
    p = design.p
    out = np.empty((rounds, p))
    if design.k:
        n = problem.counts.shape[1]  # one row per battle: resample rows
        batch = max(1, min(rounds, _BATCH_FLOATS // max(p * p, 20 * n)))
    else:
        # Cells (model_a, model_b, outcome) in row-major order, as np.unique would list them;
        # a multinomial draw over the cells is a resample of the battles.
        Cs = problem.Cs
        ca, cb, co = np.nonzero(Cs)
        cell_counts = Cs[ca, cb, co]
        n = int(cell_counts.sum())
        probabilities = cell_counts / n
        bins = problem.pair_id[ca, cb] * 3 + np.where(ca < cb, co, 2 - co)  # oriented to pair
        n_bins = len(design.PI) * 3
        batch = max(1, min(rounds, _BATCH_FLOATS // max(p * p, 20 * len(design.PI))))
    for start in range(0, rounds, batch):
        size = min(batch, rounds - start)
        if design.k:
            weights = np.stack(
                [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)]
            )
            counts = weights[:, :, None] * problem.counts
        else:
            draws = rng.multinomial(n, probabilities, size=size)
            counts = _scatter(draws.astype(float), bins, n_bins).reshape(size, -1, 3)
        objective = _Objective(design, counts)
        x0 = np.repeat(x_hat[None], size, 0)
        out[start : start + size], _, _, _ = _newton(objective, x0, _TOL_BOOTSTRAP)
    return out
