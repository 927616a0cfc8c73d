"""How fragile a leaderboard is: flip votes, provisional models and sampling fairness.

Flip votes
----------
For each ranked model h and the next model l below it, `flip_votes` is the smallest number of
votes whose removal leaves h no longer rated above l (θ_h − θ_l ≤ FLIP_TOLERANCE after a refit of
every ranked model; a tie counts as swapped). The last model has none.

Influence order. Removing one vote of class c (a pair (i, j) and an outcome o; votes of one
class are interchangeable) lowers its weight w_c by one. At the optimum ∇F(x̂) = 0, so by the
implicit function theorem dx̂/dw_c = −H⁻¹∇f_c, and removing the vote moves the rating
difference by about

    Δd_c ≈ (e_h − e_l)ᵀ H⁻¹ ∇f_c = g_c · (u_i − u_j) [+ g^η_c · u_η for Davidson ties],

with u = H⁻¹(e_h − e_l) (one solve per pair), g_c = ∂f_c/∂d_ij = p_ij − s_o the gradient of one
vote's negative log-likelihood (s_o ∈ {0, ½, 1} i's score) and H the Hessian of the full fit.
The greedy removal takes the classes with Δd_c < 0 (the votes that favour h over l) most
negative first. That puts h's direct wins over l first (they move d the most), then h's wins
over others and l's losses to others, weighted by how much each opponent links them; ties and
votes that favour l are never removed.

Search. Along that order, removing k votes is subtracting a prefix from the counts per
(pair, outcome), so a refit for any k is one Newton solve from x̂, and all pairs' refits are
batched into one solve. The first step tries k around the linearised guess (where the summed
influence reaches d) at factors of √2; then a multisection (_GRID refits per pair per step)
narrows the bracket to the smallest flipping k on the order. The answer is a real removal
verified by a refit, so it is an upper bound on the true minimum. The first-order order is
only right near x̂, so GREEDY_PASSES passes re-linearise at the removal the previous pass found
(where the swap happens), order again from the full data and keep the smallest answer; on
random small arenas this matches the exhaustive search on about 97% of pairs. Where the ranked
group has few vote classes (at most EXACT_LIMIT removal vectors, e.g. any 12 votes), every
removal vector is refitted at once instead and the answer is exact (`method="exact"`).

The refit uses the leaderboard's tie model ("half" or "davidson") and its ridge; ratings with
style control have per-battle covariates, so flip votes are not computed for them (a warning
says so). A warning names each ranked model whose flip votes are under 1% of the votes (the
WARN_LIMIT most fragile; one more line counts the rest).

Provisional models
------------------
A ranked model is provisional when it has fewer than `provisional_votes` votes: its place is
not yet measured. (Not by the width of its interval: among models of about equal strength
every interval covers the others, and marking them provisional would leave the weakest as the
only ranked one; the intervals and ranks already say that.) Provisional models are
listed after the established ones with rank None and the reason; ranks are recounted among
the established models by the leaderboard's rule (1 + the number whose ci_low is above this
ci_high). Their votes still inform the fit and the flip votes of the others.

Sampling fairness
-----------------
battle_share is a model's share of all battle appearances (each battle has two), so the shares
of all models sum to 1; a warning says when the largest share is more than SAMPLING_RATIO times
the smallest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from labeling.ratings.bradley_terry import _newton, _Objective, _Problem, _problem, _start

if TYPE_CHECKING:
    from labeling.ratings.leaderboard import Leaderboard, Rating

DEFAULT_PROVISIONAL_VOTES = 30
FLIP_TOLERANCE = 1e-6  # natural-log units (≈ 0.0002 Elo): "no longer above"
EXACT_LIMIT = 4096  # removal vectors refitted exhaustively (any 12 votes: at most 2¹²)
WARN_SHARE = 0.01  # warn when flip votes are under this share of all votes
WARN_LIMIT = 5  # fragile ranks named one by one in the warnings, the most fragile first
SAMPLING_RATIO = 2.0
GREEDY_PASSES = 2  # re-linearisations of the influence order (see flip_votes_greedy)
_GRID = 4  # refits per pair per multisection step
_BATCH_FLOATS = 4_000_000
_TOL = 1e-8  # Newton's tolerance in refits: well inside FLIP_TOLERANCE
_SCORE = np.array([0.0, 0.5, 1.0])


@dataclass
class ModelRobustness:
    model: str
    rating: float | None
    ci_low: float | None
    ci_high: float | None
    rank: int | None  # among established models; None when provisional or unranked
    votes: int
    battle_share: float  # share of battle appearances; all models sum to 1
    flip_votes: int | None  # None: the last established model, or unranked/provisional
    flip_with: str | None  # the model it would swap with
    method: str | None  # "exact" or "greedy" (an upper bound)
    provisional: bool
    provisional_reason: str | None
    ranked: bool
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "rating": self.rating,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "rank": self.rank,
            "votes": self.votes,
            "flip_votes": self.flip_votes,
            "flip_with": self.flip_with,
            "flip_method": self.method,
            "provisional": self.provisional,
            "provisional_reason": self.provisional_reason,
            "battle_share": self.battle_share,
        }


@dataclass
class Robustness:
    rows: list[ModelRobustness]  # established (by rating), provisional (by rating), unranked
    warnings: list[str]
    n_votes: int  # battles among the ranked models (what the flip votes are out of)
    sampling_ratio: float | None  # largest battle share / smallest
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "models": [r.to_json() for r in self.rows],
            "warnings": list(self.warnings),
            "votes": self.n_votes,
            "sampling_ratio": self.sampling_ratio,
        }


# --- the refit ------------------------------------------------------------------------------


@dataclass
class _Refit:
    """The ranked models' pair design and full-data optimum, for batched refits."""

    problem: _Problem
    x_hat: np.ndarray  # (p,)

    def solve(self, counts: np.ndarray) -> np.ndarray:
        """Parameters (B, p) refitted on B count arrays (B, pairs, 3), in batches."""
        design = self.problem.pairs
        rows = max(1, counts.shape[1] * 3, design.p * design.p)
        batch = max(1, _BATCH_FLOATS // (20 * rows))
        out = np.empty((len(counts), design.p))
        for start in range(0, len(counts), batch):
            part = counts[start : start + batch].astype(float)
            x0 = np.repeat(self.x_hat[None], len(part), 0)
            out[start : start + batch], _, _, _ = _newton(_Objective(design, part), x0, _TOL)
        return out


def _refit_setup(lb: Leaderboard) -> _Refit:
    from labeling.ratings.battles import BattleCounts

    counts: BattleCounts = lb.counts
    position = {name: i for i, name in enumerate(counts.models)}
    ranked = np.array([position[name] for name in lb.models], dtype=np.int64)
    problem = _problem(counts, ranked, style=False, davidson=lb.settings["ties"] == "davidson")
    objective = _Objective(problem.pairs, problem.pair_counts[None])
    x, _, _, _ = _newton(objective, _start(problem, lb))
    return _Refit(problem, x[0])


def _influence(refit: _Refit, pairs, x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(T, rows, 3): first-order change of θ_h − θ_l for pair t when one vote of each class is
    removed, linearised at x[t] (T, p), the optimum for counts[t] (T, rows, 3)."""
    design = refit.problem.pairs
    T = len(pairs)
    objective = _Objective(design, counts)
    _, H = objective.derivatives(x)
    C = np.zeros((T, design.p, 1))
    for t, (h, low) in enumerate(pairs):
        C[t, h, 0], C[t, low, 0] = 1.0, -1.0
    U = np.linalg.solve(H, C)[..., 0]  # (T, p): H⁻¹(e_h − e_l)
    du = U[:, design.PI] - U[:, design.PJ]  # (T, rows)
    if design.davidson:  # ∂f/∂d and ∂f/∂η of one vote per outcome (loss, tie, win of I)
        p_win, p_loss, p_tie = objective._probabilities(x)
        mean = (p_win - p_loss) / 2
        gd = np.stack([mean + 0.5, mean, mean - 0.5], axis=-1)
        ge = np.stack([p_tie, p_tie - 1.0, p_tie], axis=-1)
        return du[..., None] * gd + U[:, -1, None, None] * ge
    (prob,) = objective._probabilities(x)
    return du[..., None] * (prob[..., None] - _SCORE)


def _d(x: np.ndarray, h: int, low: int) -> float:
    return float(x[h] - x[low])


def _flipped(x: np.ndarray, h: np.ndarray, low: np.ndarray) -> np.ndarray:
    return x[np.arange(len(x)), h] - x[np.arange(len(x)), low] <= FLIP_TOLERANCE


# --- greedy and exact -----------------------------------------------------------------------


def _greedy_pass(refit: _Refit, pairs, influence: np.ndarray):
    """Remove votes in influence order (negative influence only, most negative first) and
    multisect on k. Returns (answer per pair or None, removed counts (T, rows, 3) there)."""
    base = refit.problem.pair_counts
    T = len(pairs)
    orders, sizes = [], []
    for t in range(T):
        score = np.where(base > 0, influence[t], np.inf).ravel()
        chosen = np.flatnonzero(score < -1e-15)
        chosen = chosen[np.argsort(score[chosen], kind="stable")]
        orders.append(chosen)
        sizes.append(base.ravel()[chosen].astype(np.int64))
    width = max(1, max(len(o) for o in orders))
    cells = np.full((T, width), base.size, dtype=np.int64)
    n = np.zeros((T, width), dtype=np.int64)
    for t in range(T):
        cells[t, : len(orders[t])] = orders[t]
        n[t, : len(orders[t])] = sizes[t]
    before = np.cumsum(n, axis=1) - n  # votes removed before each class
    total = n.sum(1)
    h = np.array([p[0] for p in pairs])
    low = np.array([p[1] for p in pairs])

    def counts_at(ts: np.ndarray, ks: np.ndarray) -> np.ndarray:
        removal = np.clip(ks[:, None] - before[ts], 0, n[ts])
        # One spare column takes the padding, so the indices of a row are distinct.
        counts = np.zeros((len(ts), base.size + 1))
        counts[:, :-1] = base.reshape(1, -1)
        counts[np.arange(len(ts))[:, None], cells[ts]] -= removal
        return counts[:, :-1].reshape(len(ts), *base.shape)

    def evaluate(ts: np.ndarray, ks: np.ndarray) -> np.ndarray:
        return _flipped(refit.solve(counts_at(ts, ks)), h[ts], low[ts])

    everyone = np.arange(T)
    # Where the linearisation expects the swap: the prefix whose summed influence reaches d.
    refit_d = np.array([_d(refit.x_hat, h[t], low[t]) for t in range(T)])
    padded = np.concatenate([influence.reshape(T, -1), np.zeros((T, 1))], axis=1)
    step = np.take_along_axis(padded, cells, axis=1) * n
    reach = -np.cumsum(np.where(n > 0, step, 0.0), axis=1)
    guess = np.array(
        [
            before[t, min(np.searchsorted(reach[t], refit_d[t]), width - 1)]
            + max(1, n[t, min(np.searchsorted(reach[t], refit_d[t]), width - 1)] // 2)
            for t in range(T)
        ]
    )
    lo = np.zeros(T, dtype=np.int64)  # largest k known not to flip (k = 0 does not)
    hi = total + 1  # smallest k known to flip (total + 1: none known yet)
    first = True
    active = [t for t in range(T) if total[t] > 0]
    while active:
        ts, ks = [], []
        for t in active:
            if first:  # around the guess, by factors of √2
                points = guess[t] * 2.0 ** (np.arange(-4, 5) / 2)
                points = np.unique(np.clip(points.round(), 1, total[t]).astype(np.int64))
            else:
                top = min(hi[t], total[t])
                if hi[t] > total[t]:  # nothing flipped yet below: only `total` is left
                    points = np.array([total[t]])
                else:
                    points = np.linspace(lo[t], top, _GRID + 2).round().astype(np.int64)
                points = np.unique(points)
            points = points[(points > lo[t]) & (points < hi[t])]
            ts += [t] * len(points)
            ks += list(points)
        first = False
        if ts:
            ts_a, ks_a = np.array(ts), np.array(ks, dtype=np.int64)
            flipped = evaluate(ts_a, ks_a)
            for t in active:
                mine = ts_a == t
                k_t, f_t = ks_a[mine], flipped[mine]
                if f_t.any():
                    hi[t] = min(hi[t], k_t[f_t].min())
                below = k_t[~f_t & (k_t < hi[t])]
                if below.size:
                    lo[t] = max(lo[t], below.max())
        active = [t for t in active if hi[t] - lo[t] > 1 and lo[t] < total[t]]
    at_all = hi <= total
    hi = np.minimum(hi, total)
    answer = [int(hi[t]) if at_all[t] else None for t in range(T)]
    return answer, counts_at(everyone, hi)


def flip_votes_greedy(
    refit: _Refit, pairs: list[tuple[int, int]], passes: int = GREEDY_PASSES
) -> list[int | None]:
    """Greedy upper bound on the flip votes of each pair (h, l) (indices into the ranked
    models). Pass 1 orders the votes by their influence at the full fit; each further pass
    re-linearises at the removal the previous pass found (where the swap happens) and orders
    again from the full data. The smallest verified answer per pair is kept."""
    if not pairs:
        return []
    T = len(pairs)
    base = refit.problem.pair_counts
    h = np.array([p[0] for p in pairs])
    low = np.array([p[1] for p in pairs])
    x = np.repeat(refit.x_hat[None], T, 0)
    if (at_zero := _flipped(x, h, low)).all():
        return [0] * T
    counts = np.repeat(base[None], T, 0)
    best: list[int | None] = [None] * T
    for _ in range(max(1, passes)):
        answer, removed = _greedy_pass(refit, pairs, _influence(refit, pairs, x, counts))
        improved = False
        for t, k in enumerate(answer):
            if k is not None and (best[t] is None or k < best[t]):
                best[t], improved = k, True
        if not improved:
            break
        counts = np.where(np.array([k is not None for k in answer])[:, None, None], removed, base)
        x = refit.solve(counts)
    return [0 if at_zero[t] else best[t] for t in range(T)]


def _removal_vectors(base: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Every removal vector over the non-empty classes (flat cells, (V, classes)), by total."""
    cells = np.flatnonzero(base.ravel() > 0)
    sizes = base.ravel()[cells].astype(np.int64)
    if np.log(sizes + 1.0).sum() > np.log(EXACT_LIMIT) + 1e-9:
        return None
    vectors = np.array(list(itertools.product(*(range(s + 1) for s in sizes))), dtype=np.int64)
    vectors = vectors.reshape(-1, len(cells))
    return cells, vectors[np.argsort(vectors.sum(1), kind="stable")]


def flip_votes_exact(refit: _Refit, pairs: list[tuple[int, int]]) -> list[int | None] | None:
    """The exact flip votes of each pair by refitting every removal vector (votes of one
    class are interchangeable); None when there are more than EXACT_LIMIT vectors."""
    base = refit.problem.pair_counts
    found = _removal_vectors(base)
    if found is None:
        return None
    cells, vectors = found
    counts = np.repeat(base.reshape(1, -1), len(vectors), 0)
    counts[:, cells] -= vectors
    x = refit.solve(counts.reshape(len(vectors), *base.shape))
    totals = vectors.sum(1)
    answer: list[int | None] = []
    for h, low in pairs:
        flipped = x[:, h] - x[:, low] <= FLIP_TOLERANCE
        answer.append(int(totals[flipped].min()) if flipped.any() else None)
    return answer


# --- the report -----------------------------------------------------------------------------


def _provisional_reason(row: Rating, threshold: int) -> str | None:
    if row.votes < threshold:
        return f"{row.votes} vote{'s' if row.votes != 1 else ''}, fewer than {threshold}"
    return None


def robustness(
    lb: Leaderboard,
    *,
    provisional_votes: int = DEFAULT_PROVISIONAL_VOTES,
    exact: bool = True,
) -> Robustness:
    """Flip votes, provisional models and battle shares of a fitted leaderboard (see the
    module docstring). provisional_votes: models with fewer votes are provisional. exact: the
    exhaustive search where the ranked group is small (else, and with False, greedy)."""
    from labeling.errors import InvalidInput

    if provisional_votes < 1:
        raise InvalidInput("provisional votes must be at least 1")
    warnings: list[str] = []
    all_votes = {r.model: r.votes for r in lb.rows}
    appearances = sum(all_votes.values())
    share = {m: (v / appearances if appearances else 0.0) for m, v in all_votes.items()}

    ranked = [r for r in lb.rows if r.ranked and r.rating is not None]
    reasons = {r.model: _provisional_reason(r, provisional_votes) for r in ranked}
    established = [r for r in ranked if reasons[r.model] is None]
    provisional = [r for r in ranked if reasons[r.model] is not None]

    def rank_among(rows: list[Rating]) -> dict[str, int]:
        low = {r.model: -np.inf if r.ci_low is None else r.ci_low for r in rows}
        high = {r.model: np.inf if r.ci_high is None else r.ci_high for r in rows}
        return {r.model: 1 + sum(low[o.model] > high[r.model] for o in rows) for r in rows}

    ranks = rank_among(established)
    flips: dict[str, tuple[int | None, str | None, str | None]] = {}
    n_votes = int(lb.battle_counts.sum() // 2) if lb.models else 0
    if len(established) >= 2 and lb.settings.get("style"):
        warnings.append(
            "flip votes are not computed for style-controlled ratings (the covariates differ "
            "per battle); run without style control to see them"
        )
    elif len(established) >= 2 and lb.counts is not None:
        refit = _refit_setup(lb)
        index = {name: i for i, name in enumerate(lb.models)}
        pairs = [
            (index[a.model], index[b.model])
            for a, b in zip(established, established[1:], strict=False)
        ]
        result = flip_votes_exact(refit, pairs) if exact else None
        method = "exact"
        if result is None:
            result, method = flip_votes_greedy(refit, pairs), "greedy"
        for (a, b), k in zip(zip(established, established[1:], strict=False), result, strict=True):
            flips[a.model] = (k, b.model, method)
        fragile = []
        for a, b in zip(established, established[1:], strict=False):
            k = flips[a.model][0]
            if k is None:
                warnings.append(
                    f"no removal of the votes favouring {a.model} over {b.model} swaps them"
                    + (" (greedy search)" if method == "greedy" else "")
                )
            elif k < WARN_SHARE * n_votes:
                fragile.append((k, ranks[a.model], a.model, b.model))
        # The most fragile first; past WARN_LIMIT of them, one line says how many more.
        for k, rank, above, below in sorted(fragile)[:WARN_LIMIT]:
            warnings.append(
                f"rank {rank} ({above}) rests on {k} vote{'s' if k != 1 else ''}: removing "
                f"{'them' if k != 1 else 'it'} puts {below} level with or above {above} "
                f"({k / n_votes:.2%} of {n_votes:,} votes)"
            )
        if len(fragile) > WARN_LIMIT:
            warnings.append(
                f"and {len(fragile) - WARN_LIMIT} more ranks rest on under {WARN_SHARE:.0%} of "
                "the votes (see the flip votes)"
            )

    out: list[ModelRobustness] = []
    ranked_names = {r.model for r in ranked}
    for r in established + provisional + [r for r in lb.rows if r.model not in ranked_names]:
        k, other, method = flips.get(r.model, (None, None, None))
        out.append(
            ModelRobustness(
                model=r.model,
                rating=r.rating,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                rank=ranks.get(r.model),
                votes=r.votes,
                battle_share=share.get(r.model, 0.0),
                flip_votes=k,
                flip_with=other,
                method=method,
                provisional=reasons.get(r.model) is not None,
                provisional_reason=reasons.get(r.model),
                ranked=r.ranked,
                note=r.note,
            )
        )
    if provisional:
        names = ", ".join(r.model for r in provisional[:8])
        more = f" and {len(provisional) - 8} more" if len(provisional) > 8 else ""
        warnings.append(
            f"{len(provisional)} provisional model{'s' if len(provisional) != 1 else ''} "
            f"listed after the ranked ones, not ranked: {names}{more}"
        )
    sampling_ratio = None
    shares = [s for s in share.values() if s > 0]
    if len(shares) >= 2:
        sampling_ratio = max(shares) / min(shares)
        if sampling_ratio > SAMPLING_RATIO:
            top = max(share, key=share.get)
            bottom = min(share, key=share.get)
            warnings.append(
                f"sampling is uneven: {top} appears in {share[top]:.1%} of battle places, "
                f"{bottom} in {share[bottom]:.1%} ({sampling_ratio:.1f}x)"
            )
    return Robustness(
        rows=out,
        warnings=warnings,
        n_votes=n_votes,
        sampling_ratio=sampling_ratio,
        settings={"provisional_votes": provisional_votes, "warn_share": WARN_SHARE},
    )
