"""Reading battles files (.parquet, JSON lines or array, .csv) into Battles, with the rows
left out by skip_invalid."""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labeling.errors import InvalidInput, NotFound
from labeling.ratings.battles import _OUTCOME, WINNERS, Battles, _row_list, make_battles


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
