"""Agreement between labelers: raw agreement, Fleiss' kappa, Krippendorff's alpha, Cohen's
kappa per pair of labelers, Kendall's tau for rankings; bootstrap intervals. numpy only.

Input is a count matrix N (items x values: how many labels gave item i value c); only items
with two or more labels count. Every statistic here depends on the items only through their
rows of N, and with overlap 3 and four choices there are only 20 distinct rows, so the
items are folded into (pattern, weight). Resampling items with replacement is then exactly
a multinomial draw of pattern weights, and B bootstrap rounds are one (B x patterns) matrix
product instead of B passes over a million labels.

Definitions (all with a varying number of labels per item):
  raw agreement  the share of agreeing pairs among the pairs of labels on an item, averaged
                 over items (Fleiss' P-bar)
  Fleiss' kappa  (P-bar - P_e) / (1 - P_e), P_e = sum_c p_c^2, p_c the share of all labels
                 with value c (Fleiss 1971)
  Krippendorff's alpha   1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck over the coincidence
                 matrix o (Krippendorff 2011, "Computing Krippendorff's alpha-reliability");
                 d nominal (0/1), ordinal (rank distances through the marginals) or interval
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def count_matrix(item: np.ndarray, value: np.ndarray, n_items: int, n_values: int) -> np.ndarray:
    """N[i, c]: the labels of item i with value c (one bincount)."""
    flat = np.bincount(item * n_values + value, minlength=n_items * n_values)
    return flat.reshape(n_items, n_values)


@dataclass
class Patterns:
    """The distinct rows of N among items with >= 2 labels, and how many items have each."""

    rows: np.ndarray  # (P, C) float
    weights: np.ndarray  # (P,) float: items per row

    @property
    def items(self) -> int:
        return int(self.weights.sum())

    @classmethod
    def of(cls, counts: np.ndarray) -> Patterns:
        counts = np.asarray(counts)
        counts = counts[counts.sum(1) >= 2]
        if len(counts) == 0:
            return cls(np.zeros((0, counts.shape[1])), np.zeros(0))
        base = int(counts.max()) + 1
        if base ** counts.shape[1] < 2**62:  # each row as one integer: a 1-d unique is fast
            key = counts.astype(np.int64) @ (base ** np.arange(counts.shape[1], dtype=np.int64))
            _, first, weights = np.unique(key, return_index=True, return_counts=True)
            rows = counts[first]
        else:
            rows, weights = np.unique(counts, axis=0, return_counts=True)
        return cls(rows.astype(float), weights.astype(float))


def _delta(metric: str, marginals: np.ndarray) -> np.ndarray:
    """Squared distances d[c, k] between values (batched over marginals' leading axes)."""
    n_values = marginals.shape[-1]
    c = np.arange(n_values)
    if metric == "nominal":
        return np.broadcast_to((c[:, None] != c[None, :]).astype(float), (n_values, n_values))
    if metric == "interval":
        return ((c[:, None] - c[None, :]) ** 2).astype(float)
    if metric == "ordinal":
        # sum of the marginals from c to k, minus half of the two ends' own marginals
        cs = np.cumsum(marginals, axis=-1)
        lo, hi = np.minimum(c[:, None], c[None, :]), np.maximum(c[:, None], c[None, :])
        between = cs[..., hi] - cs[..., lo] + marginals[..., lo]
        ends = (marginals[..., :, None] + marginals[..., None, :]) / 2
        return (between - ends) ** 2
    raise ValueError(f"unknown metric {metric!r}")


def _statistics(p: Patterns, weights: np.ndarray, metric: str) -> dict[str, np.ndarray]:
    """Raw agreement, Fleiss' kappa and Krippendorff's alpha for pattern weights (..., P)."""
    rows = p.rows
    m = rows.sum(1)  # labels per item
    agreeing = (np.square(rows).sum(1) - m) / (m * (m - 1))  # share of agreeing pairs
    total = weights.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = weights @ agreeing / total
        shares = (weights @ rows) / (weights @ m)[..., None]
        p_e = np.square(shares).sum(-1)
        fleiss = (p_bar - p_e) / (1 - p_e)
        # coincidences: each item's ordered pairs of labels, weighted 1 / (m - 1)
        pair = (rows[:, :, None] * rows[:, None, :] - np.einsum("pc,ck->pck", rows, np.eye(
            rows.shape[1]))) / (m - 1)[:, None, None]  # fmt: skip
        o = np.tensordot(weights, pair, axes=([-1], [0]))  # (..., C, C)
        marginals = o.sum(-1)
        n = marginals.sum(-1)
        d = _delta(metric, marginals)
        observed = (o * d).sum((-2, -1))
        expected = (marginals[..., :, None] * marginals[..., None, :] * d).sum((-2, -1))
        alpha = 1 - (n - 1) * observed / expected
    return {"raw": p_bar, "fleiss_kappa": fleiss, "alpha": alpha}


def krippendorff_alpha(counts: np.ndarray, metric: str = "nominal") -> float:
    """Krippendorff's alpha from a units x values count matrix (values in their order)."""
    p = Patterns.of(counts)
    return float(_statistics(p, p.weights, metric)["alpha"]) if p.items else float("nan")


def fleiss_kappa(counts: np.ndarray) -> float:
    p = Patterns.of(counts)
    return float(_statistics(p, p.weights, "nominal")["fleiss_kappa"]) if p.items else float("nan")


def _interval(samples: np.ndarray) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return None, None
    lo, hi = np.quantile(samples, [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2])
    return float(lo), float(hi)


def _number(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def agreement(
    counts: np.ndarray, *, metric: str, bootstrap: int, rng: np.random.Generator
) -> dict[str, dict[str, float | None]] | None:
    """{"raw" | "fleiss_kappa" | "alpha": {"value", "ci_low", "ci_high"}} over the items with
    two or more labels, or None when there are none. Intervals: `bootstrap` rounds resampling
    items (multinomial pattern weights, see the module docstring)."""
    p = Patterns.of(counts)
    if p.items == 0:
        return None
    point = _statistics(p, p.weights, metric)
    draws = None
    if bootstrap > 0:
        draws = rng.multinomial(p.items, p.weights / p.items, size=bootstrap).astype(float)
        rounds = _statistics(p, draws, metric)
    out = {}
    for name, value in point.items():
        low, high = _interval(rounds[name]) if draws is not None else (None, None)
        out[name] = {"value": _number(value), "ci_low": low, "ci_high": high}
    return out


# --------------------------------------------------------------------------- pairs of labelers


# Items with more labels than this (gold items, which every labeler may answer) are left out
# of the per-pair tables: 500 labels on one item are 124,750 pairs, and each pair of
# labelers would learn one item from them. The pooled tables keep every item.
MAX_PAIR_LABELS = 50


def label_pairs(
    item: np.ndarray, labeler: np.ndarray, max_labels: int = MAX_PAIR_LABELS
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of labels (indices i, j) on the same item by two different labelers, with
    labeler[i] < labeler[j], on items with at most max_labels labels: in item-sorted order,
    offset d pairs position p with p + d; a position whose item ended drops out of the
    later offsets, so the work is the number of pairs."""
    if len(item) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    per_item = np.bincount(item)
    small = per_item[item] <= max_labels
    index = np.nonzero(small)[0]
    item, labeler = item[index], labeler[index]
    order = np.argsort(item.astype(np.int64) * (int(labeler.max(initial=0)) + 1) + labeler)
    it = item[order]
    firsts, seconds = [], []
    alive = np.arange(len(order))
    d = 1
    while len(alive):
        alive = alive[alive + d < len(order)]
        alive = alive[it[alive + d] == it[alive]]
        firsts.append(order[alive])
        seconds.append(order[alive + d])
        d += 1
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    keep = labeler[first] != labeler[second]
    return index[first[keep]], index[second[keep]]


@dataclass
class PairTables:
    """One C x C table per pair of labelers (first labeler's value, second's) on shared items."""

    first: np.ndarray  # (K,) labeler index, first < second
    second: np.ndarray
    tables: np.ndarray  # (K, C, C)
    pooled: np.ndarray  # (labelers, C, C): each labeler's value x any other's on shared items

    @property
    def shared(self) -> np.ndarray:
        return self.tables.sum((1, 2))


def pair_tables(
    item: np.ndarray, labeler: np.ndarray, value: np.ndarray, n_labelers: int, n_values: int
) -> PairTables:
    i, j = label_pairs(item, labeler)
    key = labeler[i].astype(np.int64) * n_labelers + labeler[j]
    pairs, inverse = np.unique(key, return_inverse=True)
    cells = np.bincount(
        inverse * n_values * n_values + value[i] * n_values + value[j],
        minlength=len(pairs) * n_values * n_values,
    ).reshape(len(pairs), n_values, n_values)
    # pooled, over every item: a label with value a on item i meets the item's other labels,
    # N[i, b] - [a == b] of them with value b (no pairs need listing)
    C = n_values
    counts = count_matrix(item, value, int(item.max(initial=-1)) + 1, C)
    others = counts[item] - np.eye(C, dtype=counts.dtype)[value]  # (labels, C)
    key = (labeler.astype(np.int64) * C * C + value * C)[:, None] + np.arange(C)
    pooled = np.bincount(key.ravel(), weights=others.ravel(), minlength=n_labelers * C * C)
    pooled = pooled.reshape(n_labelers, C, C)
    return PairTables(pairs // n_labelers, pairs % n_labelers, cells, pooled)


def cohen_kappa(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each table (..., C, C): (p_o - p_e) / (1 - p_e); nan when p_e is 1."""
    tables = np.asarray(tables, float)
    n = tables.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(tables, axis1=-2, axis2=-1) / n
        p_e = (tables.sum(-1) * tables.sum(-2)).sum(-1) / (n * n)
        return (p_o - p_e) / (1 - p_e)


def cohen_intervals(
    tables: np.ndarray, bootstrap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap intervals of each pair's kappa: resampling a pair's shared items is a
    multinomial draw of its C x C cells."""
    k = len(tables)
    if bootstrap <= 0 or k == 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    flat = tables.reshape(k, -1).astype(float)
    n = flat.sum(1)
    draws = rng.multinomial(n.astype(np.int64), flat / n[:, None], size=(bootstrap, k))
    kappas = cohen_kappa(draws.reshape(bootstrap, k, *tables.shape[1:]))
    q = [(1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2]
    with np.errstate(invalid="ignore"):
        low, high = np.nanquantile(np.where(np.isfinite(kappas), kappas, np.nan), q, axis=0)
    return low, high


# --------------------------------------------------------------------------- rankings


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between the rows of x and y (n, k), ties allowed; nan where a row is
    all ties."""
    k = x.shape[1]
    i, j = np.triu_indices(k, 1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(1) / np.sqrt((sx * sx).sum(1) * (sy * sy).sum(1))


def bootstrap_mean(
    values: np.ndarray, group: np.ndarray, bootstrap: int, rng: np.random.Generator
) -> dict[str, float | None]:
    """The mean of per-group means (a group: one item) with a bootstrap interval resampling
    groups; batched so that memory stays bounded for many items."""
    ok = np.isfinite(values)
    values, group = values[ok], group[ok]
    if len(values) == 0:
        return {"value": None, "ci_low": None, "ci_high": None}
    _, g = np.unique(group, return_inverse=True)
    means = np.bincount(g, weights=values) / np.bincount(g)
    out = {"value": float(means.mean()), "ci_low": None, "ci_high": None}
    if bootstrap > 0:
        n = len(means)
        rounds = []
        step = max(1, 5_000_000 // n)
        for start in range(0, bootstrap, step):
            size = min(step, bootstrap - start)
            w = rng.multinomial(n, np.full(n, 1 / n), size=size)
            rounds.append(w @ means / n)
        out["ci_low"], out["ci_high"] = _interval(np.concatenate(rounds))
    return out
