"""The Bradley–Terry fit: the design of a problem (pairs, or battles with style covariates;
Davidson ties), the penalised negative log-likelihood, its derivatives and Newton's method.
The model, the prior and the fitting strategy are described in labeling/ratings/leaderboard.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from labeling.ratings.battles import BattleCounts

if TYPE_CHECKING:
    from labeling.ratings.leaderboard import Leaderboard

ELO_SCALE = 400 / math.log(10)

# Strength of the ridge, in virtual tied battles against a mean-rated model (see module doc).
PRIOR_VIRTUAL_TIES = 0.01
RIDGE = PRIOR_VIRTUAL_TIES / 4
_SCORE = np.array([0.0, 0.5, 1.0])

# Newton stops when no parameter moves by more than this (natural-log units; 1e-9 ≈ 2e-7 Elo).
_TOL = 1e-9
_MAX_NEWTON = 100
# Newton steps below this (in θ) are taken without a line search.
_SMALL_STEP = 1e-2


@dataclass
class _Design:
    """Rows of the fit over models 0..m−1. Row r compares I[r] with J[r]; counts per row are
    [I lost, tie, I won]. Without style the rows are the unordered pairs themselves (pair is
    None); with style there is one row per battle, F[r] its style difference I − J, and pair[r]
    the row's index into (PI, PJ). Parameters: θ (m), then β (k), then η = log ν (Davidson)."""

    m: int
    I: np.ndarray  # noqa: E741
    J: np.ndarray
    PI: np.ndarray
    PJ: np.ndarray
    pair: np.ndarray | None
    F: np.ndarray | None
    davidson: bool

    def __post_init__(self):
        from scipy.sparse import csc_matrix

        # ∂d/∂θ as a sparse (m, rows) matrix, +1 at I and −1 at J: sums per model become one
        # sparse product. Column-major, so a product streams through the rows in order.
        n = len(self.I)
        self.incidence = csc_matrix(
            (
                np.tile([1.0, -1.0], n),
                np.column_stack([self.I, self.J]).ravel(),
                np.arange(0, 2 * n + 1, 2),
            ),
            shape=(self.m, n),
        )

    @property
    def k(self) -> int:
        return 0 if self.F is None else self.F.shape[1]

    @property
    def p(self) -> int:
        return self.m + self.k + int(self.davidson)

    def by_model(self, values: np.ndarray) -> np.ndarray:
        """Σ_rows values·(e_I − e_J): (R, rows) or (R, rows, k) → (R, m) or (R, m, k)."""
        if values.ndim == 2:
            return (self.incidence @ values.T).T
        rounds, n, k = values.shape
        flat = self.incidence @ values.transpose(1, 0, 2).reshape(n, rounds * k)
        return flat.reshape(self.m, rounds, k).transpose(1, 0, 2)


