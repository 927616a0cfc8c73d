"""Bradley–Terry leaderboard: ratings with confidence intervals from pairwise votes.

The model
---------
Each model i has a strength θ_i (natural-log odds). In a battle of model a against model b

    P(a beats b) = σ(θ_a − θ_b),  σ(d) = 1 / (1 + e^−d).

Ratings are shown on the Elo scale, r_i = ELO_SCALE·θ_i + offset with ELO_SCALE = 400/ln 10
(≈ 173.7), so that P(a beats b) = 1 / (1 + 10^((r_b − r_a)/400)) as in Chatbot Arena: 400
points are 10:1 odds. The offset either centres the ranked models on `anchor_rating` (their mean
rating is `anchor_rating`) or pins the `anchor` model to it.

Ties (`ties=`)
* "half" (default, Chatbot Arena's choice): "tie" and "tie (bothbad)" are half a win for each
  side. With y ∈ {1, ½, 0} model_a's score and d = θ_a − θ_b, the log-likelihood is
  Σ_battles y·log σ(d) + (1 − y)·log σ(−d).
* "davidson" (Davidson 1970): with p_i = e^θ_i,
      P(i wins) = p_i / (p_i + p_j + ν√(p_i p_j)),   P(tie) = ν√(p_i p_j) / (same).
  Dividing by √(p_i p_j): P(i wins) = e^(d/2)/Z, P(tie) = ν/Z, Z = e^(d/2) + e^(−d/2) + ν, so
  given that it is not a tie P(i wins) = σ(d) and ratings keep their Elo meaning. ν ≥ 0 is fitted
  (as η = log ν) and reported in `settings["davidson_nu"]`.

Style control (`style=True`, Chatbot Arena's "style control"): every battle gets covariates
f_k = (a_k − b_k)/(a_k + b_k) (0 when both are 0) for each feature in STYLE_FEATURES, and
d = θ_a − θ_b + β·f. The θ are then the strengths left once answer length and markdown are
accounted for; β is reported in Elo per unit of f (f_length = 1/3 when a's answer is twice as
long as b's).

The prior. The maximum-likelihood θ of a model that never lost (or never won) is infinite; more
generally whenever the "won or tied against" graph is not strongly connected. The objective
therefore carries a weak ridge (λ/2)·Σθ² (also on β and η) with λ = PRIOR_VIRTUAL_TIES/4 =
0.0025: the curvature of 0.01 of a virtual tied battle against a model at the mean rating (a tie
at d = 0 has −log-likelihood log 2 + d²/8). A model with a few thousand battles moves by about
0.001 Elo; a model with 20 straight wins over average opponents stays finite (about 1250 Elo
above them), and a message names the models whose rating rests on the prior. Since the
likelihood only sees rating differences, the ridge also fixes the translation: the fitted θ
have mean 0.

Fitting. Battles are first counted per (model_a, model_b, outcome) (BattleCounts): a million
battles among 100 models make ~30k non-zero cells. Newton's method with a backtracking line
search minimises the penalised negative log-likelihood. Bootstrap rounds draw multinomial counts
over the cells, which is resampling battles with replacement, and all rounds are solved at once:
a batch of Newton steps on a (rounds × parameters) array, each round starting from the full-data
estimate. With style control the covariates differ per battle, so rows are battles.

Intervals (`ci=`)
* "bootstrap": percentile intervals over the rounds (covariance: the rounds' sample covariance).
* "sandwich": the robust covariance H⁻¹JH⁻¹, H the Hessian of the objective and J the sum over
  battles of each battle's score outer product; intervals r ± z·se. This is what the bootstrap
  estimates, for the price of one Hessian.

Ranks follow Chatbot Arena: rank = 1 + the number of ranked models whose interval lies entirely
above this model's (their ci_low > this ci_high).

Robustness (robustness.py, `robustness(lb)`): per model the fewest votes whose removal swaps it
with the next one (flip votes: greedy upper bound by the gradient of the rating difference,
exact on small data), provisional models, and each model's share of the battles.

Modules: battles.py (Battles, make_battles, BattleCounts), battle_files.py (load_battles,
read_battles), style.py (style features and covariates), bradley_terry.py (the objective and
Newton's method), intervals.py (bootstrap and sandwich), robustness.py (flip votes,
provisional models, sampling shares); this module ties them into `fit` and the result types,
and re-exports the public names of the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from labeling.errors import InvalidInput
from labeling.ratings.battle_files import BattlesFile, SkippedRow, load_battles, read_battles
from labeling.ratings.battles import WINNERS, BattleCounts, Battles, StyleRows, make_battles
from labeling.ratings.bradley_terry import (
    _MAX_NEWTON,
    ELO_SCALE,
    PRIOR_VIRTUAL_TIES,
    RIDGE,
    _newton,
    _Objective,
    _Problem,
    _problem,
    _start,
    _to_elo,
    _unbounded,
)
from labeling.ratings.intervals import _intervals
from labeling.ratings.robustness import Robustness, robustness
from labeling.ratings.style import STYLE_FEATURES, style_features

__all__ = [
    "DEFAULT_ANCHOR_RATING",
    "ELO_SCALE",
    "PRIOR_VIRTUAL_TIES",
    "RIDGE",
    "STYLE_FEATURES",
    "WINNERS",
    "BattleCounts",
    "Battles",
    "BattlesFile",
    "Leaderboard",
    "Rating",
    "Robustness",
    "SkippedRow",
    "StyleRows",
    "expected_information",
    "fit",
    "fit_by_category",
    "load_battles",
    "make_battles",
    "read_battles",
    "robustness",
    "style_features",
]

DEFAULT_ANCHOR_RATING = 1000.0


@dataclass
class Rating:
    model: str
    rating: float | None
    ci_low: float | None
    ci_high: float | None
    rank: int | None
    votes: int  # battles the model took part in (all of them, fitted or not)
    wins: int
    losses: int
    ties: int  # both kinds of tie
    ranked: bool
    note: str | None = None  # why unranked (too few votes, not connected, ...)


@dataclass(eq=False)
class Leaderboard:
    rows: list[Rating]  # ranked rows by rating (desc), then unranked rows
    messages: list[str]  # what a reader needs to know; never empty
    models: list[str]  # ranked models, in the order of the matrices below (rating desc)
    win_rate: np.ndarray  # masked (m, m): observed win rate of row vs column, ties as half
    battle_counts: np.ndarray  # (m, m) battles between i and j
    predicted_win_rate: np.ndarray  # (m, m) from the fitted ratings (Davidson: ties as half)
    covariance: np.ndarray | None  # (m, m) rating covariance, Elo²
    style_coefficients: dict[str, float] | None  # Elo per unit normalised difference
    settings: dict  # what was fitted: options, prior, Davidson ν, style intervals, iterations
    n_battles: int
    counts: BattleCounts | None = field(default=None, repr=False)  # for refits: counts.add()
    fit_state: dict | None = field(default=None, repr=False)  # parameters for a warm start

    def to_json(self) -> list[dict]:
        """[{"model", "rating", "ci_low", "ci_high", "rank", "votes"}, ...] in row order."""
        return [
            {
                "model": r.model,
                "rating": r.rating,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "rank": r.rank,
                "votes": r.votes,
            }
            for r in self.rows
        ]

    def win_rate_table(self) -> list[dict]:
        """One dict per ranked model: {"model": name, other: win rate or None, ...}.

        None where the two never met (and on the diagonal); ties count as half a win.
        """
        table = []
        for i, name in enumerate(self.models):
            row: dict[str, Any] = {"model": name}
            for j, other in enumerate(self.models):
                met = i != j and self.battle_counts[i, j] > 0
                row[other] = float(self.win_rate.data[i, j]) if met else None
            table.append(row)
        return table


class _AnchorNotRanked(InvalidInput):
    pass


def _model_stats(counts: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "votes": counts.sum(axis=(1, 2)) + counts.sum(axis=(0, 2)),
        "wins": counts[:, :, 2].sum(1) + counts[:, :, 0].sum(0),
        "losses": counts[:, :, 0].sum(1) + counts[:, :, 2].sum(0),
        "ties": counts[:, :, 1].sum(1) + counts[:, :, 1].sum(0),
    }


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _choose_component(counts, eligible, models, anchor):
    """Connected components of the comparison graph among eligible models; the one to rank.

    Ratings in groups that never met are not comparable, so one group is ranked: the anchor's,
    else the one with the most battles (the best-measured), never just the one with the most
    models. Returns (eligible indices, component labels, sizes, battles per group, chosen).
    """
    from scipy.sparse.csgraph import connected_components

    index = np.flatnonzero(eligible)
    met = counts.sum(-1)[np.ix_(index, index)]
    n_components, labels = connected_components(met + met.T > 0, directed=False)
    sizes = np.bincount(labels, minlength=n_components)
    battles = np.bincount(labels, weights=met.sum(1), minlength=n_components).astype(np.int64)
    if anchor is not None:
        chosen = labels[list(index).index(models.index(anchor))]
    else:
        # Groups that can be ranked (two models or more) first; then most battles, most
        # models, and the group of the alphabetically first model.
        chosen = max(range(n_components), key=lambda c: (sizes[c] >= 2, battles[c], sizes[c], -c))
    return index, labels, sizes, battles, chosen


def _group(models, index, labels, c) -> list[str]:
    return sorted(models[i] for i in index[labels == c])


def _empty(messages, settings, counts) -> Leaderboard:
    empty = np.zeros((0, 0))
    return Leaderboard(
        rows=[],
        messages=messages,
        models=[],
        win_rate=np.ma.masked_array(empty, mask=np.ones((0, 0), bool)),
        battle_counts=np.zeros((0, 0), dtype=np.int64),
        predicted_win_rate=empty,
        covariance=None,
        style_coefficients=None,
        settings=settings,
        n_battles=counts.n_battles,
        counts=counts,
    )


def fit(
    battles: Battles | BattleCounts,
    *,
    bootstrap: int = 100,
    ci: str = "bootstrap",
    ties: str = "half",
    anchor: str | None = None,
    anchor_rating: float = DEFAULT_ANCHOR_RATING,
    min_votes: int = 1,
    style: bool = False,
    confidence: float = 0.95,
    seed: int = 0,
    previous: Leaderboard | None = None,
) -> Leaderboard:
    """Bradley–Terry ratings with intervals and ranks (the maths is in the module docstring).

    battles: Battles, or BattleCounts (e.g. `previous.counts.add(new_battles)` for a refit).
    bootstrap: rounds for ci="bootstrap" (≥ 2); ci="sandwich" needs none.
    ties: "half" or "davidson". anchor: pin this model at anchor_rating; else the ranked models'
    mean rating is anchor_rating. min_votes: models in fewer battles are listed unranked and
    their battles left out. style: control for length and markdown (needs style_a/style_b).
    confidence: interval level. seed: the bootstrap's random seed (same seed, same draws).
    previous: a leaderboard to warm-start from; the result equals a cold fit.

    Only one connected group of models can be ranked (the one with the most battles, or the
    anchor's); the others are listed unranked with a note, and messages say so, naming them.
    Never returns NaN or inf.
    """
    if ci not in ("bootstrap", "sandwich"):
        raise InvalidInput(f"ci must be 'bootstrap' or 'sandwich', got {ci!r}")
    if ties not in ("half", "davidson"):
        raise InvalidInput(f"ties must be 'half' or 'davidson', got {ties!r}")
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be between 0 and 1, got {confidence}")
    if ci == "bootstrap" and bootstrap < 2:
        raise InvalidInput("bootstrap needs at least 2 rounds; use ci='sandwich' for none")
    if not math.isfinite(anchor_rating):
        raise InvalidInput("anchor_rating must be a finite number")
    counts = battles if isinstance(battles, BattleCounts) else BattleCounts.from_battles(battles)
    if style and counts.style is None:
        raise InvalidInput(
            "style control needs style features for every battle (style_a/style_b, or "
            "conv_metadata in the file)"
        )
    rounds = bootstrap if ci == "bootstrap" else 0
    settings: dict[str, Any] = {
        "ties": ties,
        "ci": ci,
        "bootstrap": rounds,
        "confidence": confidence,
        "anchor": anchor,
        "anchor_rating": anchor_rating,
        "min_votes": min_votes,
        "style": style,
        "seed": seed,
        "elo_scale": ELO_SCALE,
        "prior_virtual_ties": PRIOR_VIRTUAL_TIES,
        "warm_start": previous is not None,
    }
    models = list(counts.models)
    if counts.n_battles == 0:
        if anchor is not None:
            raise _AnchorNotRanked(f"anchor {anchor!r} is not among the ranked models: no votes")
        return _empty(["no votes yet: nothing to rank"], settings, counts)

    stats = _model_stats(counts.counts)
    eligible = stats["votes"] >= min_votes
    notes: dict[int, str] = {}
    messages: list[str] = []
    for i in np.flatnonzero(~eligible):
        notes[i] = f"{stats['votes'][i]} votes, fewer than min_votes={min_votes}"
    if (~eligible).any():
        few = [models[i] for i in np.flatnonzero(~eligible)]
        messages.append(
            f"{len(few)} model(s) with fewer than {min_votes} votes are listed unranked and "
            f"their battles left out: {_names(few)}"
        )
    if anchor is not None and (anchor not in models or not eligible[models.index(anchor)]):
        why = "it has no votes" if anchor not in models else notes[models.index(anchor)]
        raise _AnchorNotRanked(f"anchor {anchor!r} is not among the ranked models: {why}")

    ranked = np.zeros(0, dtype=np.int64)
    if eligible.any():
        index, labels, sizes, battles, chosen = _choose_component(
            counts.counts, eligible, models, anchor
        )
        if sizes[chosen] >= 2:
            ranked = index[labels == chosen]
        if anchor is not None and sizes[chosen] < 2:
            raise _AnchorNotRanked(
                f"anchor {anchor!r} is not among the ranked models: it has no battles against "
                "other models with enough votes"
            )
        if len(sizes) > 1 and len(ranked):
            others = sorted(
                (c for c in range(len(sizes)) if c != chosen), key=lambda c: (-battles[c], c)
            )
            groups = "; ".join(
                f"{sizes[c]} model{'s' if sizes[c] > 1 else ''} with {battles[c]:,} "
                f"battle{'s' if battles[c] != 1 else ''} ({_names(_group(models, index, labels, c), 3)})"
                for c in others[:5]
            ) + (f"; and {len(others) - 5} more groups" if len(others) > 5 else "")
            why = (
                f"the anchor {anchor}'s group"
                if anchor is not None
                else "the group with the most battles"
            )
            messages.append(
                f"the comparison graph is disconnected: {len(sizes)} groups of models never met "
                f"each other, and ratings compare only within a group. Ranked: {why}, "
                f"{sizes[chosen]} models with {battles[chosen]:,} battles. Listed unranked: "
                f"{groups}. To rank another group, pass --anchor with one of its models; to "
                "compare the groups, add battles between them"
            )
        for position, i in enumerate(index):
            if labels[position] != chosen or sizes[chosen] < 2:
                c = labels[position]
                notes[i] = (
                    "no battles against other models with enough votes"
                    if sizes[c] == 1
                    else f"not connected to the ranked models (its group: {sizes[c]} models, "
                    f"{battles[c]:,} battles)"
                )
    if not len(ranked):
        messages.insert(
            0,
            "nothing to rank: no two models with enough votes have battled each other"
            if eligible.sum() != 1
            else f"only {models[np.flatnonzero(eligible)[0]]} has enough votes: "
            "a rating needs at least two models that battled each other",
        )
        lb = _empty(messages, settings, counts)
        lb.rows = _unranked_rows(models, stats, notes, set())
        return lb

    return _fit_ranked(counts, ranked, stats, notes, messages, settings, previous)


def _unranked_rows(models, stats, notes, ranked: set) -> list[Rating]:
    rows = [
        Rating(
            model=models[i],
            rating=None,
            ci_low=None,
            ci_high=None,
            rank=None,
            votes=int(stats["votes"][i]),
            wins=int(stats["wins"][i]),
            losses=int(stats["losses"][i]),
            ties=int(stats["ties"][i]),
            ranked=False,
            note=notes.get(i, "not ranked"),
        )
        for i in range(len(models))
        if i not in ranked
    ]
    return sorted(rows, key=lambda r: (-r.votes, r.model))


def _fit_ranked(counts, ranked, stats, notes, messages, settings, previous) -> Leaderboard:
    """Fit the ranked models' battles and lay out the leaderboard."""
    style, davidson = settings["style"], settings["ties"] == "davidson"
    problem = _problem(counts, ranked, style, davidson)
    names, m, design = problem.names, problem.m, problem.design
    anchor = settings["anchor"]
    anchor_at = names.index(anchor) if anchor is not None else None

    objective = _Objective(design, problem.counts)
    x, H, iterations, converged = _newton(objective, _start(problem, previous))
    x = x[0]
    theta = x[:m]
    settings["newton_iterations"] = iterations
    if not converged:
        messages.append(f"the fit did not converge in {_MAX_NEWTON} Newton steps")
    ci = _intervals(problem, objective, x, H[0], settings, anchor_at)
    if settings["bootstrap"] and settings["bootstrap"] < 100:
        messages.append(f"only {settings['bootstrap']} bootstrap rounds: interval ends are rough")

    rating = _to_elo(theta, anchor_at, settings["anchor_rating"])
    low, high = ci.low, ci.high
    if anchor_at is not None:
        rating[anchor_at] = low[anchor_at] = high[anchor_at] = settings["anchor_rating"]
    finite = np.isfinite(rating) & np.isfinite(low) & np.isfinite(high)
    if not finite.all():  # should not happen; never show NaN
        bad = [names[i] for i in np.flatnonzero(~finite)]
        messages.append(f"numerical failure for {_names(bad)}: listed unranked")
        for i in np.flatnonzero(~finite):
            notes[ranked[i]] = "numerical failure in the fit"

    good = np.flatnonzero(finite)
    # A model that never lost (or never won) has an infinite likelihood interval on one side
    # and a resampled or curvature interval that collapses onto the prior: show no interval,
    # and let it neither outrank nor be outranked significantly.
    open_ended = [i for i in _unbounded(problem.Cs) if finite[i] and i != anchor_at]
    rank_low, rank_high = low.copy(), high.copy()
    rank_low[open_ended], rank_high[open_ended] = -np.inf, np.inf
    rank = {i: 1 + int((rank_low[good] > rank_high[i]).sum()) for i in good}
    order = sorted(good, key=lambda i: (-rating[i], names[i]))
    rows = [
        Rating(
            model=names[i],
            rating=float(rating[i]),
            ci_low=None if i in open_ended else float(low[i]),
            ci_high=None if i in open_ended else float(high[i]),
            note="never lost or never won: no finite interval yet" if i in open_ended else None,
            rank=rank[i],
            votes=int(stats["votes"][ranked[i]]),
            wins=int(stats["wins"][ranked[i]]),
            losses=int(stats["losses"][ranked[i]]),
            ties=int(stats["ties"][ranked[i]]),
            ranked=True,
        )
        for i in order
    ]
    rows += _unranked_rows(list(counts.models), stats, notes, {ranked[i] for i in good})

    # Matrices in leaderboard order.
    Cs = problem.Cs
    oriented = (Cs + Cs.transpose(1, 0, 2)[:, :, ::-1])[np.ix_(order, order)]
    n_ij = oriented.sum(-1)
    won = oriented[:, :, 2] + 0.5 * oriented[:, :, 1]
    win_rate = np.ma.masked_array(
        np.divide(won, n_ij, out=np.zeros(n_ij.shape), where=n_ij > 0), mask=n_ij == 0
    )
    d = theta[order][:, None] - theta[order][None, :]
    if davidson:  # P(win) + P(tie)/2
        nu = math.exp(x[-1])
        predicted = (np.exp(d / 2) + nu / 2) / (np.exp(d / 2) + np.exp(-d / 2) + nu)
    else:
        predicted = expit(d)

    style_coefficients = None
    if style:
        beta = x[m : m + design.k] * ELO_SCALE
        style_coefficients = {f: float(b) for f, b in zip(STYLE_FEATURES, beta, strict=True)}
        settings["style_coefficients_ci"] = {
            f: [float(ci.extra_low[i] * ELO_SCALE), float(ci.extra_high[i] * ELO_SCALE)]
            for i, f in enumerate(STYLE_FEATURES)
        }
        settings["style_coefficient_units"] = "Elo per unit of (a - b) / (a + b)"
        shown = ", ".join(f"{f} {b:+.1f}" for f, b in style_coefficients.items())
        messages.append(
            f"style-controlled ratings; style effects in Elo per unit of (a − b)/(a + b): {shown}"
        )
    if davidson:
        settings["davidson_nu"] = float(math.exp(x[-1]))
        settings["davidson_nu_ci"] = [
            float(math.exp(ci.extra_low[-1])),
            float(math.exp(ci.extra_high[-1])),
        ]
        messages.append(f"Davidson ties: ν = {settings['davidson_nu']:.3f}")
        if problem.pair_counts[:, 1].sum() == 0:
            messages.append("Davidson ties but no tie in the data: ν is held near 0 by the prior")
    messages.extend(_prior_message(problem, ranked, stats, style))

    scale = (
        f"{anchor} pinned at {settings['anchor_rating']:g}"
        if anchor is not None
        else f"centred on a mean of {settings['anchor_rating']:g}"
    )
    tie_text = "ties count as half a win" if not davidson else "Davidson ties"
    messages.insert(
        0,
        f"ranked {len(good)} of {len(counts.models)} models from {int(Cs.sum()):,} battles; "
        f"{tie_text}; {ci.text}; ratings {scale} (Elo scale: 400 points = 10:1 odds)",
    )

    return Leaderboard(
        rows=rows,
        messages=messages,
        models=[names[i] for i in order],
        win_rate=win_rate,
        battle_counts=n_ij,
        predicted_win_rate=predicted,
        covariance=np.nan_to_num(ci.covariance[np.ix_(order, order)], posinf=0.0, neginf=0.0),
        style_coefficients=style_coefficients,
        settings=settings,
        n_battles=counts.n_battles,
        counts=counts,
        fit_state={
            "models": names,
            "theta": theta.tolist(),
            "beta": x[m : m + design.k].tolist() if style else None,
            "eta": float(x[-1]) if davidson else None,
        },
    )


def _prior_message(problem: _Problem, ranked, stats, style: bool) -> list[str]:
    unbounded = _unbounded(problem.Cs)
    if not unbounded:
        return []
    records = [
        f"{problem.names[i]} ({stats['wins'][ranked[i]]}-{stats['losses'][ranked[i]]}"
        f"-{stats['ties'][ranked[i]]} W-L-T)"
        for i in unbounded
    ]
    return [
        f"{_names(records)}: never lost (or never won) against the rest, so the "
        "maximum-likelihood rating is infinite; a weak prior "
        f"({PRIOR_VIRTUAL_TIES} virtual tie against the mean rating) keeps it finite, so "
        "read it as a bound rather than an estimate"
        + (" (style covariates may still separate them)" if style else "")
    ]


def fit_by_category(battles: Battles, **fit_kwargs) -> dict[str, Leaderboard]:
    """{"all": fit(all battles), category: fit(its battles), ...} for each category with battles.

    `previous` may be a dict of leaderboards by category. Where the anchor has no ranked
    battles in a category, that category is centred instead and a message says so.
    """
    if not isinstance(battles, Battles):
        raise InvalidInput("fit_by_category needs Battles with a category column")
    previous = fit_kwargs.pop("previous", None)

    def one(name, subset):
        earlier = previous.get(name) if isinstance(previous, dict) else None
        if name == "all" and isinstance(previous, Leaderboard):
            earlier = previous
        try:
            return fit(subset, previous=earlier, **fit_kwargs)
        except _AnchorNotRanked as e:
            if name == "all":
                raise
            kwargs = {**fit_kwargs, "anchor": None}
            lb = fit(subset, previous=earlier, **kwargs)
            lb.messages.insert(1, f"{e}; this category's ratings are centred instead")
            return lb

    result = {"all": one("all", battles)}
    if battles.category is not None:
        codes, categories = pd.factorize(battles.category)
        for code in np.argsort(np.array(categories, dtype=str), kind="stable"):
            result[str(categories[code])] = one(categories[code], battles.select(codes == code))
    return result


def expected_information(lb: Leaderboard) -> np.ndarray:
    """(m, m) expected information from one more vote on pair (i, j), for arena matchmaking.

    With Σ the rating covariance and p_ij the predicted win rate, one vote adds Fisher
    information p(1−p)·xxᵀ (x = e_i − e_j, natural-log units); the resulting gain in
    log det Σ⁻¹ is ½·log(1 + p(1−p)·Var(θ_i − θ_j)) (D-optimal design). Pairs that are close
    and uncertain score high. Rows follow lb.models; the diagonal is 0; always finite.
    Unranked models are not in it: give them their first votes first.
    """
    m = len(lb.models)
    if m < 2 or lb.covariance is None:
        return np.zeros((m, m))
    cov = np.nan_to_num(lb.covariance) / ELO_SCALE**2
    var = np.diag(cov)
    var_diff = np.clip(var[:, None] + var[None, :] - 2 * cov, 0, None)
    p = np.clip(np.nan_to_num(lb.predicted_win_rate, nan=0.5), 0, 1)
    info = 0.5 * np.log1p(p * (1 - p) * var_diff)
    np.fill_diagonal(info, 0.0)
    return np.nan_to_num(info, nan=0.0, posinf=0.0, neginf=0.0)
