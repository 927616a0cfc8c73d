"""Battles: votes in columns (make_battles validates them) and BattleCounts, the counts per
(model_a, model_b, outcome) that a fit without style control needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from labeling.errors import InvalidInput
from labeling.ratings.style import STYLE_FEATURES, _normalised_difference

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")

# Outcome of a battle as model_a's score doubled: 0 = model_b won, 1 = a tie, 2 = model_a won.
# This also orders the cells as Chatbot Arena's np.unique over (a, b, score) does.
_OUTCOME = {"model_a": 2, "model_b": 0, "tie": 1, "tie (bothbad)": 1}


@dataclass(frozen=True, eq=False)
class Battles:
    """Votes in columns, one entry per battle. Build with make_battles, which validates."""

    model_a: np.ndarray  # str objects
    model_b: np.ndarray
    winner: np.ndarray  # one of WINNERS
    category: np.ndarray | None = None  # str or None per battle
    style_a: np.ndarray | None = None  # (n, len(STYLE_FEATURES)) float
    style_b: np.ndarray | None = None
    timestamp: np.ndarray | None = None  # float seconds

    def __len__(self) -> int:
        return len(self.winner)

    def select(self, rows: np.ndarray) -> Battles:
        """The battles at `rows` (a boolean mask or indices)."""

        def take(column):
            return None if column is None else column[rows]

        return Battles(
            self.model_a[rows],
            self.model_b[rows],
            self.winner[rows],
            category=take(self.category),
            style_a=take(self.style_a),
            style_b=take(self.style_b),
            timestamp=take(self.timestamp),
        )


def _object_column(values, name: str) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        column = values.to_numpy(dtype=object)
    else:
        column = np.asarray(values, dtype=object)
    if column.ndim != 1:
        raise InvalidInput(f"{name} must be one value per battle, got shape {column.shape}")
    return column


def _row_list(rows: np.ndarray) -> str:
    """'row 4' or 'row 4 (and 12 more rows)', rows counted from 1."""
    more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
    return f"row {int(rows[0]) + 1}{more}"


def _model_names(model_a: np.ndarray, model_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(model_a)
    # One factorisation of both columns: checks touch only the distinct names.
    codes, uniques = pd.factorize(np.concatenate([model_a, model_b]))
    names = [u if isinstance(u, str) else str(u) for u in uniques]
    bad = codes < 0
    empty = [k for k, name in enumerate(names) if not name.strip()]
    if empty:
        bad |= np.isin(codes, empty)
    if bad.any():
        at = np.flatnonzero(bad)
        column = "model_a" if at[0] < n else "model_b"
        rows = np.unique(at % n)
        raise InvalidInput(f"{_row_list(rows)}: {column} is missing or an empty model name")
    same = np.flatnonzero(codes[:n] == codes[n:])
    if same.size:
        raise InvalidInput(
            f"{_row_list(same)}: model_a and model_b are both {names[codes[same[0]]]!r}; "
            "a model cannot battle itself"
        )
    if any(not isinstance(u, str) for u in uniques):
        lookup = np.array(names, dtype=object)
        return lookup[codes[:n]], lookup[codes[n:]]
    return model_a, model_b


def _style_column(values, name: str, n: int) -> np.ndarray:
    if len(values) and isinstance(values[0], dict):
        try:
            values = [[row[f] for f in STYLE_FEATURES] for row in values]
        except KeyError as e:
            raise InvalidInput(f"{name}: each row needs the keys {STYLE_FEATURES}") from e
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{name} must be numbers: {e}") from None
    if array.shape != (n, len(STYLE_FEATURES)):
        raise InvalidInput(
            f"{name} must have one row per battle with {len(STYLE_FEATURES)} columns "
            f"{STYLE_FEATURES}: expected shape ({n}, {len(STYLE_FEATURES)}), got {array.shape}"
        )
    bad = np.flatnonzero(~(np.isfinite(array) & (array >= 0)).all(axis=1))
    if bad.size:
        raise InvalidInput(f"{_row_list(bad)}: {name} must be finite, non-negative counts")
    return array


def make_battles(
    model_a,
    model_b,
    winner,
    *,
    category=None,
    style_a=None,
    style_b=None,
    timestamp=None,
) -> Battles:
    """Validated Battles from columns (lists, arrays or pandas Series).

    Raises InvalidInput naming the first bad row (rows counted from 1) for: columns of unequal
    length, a winner not in WINNERS, a missing or empty model name, a model battling itself,
    style rows that are not finite non-negative counts. style_a/style_b are (n, 4) arrays in
    STYLE_FEATURES order, or lists of style_features() dicts; give both or neither.
    """
    a = _object_column(model_a, "model_a")
    b = _object_column(model_b, "model_b")
    w = _object_column(winner, "winner")
    n = len(w)
    lengths = {"model_a": len(a), "model_b": len(b), "winner": n}
    for name, column in (("category", category), ("timestamp", timestamp)):
        if column is not None:
            lengths[name] = len(column)
    for name, column in (("style_a", style_a), ("style_b", style_b)):
        if column is not None:
            lengths[name] = len(column)
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise InvalidInput(f"battle columns must have equal lengths, got {sizes}")

    codes, uniques = pd.factorize(w)
    known = np.array([isinstance(u, str) and u in _OUTCOME for u in uniques] + [False])
    bad = np.flatnonzero(~known[codes])  # code -1 (missing) picks the trailing False
    if bad.size:
        value = w[bad[0]]
        raise InvalidInput(
            f"{_row_list(bad)}: winner {value!r} is not one of {', '.join(map(repr, WINNERS))}"
        )
    a, b = _model_names(a, b)

    if category is not None:
        cat_codes, cat_uniques = pd.factorize(_object_column(category, "category"))
        lookup = np.array([str(u) for u in cat_uniques] + [None], dtype=object)
        category = lookup[cat_codes]  # missing (code −1) → None
    if (style_a is None) != (style_b is None):
        raise InvalidInput("give both style_a and style_b (style features of each side) or neither")
    if style_a is not None:
        style_a = _style_column(style_a, "style_a", n)
        style_b = _style_column(style_b, "style_b", n)
    if timestamp is not None:
        try:
            timestamp = np.asarray(timestamp, dtype=float)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"timestamp must be seconds (numbers): {e}") from None
        bad = np.flatnonzero(~np.isfinite(timestamp))
        if bad.size:
            raise InvalidInput(f"{_row_list(bad)}: timestamp is missing or not finite")
    return Battles(a, b, w, category, style_a, style_b, timestamp)


@dataclass(frozen=True, eq=False)
class StyleRows:
    """Per-battle rows kept for style control (covariates differ per battle)."""

    a: np.ndarray  # (n,) index into BattleCounts.models
    b: np.ndarray
    outcome: np.ndarray  # (n,) 0 = model_b won, 1 = tie, 2 = model_a won
    diff: np.ndarray  # (n, len(STYLE_FEATURES)) normalised differences a vs b


@dataclass(frozen=True, eq=False)
class BattleCounts:
    """Battles counted for fitting: counts[a, b, o] battles with model_a = models[a],
    model_b = models[b] and outcome o (0: model_b won, 1: tie of either kind, 2: model_a won).

    That is all a Bradley–Terry fit needs without style control, so a refit after new votes
    adds them to these counts (`lb.counts.add(new_battles)`) instead of re-reading a million
    rows; `fit` accepts Battles or BattleCounts. With style features the per-battle covariates
    are kept as `style` rows and `add` appends to them. `models` are sorted.
    """

    models: tuple[str, ...]
    counts: np.ndarray  # (m, m, 3) int64
    style: StyleRows | None = None

    @property
    def n_battles(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return self.n_battles

    @classmethod
    def from_battles(cls, battles: Battles) -> BattleCounts:
        n = len(battles)
        codes, uniques = pd.factorize(np.concatenate([battles.model_a, battles.model_b]), sort=True)
        m = len(uniques)
        a, b = codes[:n], codes[n:]
        w_codes, w_uniques = pd.factorize(battles.winner)
        lookup = np.array([_OUTCOME.get(u, -1) for u in w_uniques] + [-1], dtype=np.int64)
        outcome = lookup[w_codes]
        # A cheap safety net for Battles built without make_battles.
        if n and (outcome.min() < 0 or a.min() < 0 or b.min() < 0 or (a == b).any()):
            raise InvalidInput(
                "invalid battles (bad winner, missing or equal models): use make_battles"
            )
        counts = np.bincount((a * m + b) * 3 + outcome, minlength=m * m * 3).reshape(m, m, 3)
        style = None
        if battles.style_a is not None:
            diff = _normalised_difference(battles.style_a, battles.style_b)
            style = StyleRows(a.astype(np.int32), b.astype(np.int32), outcome.astype(np.int8), diff)
        return cls(tuple(str(u) for u in uniques), counts, style)

    def add(self, battles: Battles | BattleCounts) -> BattleCounts:
        """These counts plus `battles` (a new object; self is unchanged)."""
        other = battles if isinstance(battles, BattleCounts) else BattleCounts.from_battles(battles)
        models = tuple(sorted(set(self.models) | set(other.models)))
        position = {name: i for i, name in enumerate(models)}
        mine = np.array([position[x] for x in self.models], dtype=np.int64)
        theirs = np.array([position[x] for x in other.models], dtype=np.int64)
        counts = np.zeros((len(models), len(models), 3), dtype=np.int64)
        counts[np.ix_(mine, mine)] += self.counts
        counts[np.ix_(theirs, theirs)] += other.counts
        parts = [(s, idx) for s, idx in ((self, mine), (other, theirs)) if s.n_battles]
        style = None
        if parts and all(s.style is not None for s, _ in parts):
            style = StyleRows(
                np.concatenate([idx[s.style.a] for s, idx in parts]).astype(np.int32),
                np.concatenate([idx[s.style.b] for s, idx in parts]).astype(np.int32),
                np.concatenate([s.style.outcome for s, _ in parts]),
                np.concatenate([s.style.diff for s, _ in parts]),
            )
        return BattleCounts(models, counts, style)