def _scatter(values: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Sum values (R, n) into (R, size) bins by index (n,), separately per round."""
    rounds = values.shape[0]
    if rounds == 1:
        return np.bincount(index, weights=values[0], minlength=size)[None]
    flat = (np.arange(rounds)[:, None] * size + index).ravel()
    return np.bincount(flat, weights=values.ravel(), minlength=rounds * size).reshape(rounds, size)


def _assemble(design: _Design, hdd, hde, hee, ridge: float) -> np.ndarray:
    """(R, p, p) matrix Σ_rows x xᵀ·w from per-row weights on d·d (hdd), d·η (hde) and the
    summed η·η weight (hee), x = ∂(d, η)/∂params; plus ridge on the diagonal. Builds both the
    Hessian and the sandwich's J."""
    rounds, m, k, p = hdd.shape[0], design.m, design.k, design.p
    H = np.zeros((rounds, p, p))
    flat = H.reshape(rounds, p * p)
    # θθ block: a graph Laplacian weighted by each pair's summed weight.
    hp = hdd if design.pair is None else _scatter(hdd, design.pair, len(design.PI))
    flat[:, design.PI * p + design.PJ] = -hp
    flat[:, design.PJ * p + design.PI] = -hp
    flat[:, np.arange(m) * (p + 1)] = _scatter(hp, design.PI, m) + _scatter(hp, design.PJ, m)
    if k:
        weighted = hdd[:, :, None] * design.F
        cross = design.by_model(weighted)
        H[:, :m, m : m + k] = cross
        H[:, m : m + k, :m] = cross.transpose(0, 2, 1)
        H[:, m : m + k, m : m + k] = weighted.transpose(0, 2, 1) @ design.F
    if design.davidson:
        e = m + k
        column = design.by_model(hde)
        H[:, :m, e] = column
        H[:, e, :m] = column
        if k:
            v = hde @ design.F
            H[:, m:e, e] = v
            H[:, e, m:e] = v
        H[:, e, e] = hee
    if ridge:
        H[:, np.arange(p), np.arange(p)] += ridge
    return H


class _Objective:
    """Penalised negative log-likelihood of one design under R weightings (rounds) of its rows;
    counts C is (R, rows, 3) = [I lost, tie, I won]."""

    def __init__(self, design: _Design, counts: np.ndarray, ridge: float = RIDGE):
        self.design, self.counts, self.ridge = design, counts, ridge
        self.n = counts.sum(-1)
        if design.davidson:
            self.net = counts[..., 2] - counts[..., 0]  # wins − losses of I
            self.ties = counts[..., 1]
        else:
            self.score = counts[..., 2] + 0.5 * counts[..., 1]

    def _d(self, x: np.ndarray) -> np.ndarray:
        design = self.design
        d = x[:, design.I] - x[:, design.J]
        if design.F is not None:
            d = d + x[:, design.m : design.m + design.k] @ design.F.T
        return d

    def _davidson(self, x, d):
        half = d / 2
        eta = x[:, -1:]
        log_z = np.logaddexp(np.logaddexp(half, -half), eta)
        return half, eta, log_z

    def value(self, x: np.ndarray) -> np.ndarray:
        d = self._d(x)
        if self.design.davidson:
            half, eta, log_z = self._davidson(x, d)
            nll = self.n * log_z - self.net * half - self.ties * eta
        else:
            # −[s·log σ(d) + (n − s)·log σ(−d)] = n·softplus(−d) + (n − s)·d
            nll = self.n * np.logaddexp(0.0, -d) + (self.n - self.score) * d
        return nll.sum(-1) + 0.5 * self.ridge * (x * x).sum(-1)

    def _probabilities(self, x):
        d = self._d(x)
        if self.design.davidson:
            half, eta, log_z = self._davidson(x, d)
            return np.exp(half - log_z), np.exp(-half - log_z), np.exp(eta - log_z)
        return (expit(d),)

    def derivatives(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient (R, p) and Hessian (R, p, p)."""
        design, n = self.design, self.n
        hde = hee = ge = None
        if design.davidson:
            p_win, p_loss, p_tie = self._probabilities(x)
            mean = (p_win - p_loss) / 2  # expected ∂/∂d of one battle's log-likelihood
            gd = n * mean - self.net / 2
            ge = (n * p_tie - self.ties).sum(-1)
            hdd = n * ((p_win + p_loss) / 4 - mean**2)
            hde = -n * p_tie * mean
            hee = (n * p_tie * (1 - p_tie)).sum(-1)
        else:
            (prob,) = self._probabilities(x)
            gd = n * prob - self.score
            hdd = n * prob * (1 - prob)
        g = self.ridge * x
        g[:, : design.m] += design.by_model(gd)
        if design.k:
            g[:, design.m : design.m + design.k] += gd @ design.F
        if design.davidson:
            g[:, -1] += ge
        return g, _assemble(design, hdd, hde, hee, self.ridge)

    def score_outer(self, x: np.ndarray) -> np.ndarray:
        """J = Σ over battles of (∂ log-lik of the battle)(same)ᵀ, for the sandwich."""
        C = self.counts
        if self.design.davidson:
            p_win, p_loss, p_tie = self._probabilities(x)
            mean = (p_win - p_loss) / 2
            sd = (-0.5, 0.0, 0.5)  # ∂/∂d of log-lik numerator for loss, tie, win
            st = (0.0, 1.0, 0.0)
            gd = [mean - sd[o] for o in range(3)]
            ge = [p_tie - st[o] for o in range(3)]
            hdd = sum(C[..., o] * gd[o] ** 2 for o in range(3))
            hde = sum(C[..., o] * gd[o] * ge[o] for o in range(3))
            hee = sum(C[..., o] * ge[o] ** 2 for o in range(3)).sum(-1)
            return _assemble(self.design, hdd, hde, hee, 0.0)
        (prob,) = self._probabilities(x)
        hdd = sum(C[..., o] * (prob - _SCORE[o]) ** 2 for o in range(3))
        return _assemble(self.design, hdd, None, None, 0.0)


def _solve_spd(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H⁻¹g per round for symmetric positive definite H (R, p, p). A loop of Cholesky solves:
    steadier than numpy's batched LU on a busy machine, and half the work."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    out = np.empty_like(g)
    for r in range(len(g)):
        try:
            out[r] = cho_solve(cho_factor(H[r], check_finite=False), g[r], check_finite=False)
        except LinAlgError:  # not positive definite after rounding: least squares instead
            out[r] = np.linalg.lstsq(H[r], g[r], rcond=None)[0]
    return out


def _newton(
    objective: _Objective, x0: np.ndarray, tol: float = _TOL
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Minimise each round's objective by Newton's method, halving steps that do not lower it.
    The ridge makes every Hessian positive definite, so steps always exist. Returns the
    minimum, the Hessian one (tiny) step before it, the number of steps, and convergence."""
    x = x0.copy()
    f = None
    last = np.inf
    for iteration in range(1, _MAX_NEWTON + 1):
        g, H = objective.derivatives(x)
        step = _solve_spd(H, g)
        size = np.abs(step).max()
        # Converged, or at the floating-point noise floor (steps no longer shrink).
        if size < tol or (size < 1e-7 and size > last / 2):
            return x - step, H, iteration, True
        last = size
        if size < _SMALL_STEP:
            # Close in, where Newton converges quadratically: no line search needed.
            x, f = x - step, None
            continue
        if f is None:
            f = objective.value(x)
        t = np.ones(len(x))
        for _ in range(60):
            x_try = x - t[:, None] * step
            f_try = objective.value(x_try)
            worse = f_try > f + 1e-12 * (1 + np.abs(f))
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        x, f = x_try, f_try
    return x, H, _MAX_NEWTON, False


def _oriented_pairs(Cs: np.ndarray):
    """Unordered pairs (i < j) that met, with counts [i lost, tie, i won]."""
    oriented = Cs + Cs.transpose(1, 0, 2)[:, :, ::-1]
    upper_i, upper_j = np.triu_indices(len(Cs), 1)
    met = oriented[upper_i, upper_j].sum(-1) > 0
    PI, PJ = upper_i[met], upper_j[met]
    pair_id = np.full((len(Cs), len(Cs)), -1, dtype=np.int64)
    pair_id[PI, PJ] = pair_id[PJ, PI] = np.arange(len(PI))
    return PI, PJ, oriented[PI, PJ].astype(float), pair_id


def _unbounded(Cs: np.ndarray) -> list[int]:
    """Models outside the main strongly connected component of 'scored against' (won or tied at
    least once): their maximum-likelihood ratings are infinite, only the prior holds them."""
    from scipy.sparse.csgraph import connected_components

    scored = Cs[:, :, 1] + Cs[:, :, 2] + Cs[:, :, 0].T + Cs[:, :, 1].T > 0
    n, labels = connected_components(scored, directed=True, connection="strong")
    if n == 1:
        return []
    main = np.bincount(labels).argmax()
    return list(np.flatnonzero(labels != main))


def _to_elo(theta: np.ndarray, anchor: int | None, anchor_rating: float) -> np.ndarray:
    reference = theta[..., anchor] if anchor is not None else theta.mean(-1)
    return ELO_SCALE * (theta - reference[..., None]) + anchor_rating


@dataclass
class _Problem:
    """The ranked models' battles, ready to fit."""

    names: list[str]
    Cs: np.ndarray  # (m, m, 3) counts among them, as in BattleCounts
    pair_counts: np.ndarray  # (P, 3) per unordered pair (i < j): [i lost, tie, i won]
    pair_id: np.ndarray  # (m, m) index of the pair {i, j}, −1 if they never met
    pairs: _Design  # the design without style: one row per pair
    design: _Design  # what is fitted: `pairs`, or one row per battle with style
    counts: np.ndarray  # (1, rows, 3) the design's counts

    @property
    def m(self) -> int:
        return len(self.names)


def _problem(counts: BattleCounts, ranked: np.ndarray, style: bool, davidson: bool) -> _Problem:
    m = len(ranked)
    Cs = counts.counts[np.ix_(ranked, ranked)]
    PI, PJ, pair_counts, pair_id = _oriented_pairs(Cs)
    pairs = _Design(m, PI, PJ, PI, PJ, None, None, davidson=davidson)
    design, rows_counts = pairs, pair_counts[None]
    if style:
        rows = counts.style
        local = np.full(len(counts.models), -1, dtype=np.int64)
        local[ranked] = np.arange(m)
        first, second, outcome, diff = local[rows.a], local[rows.b], rows.outcome, rows.diff
        keep = (first >= 0) & (second >= 0)
        if not keep.all():
            first, second, outcome, diff = first[keep], second[keep], outcome[keep], diff[keep]
        design = _Design(m, first, second, PI, PJ, pair_id[first, second], diff, davidson)
        rows_counts = np.zeros((1, len(first), 3))
        rows_counts[0, np.arange(len(first)), outcome] = 1.0
    names = [counts.models[i] for i in ranked]
    return _Problem(names, Cs, pair_counts, pair_id, pairs, design, rows_counts)


def _start(problem: _Problem, previous: Leaderboard | None) -> np.ndarray:
    """Where Newton starts: the previous fit's parameters where they apply. Otherwise θ = 0 and
    ν matching the tie rate between equal models; style fits start from the fit without style
    (cheap: one row per pair), which leaves few Newton steps over every battle."""
    design, m = problem.design, problem.m
    x0 = np.zeros((1, design.p))
    if design.davidson:
        tie_rate = problem.pair_counts[:, 1].sum() / max(problem.pair_counts.sum(), 1)
        tie_rate = min(max(tie_rate, 1e-3), 0.9)
        x0[0, -1] = math.log(2 * tie_rate / (1 - tie_rate))
    state = previous.fit_state if previous is not None else None
    if state:
        earlier = dict(zip(state["models"], state["theta"], strict=True))
        x0[0, :m] = [earlier.get(name, 0.0) for name in problem.names]
        if design.davidson and state.get("eta") is not None:
            x0[0, -1] = state["eta"]
        if design.k and state.get("beta") is not None:
            x0[0, m : m + design.k] = state["beta"]
            return x0
    if design.k:
        plain = np.concatenate([x0[:, :m], x0[:, m + design.k :]], axis=1)
        plain, _, _, _ = _newton(_Objective(problem.pairs, problem.pair_counts[None]), plain)
        x0[0, :m] = plain[0, :m]
        x0[0, m + design.k :] = plain[0, m:]
    return x0
