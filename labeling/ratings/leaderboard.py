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
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from labeling.errors import InvalidInput, NotFound

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
ELO_SCALE = 400 / math.log(10)
DEFAULT_ANCHOR_RATING = 1000.0
STYLE_FEATURES = ("length", "headers", "lists", "bold")

# Strength of the ridge, in virtual tied battles against a mean-rated model (see module doc).
PRIOR_VIRTUAL_TIES = 0.01
RIDGE = PRIOR_VIRTUAL_TIES / 4

# Outcome of a battle as model_a's score doubled: 0 = model_b won, 1 = a tie, 2 = model_a won.
# This also orders the cells as Chatbot Arena's np.unique over (a, b, score) does.
_OUTCOME = {"model_a": 2, "model_b": 0, "tie": 1, "tie (bothbad)": 1}
_SCORE = np.array([0.0, 0.5, 1.0])

# Newton stops when no parameter moves by more than this (natural-log units; 1e-9 ≈ 2e-7 Elo).
_TOL = 1e-9
_MAX_NEWTON = 100
# Bootstrap rounds only feed interval ends: 1e-7 (≈ 2e-5 Elo) is plenty.
_TOL_BOOTSTRAP = 1e-7
# Newton steps below this (in θ) are taken without a line search.
_SMALL_STEP = 1e-2
# Bound on the floats in one batch of bootstrap rounds' Hessians or row arrays (80 MB); the
# per-row work keeps about 20 arrays of rounds × rows alive.
_BATCH_FLOATS = 10_000_000


# --- style features -------------------------------------------------------------------------

_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_HEADER = re.compile(r"^ {0,3}#{1,6}\s", re.M)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_features(text: str) -> dict[str, float]:
    """Style counts of one answer, for style control.

    length: whitespace-separated words (a tokenizer-free stand-in for tokens; read_battles takes
    Chatbot Arena's token counts when a dump has them). headers: lines starting with 1–6 '#'.
    lists: ordered and unordered list items. bold: **bold** and __bold__ spans. Fenced code
    blocks count towards length but not markdown (a '# comment' in code is no header).
    """
    prose = _CODE_FENCE.sub("", text)
    return {
        "length": float(len(text.split())),
        "headers": float(len(_HEADER.findall(prose))),
        "lists": float(len(_LIST_ITEM.findall(prose))),
        "bold": float(len(_BOLD.findall(prose))),
    }


# --- battles --------------------------------------------------------------------------------


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


# --- reading files --------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedRow:
    """A row of a battles file left out by skip_invalid: where it is and why."""

    where: str  # "line 7" (JSON lines, CSV), "row 7" (Parquet) or "item 7" (JSON array)
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class BattlesFile:
    """What load_battles read: the valid battles, and the rows it left out."""

    battles: Battles
    skipped: list[SkippedRow]
    rows: int  # rows in the file, skipped ones included

    def skipped_message(self, limit: int = 5) -> str | None:
        if not self.skipped:
            return None
        n = len(self.skipped)
        shown = "; ".join(map(str, self.skipped[:limit]))
        more = f" (and {n - limit} more)" if n > limit else ""
        return f"skipped {n:,} invalid row{'s' if n != 1 else ''} of {self.rows:,}: {shown}{more}"


def _read_json_records(path: Path, skipped: list[SkippedRow]) -> tuple[pd.DataFrame, list[str]]:
    """Records and where each came from; unreadable ones go to `skipped`."""
    text = path.read_text(encoding="utf-8")
    records, where = [], []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{path}: not valid JSON ({e})") from None
        for number, item in enumerate(items, 1):
            if isinstance(item, dict):
                records.append(item)
                where.append(f"item {number}")
            else:
                skipped.append(SkippedRow(f"item {number}", "not a JSON object"))
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.append(SkippedRow(f"line {number}", f"not valid JSON ({e.msg})"))
                continue
            if isinstance(record, dict):
                records.append(record)
                where.append(f"line {number}")
            else:
                skipped.append(SkippedRow(f"line {number}", "not a JSON object"))
    return pd.DataFrame.from_records(records), where


def _read_csv(path: Path, skipped: list[SkippedRow]) -> tuple[pd.DataFrame, list[str]]:
    """Every cell as text (an empty name is then reported as such), with line numbers; rows
    with the wrong number of fields go to `skipped`."""
    import csv

    rows, where = [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return pd.DataFrame(), []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    skipped.append(
                        SkippedRow(
                            f"line {reader.line_num}",
                            f"has {len(row)} fields but the header has {len(header)}",
                        )
                    )
                    continue
                rows.append(row)
                where.append(f"line {reader.line_num}")
        except csv.Error as e:  # e.g. a quote that never closes: the rest cannot be trusted
            raise InvalidInput(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None
    return pd.DataFrame(rows, columns=header, dtype=object), where


def _bad_rows(frame: pd.DataFrame) -> dict[int, str]:
    """{row position: why} for rows make_battles would refuse (the first reason per row)."""
    n = len(frame)
    bad: dict[int, str] = {}
    w = frame["winner"].to_numpy(dtype=object)
    codes, uniques = pd.factorize(w)
    known = np.array([isinstance(u, str) and u in _OUTCOME for u in uniques] + [False])
    for i in np.flatnonzero(~known[codes]):  # code -1 (missing) picks the trailing False
        value = w[i]
        bad[int(i)] = (
            "winner is missing"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else f"winner {value!r} is not one of {', '.join(map(repr, WINNERS))}"
        )
    a = frame["model_a"].to_numpy(dtype=object)
    b = frame["model_b"].to_numpy(dtype=object)
    codes, uniques = pd.factorize(np.concatenate([a, b]))
    empty = np.array([not str(u).strip() for u in uniques] + [True])  # -1: missing
    for side, column in ((0, "model_a"), (1, "model_b")):
        for i in np.flatnonzero(empty[codes[side * n : (side + 1) * n]]):
            bad.setdefault(int(i), f"{column} is missing or an empty model name")
    for i in np.flatnonzero((codes[:n] == codes[n:]) & (codes[:n] >= 0)):
        bad.setdefault(
            int(i), f"model_a and model_b are both {str(uniques[codes[i]])!r}; a model cannot "
            "battle itself"
        )  # fmt: skip
    return dict(sorted(bad.items()))


def _metadata_side(meta: dict, side: str) -> list[float]:
    def total(key: str) -> float:
        counts = meta.get(key) or {}
        return float(sum(v or 0 for v in counts.values()))

    return [
        float(meta[f"sum_assistant_{side}_tokens"]),
        total(f"header_count_{side}"),
        total(f"list_count_{side}"),
        total(f"bold_count_{side}"),
    ]


def _style_from_metadata(column, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Chatbot Arena's conv_metadata → (style_a, style_b); None unless every row has it."""
    rows_a, rows_b = [], []
    for i, meta in enumerate(column):
        if isinstance(meta, str) and meta.strip():
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                try:  # pandas writes dicts to CSV as Python literals
                    meta = ast.literal_eval(meta)
                except (ValueError, SyntaxError):
                    raise InvalidInput(
                        f"{path}: row {i + 1}: conv_metadata is unreadable"
                    ) from None
        if not isinstance(meta, dict):
            return None
        try:
            rows_a.append(_metadata_side(meta, "a"))
            rows_b.append(_metadata_side(meta, "b"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidInput(
                f"{path}: row {i + 1}: conv_metadata lacks a usable {e} (expected "
                "sum_assistant_a_tokens, header_count_a, list_count_a, bold_count_a and the "
                "same for b)"
            ) from None
    return np.array(rows_a).reshape(-1, 4), np.array(rows_b).reshape(-1, 4)


def _timestamps(values: pd.Series, path: Path, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        seconds = pd.to_datetime(values, utc=True)
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all():
            return numbers.to_numpy(dtype=float)
        seconds = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(seconds.isna().to_numpy())
    if bad.size:
        raise InvalidInput(f"{path}: {_row_list(bad)}: {name} is missing or not a time")
    epoch = pd.Timestamp(0, tz="UTC")
    return ((seconds - epoch).dt.total_seconds()).to_numpy(dtype=float)


def read_battles(path) -> Battles:
    """load_battles(path).battles: the whole file, or InvalidInput naming its bad rows."""
    return load_battles(path).battles


def load_battles(path, *, skip_invalid: bool = False) -> BattlesFile:
    """Battles from a .parquet, .jsonl/.json (JSON lines or one JSON array) or .csv file.

    Required columns: model_a, model_b, winner (values as in WINNERS, as in Chatbot Arena's
    dumps). Optional: category; tstamp or timestamp (seconds, or date-times); conv_metadata
    (Chatbot Arena: sum_assistant_{a,b}_tokens, header_count_{a,b} {h1..h6}, list_count_{a,b}
    {ordered, unordered}, bold_count_{a,b} {"**", "__"}), which fills style_a/style_b with
    (tokens, headers, list items, bold spans). Style is filled only when every row has
    conv_metadata. Errors name the file.

    Bad rows (a model against itself, an unknown or missing winner, a missing or empty model
    name, an unreadable JSON line, a CSV line with the wrong number of fields) refuse the whole
    file, naming the first few; with skip_invalid they are left out and listed in `skipped`.
    A file that lacks a required column, or is unreadable as a whole, is always refused.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no battles file at {path}")
    suffix = path.suffix.lower()
    skipped: list[SkippedRow] = []
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        where = None
    elif suffix in (".jsonl", ".json"):
        frame, where = _read_json_records(path, skipped)
    elif suffix == ".csv":
        frame, where = _read_csv(path, skipped)
    else:
        raise InvalidInput(f"{path}: unsupported file type {suffix!r}; use .parquet, .jsonl, .csv")
    if frame.empty and not len(frame.columns):
        frame = pd.DataFrame(columns=["model_a", "model_b", "winner"])
    missing = [c for c in ("model_a", "model_b", "winner") if c not in frame.columns]
    if missing and (len(frame) or not skipped):
        found = ", ".join(map(str, frame.columns)) or "none"
        raise InvalidInput(
            f"{path}: missing required column(s) {', '.join(missing)} (columns found: {found})"
        )
    frame = frame.reset_index(drop=True)
    bad = _bad_rows(frame) if len(frame) else {}
    if bad:
        label = (lambda i: where[i]) if where is not None else (lambda i: f"row {i + 1}")
        skipped.extend(SkippedRow(label(i), reason) for i, reason in bad.items())
        frame = frame.drop(index=list(bad)).reset_index(drop=True)
    rows = len(frame) + len(skipped)
    skipped.sort(key=lambda r: int(r.where.rsplit(" ", 1)[1]))  # in file order
    if skipped and not skip_invalid:
        n = len(skipped)
        more = f" (and {n - 3} more invalid rows)" if n > 3 else ""
        raise InvalidInput(
            f"{path}: {'; '.join(map(str, skipped[:3]))}{more}: fix them, or pass "
            "--skip-invalid to leave them out"
        )
    return BattlesFile(_battles_from_frame(frame, path), skipped, rows)


def _battles_from_frame(frame: pd.DataFrame, path: Path) -> Battles:
    category = None
    if "category" in frame.columns:
        category = frame["category"].to_numpy(dtype=object)
        if path.suffix.lower() == ".csv":
            category = np.where(category == "", None, category)
    timestamp = None
    for name in ("tstamp", "timestamp"):
        if name in frame.columns:
            timestamp = _timestamps(frame[name], path, name)
            break
    style = None
    if "conv_metadata" in frame.columns:
        style = _style_from_metadata(frame["conv_metadata"], path)
    try:
        return make_battles(
            frame["model_a"],
            frame["model_b"],
            frame["winner"],
            category=category,
            style_a=None if style is None else style[0],
            style_b=None if style is None else style[1],
            timestamp=timestamp,
        )
    except InvalidInput as e:
        raise InvalidInput(f"{path}: {e}") from None


# --- aggregated counts ----------------------------------------------------------------------


def _normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a − b)/(a + b) per feature, 0 where both are 0: Chatbot Arena's style covariates."""
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)


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


# --- results --------------------------------------------------------------------------------


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


# --- the numerics ---------------------------------------------------------------------------


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


# --- fitting --------------------------------------------------------------------------------


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
