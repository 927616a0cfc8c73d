"""Reading import files and turning their rows into prompts, answers and pairs.

Two halves, both free of database code:

1. Readers: JSONL (also a .json file holding one array), CSV, Parquet and a directory saved
   with `datasets.Dataset.save_to_disk`. Each yields `(number, row)` where `row` is a dict or a
   `RowProblem` (malformed JSON, bytes that are not UTF-8, a cell over a cap). Numbers are
   1-based file lines for JSONL and CSV, row numbers for Parquet and datasets (`unit` says
   which). Every reader streams, batch by batch, under `Limits` (rows, characters a cell,
   bytes a row, decompressed bytes in all): a Parquet file's declared sizes are checked
   before anything is decoded and its real decoded size is counted before any row is kept,
   so a small file that expands to gigabytes is refused while memory stays flat.
2. Row parsers, one per format, that check a row and return a `Row`: the prompt as a list of
   {"role", "content"} plus the texts that come with it (a demonstration, a chosen/rejected
   pair, k candidates) and, for a pair, the choice. A bad row raises `RowProblem` with a
   message for a person.

Import never changes what a row means: TRL dataset types that no project kind can hold
(unpaired/KTO, stepwise supervision, language modeling, tool calling, images) are refused
with the reason (`REFUSED`), never read as a format they only resemble.

Limits: a message or answer holds at most MAX_TEXT_CHARS characters and a conversation at
most MAX_MESSAGES messages; longer input is a row error, never a crash.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput

MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 500
MAX_SOURCE_CHARS = 200
MAX_CATEGORY_CHARS = 100
MAX_TAGS = 50
MB = 1024 * 1024

FORMATS = (
    "prompts",
    "messages",
    "prompt-completion",
    "preference",
    "hh-rlhf",
    "candidates",
    "comparison",
    "alpacafarm",
)
ROLES = ("system", "user", "assistant")

# What each format turns a row into.
ROW_KIND = {
    "prompts": "prompt",
    "messages": "sft",
    "prompt-completion": "sft",
    "preference": "pair",
    "hh-rlhf": "pair",
    "candidates": "candidates",
    "comparison": "pair",
    "alpacafarm": "pair",
}

# TRL dataset types (and kin) that no project kind holds: refused, with what to do instead.
REFUSED = {
    "unpaired-preference": (
        "unpaired preference (KTO) rows (prompt, completion, label) cannot be imported: no "
        "project kind holds a lone completion with a good/bad label, and taking them as "
        "demonstrations would teach the label=false ones; to use the label=true completions "
        "as demonstrations, keep only those rows and drop the 'label' column"
    ),
    "stepwise-supervision": (
        "stepwise-supervision rows (prompt, completions, labels) cannot be imported: no "
        "project kind holds per-step labels, and importing the prompts alone would drop every "
        "completion and label; to take only the prompts, say so with --format prompts"
    ),
    "language-modeling": (
        "language-modeling rows (a 'text' column) cannot be imported: a plain text has no "
        "prompt to answer or compare; split it into prompt and completion, or import a column "
        "as prompts with --map prompt=COLUMN"
    ),
    "tool-calling": (
        "tool-calling rows (a 'tools' column, 'tool' messages or tool_calls) cannot be "
        "imported: labelers see text only and the tool calls would be lost"
    ),
    "vision": (
        "rows with images (an 'images' or 'image' column, or message parts) cannot be "
        "imported: labelers see text only and would judge answers without the image"
    ),
}
# Columns that carry meaning no format here keeps: a row holding one is refused (except by an
# explicit --format prompts, which takes the prompt alone on purpose).
MEANING_COLUMNS = {
    "label": "unpaired-preference",
    "labels": "stepwise-supervision",
    "completions": "stepwise-supervision",
    "tools": "tool-calling",
    "images": "vision",
    "image": "vision",
}
CHOICES = ("a", "b", "tie", "both_bad")


class RowProblem(Exception):
    """One row cannot be imported; the message says why."""


@dataclass(slots=True)
class Row:
    """One parsed row. `texts`: [demonstration] | [chosen, rejected] | [a, b] | candidates | [].

    `choice` is the imported label of a pair ("a" for chosen/rejected, whose A is the chosen
    answer) or None for a pair without one (an unlabeled comparison task)."""

    number: int
    kind: str
    messages: list[dict[str, str]]
    texts: list[str]
    source: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    choice: str | None = None


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Caps on what one import reads. The defaults let real files through (an HH-RLHF or
    AlpacaFarm split is a fraction of them); a file over one is refused with the cap's name
    and the `rlhf import` flag that raises it. The total is the decompressed size, and it
    bounds memory too: the importer holds a file's rows to check all of them before writing
    any (so a bigger file is split, or the cap raised on a machine with the memory)."""

    max_rows: int = 1_000_000
    max_cell_chars: int = 1_000_000
    max_row_bytes: int = 8 * MB
    max_total_bytes: int = 256 * MB

    def __post_init__(self) -> None:
        for name, flag, low, high in (
            ("max_rows", "--max-rows", 1, 10**9),
            ("max_cell_chars", "--max-cell-chars", 1, 10**9),
            ("max_row_bytes", "--max-row-mb", MB, 1024 * MB),
            ("max_total_bytes", "--max-total-mb", MB, 1024 * 1024 * MB),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                scale = MB if name.endswith("bytes") else 1
                raise InvalidInput(
                    f"{flag} must be a whole number from {low // scale:,} to {high // scale:,}"
                )

    def rows_error(self) -> InvalidInput:
        return InvalidInput(
            f"the file holds more than {self.max_rows:,} rows, the cap (raise it with "
            "--max-rows, or split the file: importing is idempotent)"
        )

    def total_error(self, what: str) -> InvalidInput:
        return InvalidInput(
            f"{what} more than {self.max_total_bytes // MB:,} MB of data, the cap on an "
            "import's decompressed size (raise it with --max-total-mb, or split the file)"
        )

    def cell_problem(self, key: str, size: int) -> RowProblem:
        return RowProblem(
            f"column {key!r} holds {size:,} characters, over the cap of "
            f"{self.max_cell_chars:,} (--max-cell-chars)"
        )

    def row_problem(self) -> RowProblem:
        return RowProblem(
            f"the row is larger than {self.max_row_bytes // MB:,} MB, the cap (--max-row-mb)"
        )


DEFAULT_LIMITS = Limits()


def _chars(value: Any) -> int:
    """Characters of text a cell holds (strings inside lists and objects included)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return sum(map(_chars, value))
    if isinstance(value, dict):
        return sum(len(k) + _chars(v) for k, v in value.items() if isinstance(k, str))
    return 0


def _bounded(
    rows: Iterator[tuple[int, Any]], limits: Limits
) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """Counts rows against max_rows and checks every cell and row against the caps."""
    count = 0
    cell_cap, row_cap = limits.max_cell_chars, limits.max_row_bytes
    for number, row in rows:
        count += 1
        if count > limits.max_rows:
            raise limits.rows_error()
        if isinstance(row, dict):
            total = 0
            try:
                for key, value in row.items():
                    if value.__class__ is str:
                        size = len(value)
                    elif value is None or value.__class__ in (int, float, bool):
                        continue
                    else:
                        size = _chars(value)
                    if size > cell_cap:
                        row = limits.cell_problem(str(key), size)
                        break
                    total += size
                else:
                    if total > row_cap:
                        row = limits.row_problem()
            except RecursionError:
                row = RowProblem("the row is nested too deeply")
        yield number, row


# --------------------------------------------------------------------------- file readers


@dataclass
class Source:
    """An opened import file: its type, how rows are numbered, and the rows."""

    file_type: str  # jsonl | json | csv | parquet | datasets
    unit: str  # "line" or "row"
    rows: Iterator[tuple[int, dict[str, Any] | RowProblem]]


def open_source(
    path: str | Path, *, split: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Source:
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        return Source("datasets", "row", _bounded(_read_datasets(path, split, limits), limits))
    if not stat.S_ISREG(info.st_mode):
        # /dev/zero, a pipe, a socket: endless or unsized streams are not import files.
        raise InvalidInput(f"{path} is not a regular file (a device, pipe or socket)")
    if split is not None:
        raise InvalidInput("--split applies to a saved datasets directory only")
    with _open(path) as f:
        head = f.read(4096)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or head[:4] == b"PAR1":
        return Source("parquet", "row", _bounded(_read_parquet(path, limits), limits))
    if info.st_size > limits.max_total_bytes:
        raise limits.total_error(f"{path.name} holds")
    if suffix in (".jsonl", ".ndjson"):
        return Source("jsonl", "line", _bounded(_read_jsonl(path, limits), limits))
    if suffix == ".csv":
        return Source("csv", "line", _bounded(_read_csv(path, limits), limits))
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"[":
        return Source("json", "row", _bounded(_read_json_array(path, limits), limits))
    if start == b"{":
        return Source("jsonl", "line", _bounded(_read_jsonl(path, limits), limits))
    if not start and len(head) < 4096:
        raise InvalidInput(f"{path.name}: no rows (the file is empty)")
    raise InvalidInput(
        f"cannot tell the type of {path.name}: use JSON lines (.jsonl), CSV (.csv), "
        "Parquet (.parquet) or a directory saved with datasets' save_to_disk"
    )


def _open(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None


READ_CHUNK = MB


def _read_jsonl(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    loads = json.loads
    cap = limits.max_row_bytes
    total = 0
    with _open(path) as f:
        for number in range(1, 2**62):
            raw = f.readline(cap + 1)
            if not raw:
                return
            total += len(raw)
            if len(raw) > cap and not raw.endswith(b"\n"):
                # A line over the cap (or a file with no newline at all): skip to its end
                # chunk by chunk, never holding more than one chunk of it.
                while (more := f.readline(READ_CHUNK)) and not more.endswith(b"\n"):
                    total += len(more)
                    if total > limits.max_total_bytes:
                        raise limits.total_error(f"{path.name} holds")
                total += len(more)
                yield number, limits.row_problem()
                continue
            if total > limits.max_total_bytes:  # the file grew while we read it
                raise limits.total_error(f"{path.name} holds")
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw or raw.isspace():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, RowProblem(f"not UTF-8 text (byte {exc.start + 1} of the line)")
                continue
            try:
                value = loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowProblem(f"malformed JSON: {exc.msg} (column {exc.colno})")
                continue
            except RecursionError:
                yield number, RowProblem("malformed JSON: nested too deeply")
                continue
            if not isinstance(value, dict):
                yield number, RowProblem(f"expected a JSON object, got {_type_name(value)}")
                continue
            yield number, value


def _read_json_array(
    path: Path, limits: Limits
) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """One JSON array of objects, decoded one element at a time from a sliding buffer."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\r\n]*")
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        read = 0

        def more() -> str:
            nonlocal read
            try:
                chunk = f.read(READ_CHUNK)
            except UnicodeDecodeError:
                raise InvalidInput("the JSON file is not UTF-8 text") from None
            read += len(chunk)
            if read > limits.max_total_bytes:  # the file grew while we read it
                raise limits.total_error(f"{path.name} holds")
            return chunk

        buf, pos, eof = more(), 0, False
        pos = ws.match(buf, pos).end()
        if buf[pos : pos + 1] != "[":
            raise InvalidInput("a .json file must hold one array of objects (or use JSON lines)")
        pos += 1
        number, expect_value = 0, True
        while True:
            pos = ws.match(buf, pos).end()
            if pos >= len(buf) - 64 and not eof:  # keep some look-ahead in the buffer
                chunk = more()
                eof = not chunk
                buf, pos = buf[pos:] + chunk, 0
                continue
            head = buf[pos : pos + 1]
            if head == "]" and (number == 0 or not expect_value):
                return
            if head == "," and not expect_value:
                pos, expect_value = pos + 1, True
                continue
            if not head:
                raise InvalidInput("malformed JSON file: the array is never closed")
            if not expect_value:
                raise InvalidInput(
                    f"malformed JSON file: expected ',' or ']' after element {number}"
                )
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                # Cut off by the buffer's end (or a string still open) means read on.
                truncated = exc.pos >= len(buf) - 8 or exc.msg.startswith("Unterminated string")
                if eof or not truncated:
                    raise InvalidInput(
                        f"malformed JSON file: {exc.msg} in element {number + 1}"
                    ) from None
                if len(buf) - pos > limits.max_row_bytes:
                    raise InvalidInput(
                        f"element {number + 1} of the JSON array is larger than "
                        f"{limits.max_row_bytes // MB:,} MB, the cap (--max-row-mb)"
                    ) from None
                chunk = more()  # the element continues past the buffer
                eof = not chunk
                buf, pos = buf[pos:] + chunk, 0
                continue
            except RecursionError:
                raise InvalidInput("malformed JSON file: nested too deeply") from None
            number += 1
            pos, expect_value = end, False
            if isinstance(value, dict):
                yield number, value
            else:
                yield number, RowProblem(f"expected a JSON object, got {_type_name(value)}")


# CSV cells are text; these columns may carry JSON (a list of messages, of answers, of tags).
_JSON_LIST_COLUMNS = ("messages", "responses", "tags")
_MAYBE_CONVERSATION_COLUMNS = ("prompt", "completion", "chosen", "rejected")

# What the csv module's strict-mode errors mean for a person.
_CSV_ERRORS = (
    ("unexpected end of data", 'a quoted cell that starts here never closes (a missing ")'),
    ("expected after", 'text follows a closing quote (write a quote inside a cell as "")'),
    ("field larger than field limit", None),  # filled in with the cap below
    ("line contains nul", "the line contains a NUL byte"),
    ("new-line character seen in unquoted field", "a bare carriage return inside a cell"),
)


class _LineTooLong(Exception):
    pass


class _Lines:
    """The file's lines for csv.reader, each read with a bound, so that a file with no
    newline (or a record that never ends) costs at most the row cap in memory."""

    def __init__(self, f, limits: Limits):
        self.f, self.limits = f, limits
        self.record_chars = 0  # characters since the current record began
        self.total = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.f.readline(self.limits.max_row_bytes + 1)
        if not line:
            raise StopIteration
        self.total += len(line)
        self.record_chars += len(line)
        if self.record_chars > self.limits.max_row_bytes:
            raise _LineTooLong
        if self.total > self.limits.max_total_bytes:
            raise self.limits.total_error("the file holds")
        return line


def _read_csv(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    # Undecodable bytes become surrogates; rows holding them are reported by line below.
    f = path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    with f:
        yield from _csv_rows(f, limits)


def _csv_rows(f, limits: Limits) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    cell_cap = limits.max_cell_chars
    if csv.field_size_limit() < cell_cap * 4:
        csv.field_size_limit(cell_cap * 4)  # longer cells are reported by the cell check
    lines = _Lines(f, limits)
    # strict: a quote that never closes, or text after a closing quote, is an error, not a cell
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    last_line = 0
    while True:
        start = last_line + 1
        lines.record_chars = 0
        try:
            record = next(reader)
        except StopIteration:
            return
        except _LineTooLong:
            raise InvalidInput(
                f"line {start}: the CSV record is larger than {limits.max_row_bytes // MB:,} MB, "
                "the cap (--max-row-mb); is a quote left open?"
            ) from None
        except csv.Error as exc:
            # The reader cannot resync after a structural error: refuse the whole file
            # rather than import the rows before it and silently drop the rest.
            message = str(exc)
            for needle, meaning in _CSV_ERRORS:
                if needle in message.lower():
                    message = meaning or (
                        f"a cell is longer than {cell_cap:,} characters, the cap (--max-cell-chars)"
                    )
                    break
            raise InvalidInput(f"line {start}: malformed CSV: {message}") from None
        last_line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            if any(_has_surrogates(c) for c in header):
                raise InvalidInput(f"line {start}: the CSV header is not UTF-8 text")
            named = [c for c in header if c]
            twice = sorted({c for c in named if named.count(c) > 1})
            if twice:
                raise InvalidInput(f"line {start}: the CSV header names column {twice[0]!r} twice")
            continue
        if any(_has_surrogates(c) for c in record):
            yield start, RowProblem("not UTF-8 text")
            continue
        if len(record) != len(header):
            yield (
                start,
                RowProblem(f"{len(record)} cells but the header names {len(header)} columns"),
            )
            continue
        row: dict[str, Any] = {}  # every column of the header; an empty cell is None
        try:
            for key, cell in zip(header, record, strict=True):
                if key:
                    row[key] = _csv_cell(key, cell) if cell != "" else None
        except RowProblem as exc:
            yield start, exc
            continue
        yield start, row


def _csv_cell(key: str, cell: str) -> Any:
    if key in _JSON_LIST_COLUMNS:
        if cell.lstrip().startswith("["):
            try:
                return json.loads(cell)
            except json.JSONDecodeError as exc:
                raise RowProblem(f"column {key!r}: malformed JSON: {exc.msg}") from None
        if key == "tags":
            return [t.strip() for t in cell.split(",") if t.strip()]
        raise RowProblem(f"column {key!r} must hold a JSON list")
    if key in _MAYBE_CONVERSATION_COLUMNS and cell.lstrip().startswith("[{"):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return cell
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            return value
    return cell


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# Decoded bytes one Parquet batch may take at most, and its most rows.
PARQUET_BATCH_BYTES = 16 * MB
PARQUET_BATCH_ROWS = 1024


def _read_parquet(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        chunks = [
            meta.row_group(g).column(c)
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        ]
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InvalidInput(f"cannot read Parquet file {path.name}: {exc}") from None
    # Before decoding anything: what the file itself declares. Run-length-encoded levels can
    # hide millions of empty values in a few bytes, so values count too (8 bytes each).
    if meta.num_rows > limits.max_rows:
        raise limits.rows_error()
    declared = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    if declared + 8 * sum(c.num_values for c in chunks) > limits.max_total_bytes:
        raise limits.total_error(f"{path.name} declares")
    # A dictionary-encoded cell can repeat in every row: one cell is at most its dictionary
    # page, so that page's size decides how many rows one batch may decode.
    largest = 1
    with _open(path) as f:
        for chunk in chunks:
            if chunk.has_dictionary_page:
                size = _dictionary_page_size(f, chunk.dictionary_page_offset)
                largest = max(largest, size if size is not None else chunk.total_uncompressed_size)
    batch = max(1, min(PARQUET_BATCH_ROWS, PARQUET_BATCH_BYTES // largest))
    return _parquet_rows(pf, path, batch, limits)


def _dictionary_page_size(f, offset: int | None) -> int | None:
    """uncompressed_page_size from the Thrift compact PageHeader at `offset`, if it is a
    dictionary page (fields 1 type, 2 uncompressed size, 3 compressed size: all i32)."""
    if not offset or offset < 4:
        return None
    f.seek(offset)
    data = f.read(64)
    pos, field, values = 0, 0, {}
    while len(values) < 3:
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        if byte & 0x0F != 5 or not byte >> 4:  # an i32 field with a short delta
            return None
        field += byte >> 4
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 35:
                return None
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        values[field] = (value >> 1) ^ -(value & 1)  # zigzag
    return values.get(2) if values.get(1) == 2 else None  # 2: DICTIONARY_PAGE


def _parquet_rows(pf, path: Path, batch: int, limits: Limits):
    # Dictionary and run-length encodings expand past the declared sizes (a 1 kB file can
    # hold 4,000 copies of one 100k-character cell): count the real decoded size first,
    # batch by batch, keeping nothing, and refuse before a single row is held.
    try:
        total = 0
        for record_batch in pf.iter_batches(batch_size=batch):
            total += record_batch.nbytes
            if total > limits.max_total_bytes:
                raise limits.total_error(f"{path.name} expands to")
        number = 0
        for record_batch in pf.iter_batches(batch_size=batch):
            for row in _batch_rows(record_batch, limits):
                number += 1
                yield number, row
    except InvalidInput:
        raise
    except Exception as exc:  # a corrupt page, an unsupported type
        raise InvalidInput(f"cannot read Parquet file {path.name}: {exc}") from None


def _batch_rows(record_batch, limits: Limits) -> Iterator[dict[str, Any] | RowProblem]:
    if record_batch.nbytes <= limits.max_row_bytes:
        yield from record_batch.to_pylist()
        return
    # A batch over the row cap may hold one huge row: size rows before making them Python.
    for i in range(record_batch.num_rows):
        one = record_batch.slice(i, 1)
        if one.nbytes > limits.max_row_bytes:
            yield limits.row_problem()
        else:
            yield one.to_pylist()[0]


def _read_datasets(
    path: Path, split: str | None, limits: Limits
) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    if not any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
        raise InvalidInput(
            f"{path} is a directory but not a dataset saved with datasets' save_to_disk "
            "(no dataset_dict.json or state.json)"
        )
    import datasets  # heavy: only here

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise InvalidInput(f"cannot load the saved dataset in {path}: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        name = split or "train"
        if name not in loaded:
            raise InvalidInput(
                f"the dataset has no split {name!r}: it has {', '.join(sorted(loaded))} "
                "(choose one with --split)"
            )
        loaded = loaded[name]
    elif split is not None and split != "train":
        raise InvalidInput(f"the saved dataset has no splits, so --split {split} does not apply")
    table = loaded.data.table if hasattr(loaded.data, "table") else loaded.data
    # Arrow files are memory-mapped and uncompressed: their sizes are the real sizes.
    if table.num_rows > limits.max_rows:
        raise limits.rows_error()
    if table.nbytes > limits.max_total_bytes:
        raise limits.total_error(f"the dataset in {path.name} holds")
    return _table_rows(table, limits)


def _table_rows(table, limits: Limits) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    number = 0
    for record_batch in table.to_batches(max_chunksize=PARQUET_BATCH_ROWS):
        for row in _batch_rows(record_batch, limits):
            number += 1
            yield number, row


# --------------------------------------------------------------------------- formats


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row's keys point to (possibly one of REFUSED), or None."""
    refused = refused_kind(row)
    if refused:
        return refused
    if "output_1" in row and "output_2" in row:
        return "alpacafarm"
    if "a" in row and "b" in row and ("prompt" in row or "messages" in row):
        return "comparison"
    if "chosen" in row or "rejected" in row:
        if "prompt" in row:
            return "preference"
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if any(isinstance(t, str) and _HH_HUMAN in t for t in (chosen, rejected)):
            return "hh-rlhf"
        return "preference"  # implicit prompt: standard strings or conversations
    if "responses" in row:
        return "candidates"
    if "completion" in row or "response" in row:
        return "prompt-completion"
    if "messages" in row:
        messages = row["messages"]
        if (
            isinstance(messages, list)
            and messages
            and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "assistant"
        ):
            return "messages"
        return "prompts"
    if "prompt" in row:
        return "prompts"
    if "text" in row:
        return "language-modeling"
    return None


def refused_kind(row: dict[str, Any]) -> str | None:
    """Which REFUSED type a row is, judged by the columns and messages that carry meaning."""
    if row.get("label") is not None and ("completion" in row or "response" in row):
        return "unpaired-preference"
    for key in ("labels", "completions", "tools", "images", "image"):
        if row.get(key) is not None:
            return MEANING_COLUMNS[key]
    for key in ("messages", "prompt", "completion", "chosen", "rejected"):
        value = row.get(key)
        if isinstance(value, list):
            for message in value:
                if not isinstance(message, dict):
                    continue
                if message.get("role") == "tool" or any(
                    message.get(k) is not None
                    for k in ("tool_calls", "function_call", "tool_call_id")
                ):
                    return "tool-calling"
                content = message.get("content")
                if isinstance(content, list) and any(
                    isinstance(part, dict) and part.get("type") not in (None, "text")
                    for part in content
                ):
                    return "vision"
    return None


# Keys that mark a row as an attempt at a format (used to explain what is wrong with it).
FORMAT_KEYS = {
    "prompts": ("prompt", "messages"),
    "messages": ("messages",),
    "prompt-completion": ("completion", "response"),
    "preference": ("chosen", "rejected"),
    "hh-rlhf": ("chosen", "rejected"),
    "candidates": ("responses",),
    "comparison": ("a", "b"),
    "alpacafarm": ("output_1", "output_2"),
}


def looks_like(fmt: str, row: dict[str, Any]) -> bool:
    return any(key in row for key in FORMAT_KEYS[fmt])


def no_format_message(row: dict[str, Any]) -> str:
    keys = ", ".join(sorted(map(str, row))) or "none"
    return (
        f"matches no import format (keys found: {keys}); recognised: prompts (prompt or "
        "messages), messages (messages ending with an assistant turn), prompt-completion "
        "(prompt, completion), preference (prompt, chosen, rejected; or chosen/rejected "
        "with an implicit prompt), hh-rlhf (chosen, rejected transcripts), candidates "
        "(prompt, responses), comparison (prompt, a, b, choice), alpacafarm (instruction, "
        "output_1, output_2, preference); other columns can be renamed with --map"
    )


def parse_row(fmt: str, number: int, row: dict[str, Any], default_source: str | None) -> Row:
    """Check one row against `fmt` and return what it holds; raises RowProblem."""
    if fmt != "prompts":
        refused = refused_kind(row)
        if refused:  # e.g. a KTO row further down a prompt-completion file
            raise RowProblem(REFUSED[refused])
    choice: str | None = None
    if fmt == "prompts":
        key = "prompt" if "prompt" in row else "messages"
        messages, texts = _prompt(row, key), []
    elif fmt == "messages":
        conversation = _conversation(row.get("messages"), "messages")
        if conversation[-1]["role"] != "assistant":
            raise RowProblem("'messages' must end with an assistant turn")
        messages = _as_prompt(_with_system(conversation[:-1], row), "messages")
        texts = [conversation[-1]["content"]]
    elif fmt == "prompt-completion":
        messages = _prompt(row, "prompt")
        key = "completion" if "completion" in row else "response"
        texts = [_answer(row.get(key), key)]
    elif fmt == "preference":
        if "prompt" in row and _whole_conversations(row):
            # UltraFeedback-style: a plain prompt plus chosen/rejected conversations that
            # repeat it; TRL then takes the prompt from the conversations, and so do we.
            messages, texts = _implicit_pair(row.get("chosen"), row.get("rejected"))
            messages = _as_prompt(_with_system(messages, row), "chosen")
            if messages[-1]["content"].strip() != row["prompt"].strip():
                raise RowProblem(
                    "'prompt' is not the last user turn of the 'chosen' and 'rejected' "
                    "conversations"
                )
        elif "prompt" in row:
            messages = _prompt(row, "prompt")
            texts = [_answer(row.get("chosen"), "chosen"), _answer(row.get("rejected"), "rejected")]
        elif isinstance(row.get("chosen"), str) and isinstance(row.get("rejected"), str):
            messages, texts = _standard_implicit(row["chosen"], row["rejected"])
        else:
            messages, texts = _implicit_pair(row.get("chosen"), row.get("rejected"))
            messages = _as_prompt(_with_system(messages, row), "chosen")
        choice = "a"
    elif fmt == "hh-rlhf":
        messages, texts = _hh_pair(row.get("chosen"), row.get("rejected"))
        messages = _with_system(messages, row)
        choice = "a"
    elif fmt == "candidates":
        messages = _prompt(row, "prompt")
        texts = _candidates(row.get("responses"))
    elif fmt == "comparison":
        messages = _prompt(row, "prompt" if "prompt" in row else "messages")
        texts = [_answer(row.get("a"), "a"), _answer(row.get("b"), "b")]
        choice = _choice(row, "choice")
    elif fmt == "alpacafarm":
        messages = _prompt({"prompt": row.get("instruction"), "input": row.get("input")}, "prompt")
        texts = [_answer(row.get("output_1"), "output_1"), _answer(row.get("output_2"), "output_2")]
        choice = _alpaca_choice(row)
    else:
        raise InvalidInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if ROW_KIND[fmt] == "pair" and texts[0] == texts[1]:
        if fmt in ("comparison", "alpacafarm"):
            raise RowProblem("the two answers are the same text")
        raise RowProblem("chosen and rejected are the same text")
    if _BAD_CHARS.search("".join([m["content"] for m in messages] + texts)):
        for i, m in enumerate(messages, 1):
            _check_chars(m["content"], f"prompt message {i}")
        for i, t in enumerate(texts, 1):
            _check_chars(t, f"answer {i}")
    source = _optional_text(row.get("source"), "source", MAX_SOURCE_CHARS) or default_source
    category = _optional_text(row.get("category"), "category", MAX_CATEGORY_CHARS)
    return Row(
        number, ROW_KIND[fmt], messages, texts, source, category, _tags(row.get("tags")), choice
    )


def _whole_conversations(row: dict[str, Any]) -> bool:
    """A string prompt with chosen/rejected that are whole conversations (user turn first)."""
    return isinstance(row.get("prompt"), str) and all(
        isinstance(row.get(k), list)
        and len(row[k]) > 1
        and isinstance(row[k][0], dict)
        and row[k][0].get("role") in ("system", "user")
        for k in ("chosen", "rejected")
    )


def _choice(row: dict[str, Any], key: str) -> str | None:
    if key not in row:
        return None  # no label column: an unlabeled comparison task
    value = row[key]
    if value is None:
        raise RowProblem(f"'{key}' is empty")
    text = normalise_value(value).lower()
    if text not in CHOICES:
        raise RowProblem(
            f"'{key}' is {text[:40]!r}: use a, b, tie or both_bad (translate other values "
            f"with --map-values {key}:VALUE=a,...)"
        )
    return text


# AlpacaFarm / AlpacaEval: 1 = output_1 better, 2 = output_2 better; AlpacaEval writes 1.5
# (and older versions 0) for a tie. Weighted annotators give values in between.
ALPACA_PREFERENCE = {"1": "a", "2": "b", "1.5": "tie", "0": "tie"}


def _alpaca_choice(row: dict[str, Any]) -> str | None:
    if "preference" not in row:
        return None
    value = row["preference"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowProblem("'preference' is empty (no annotation)")
    text = normalise_value(value)
    if text.lower() in CHOICES:  # already translated by --map-values
        return text.lower()
    if text not in ALPACA_PREFERENCE:
        raise RowProblem(
            f"'preference' is {text[:40]!r}: AlpacaFarm uses 1 (output_1), 2 (output_2) and "
            "1.5 or 0 (a tie); round weighted preferences, or translate them with "
            "--map-values preference:VALUE=a,..."
        )
    return ALPACA_PREFERENCE[text]


def normalise_value(value: Any) -> str:
    """A cell as the text a value map matches: 1, 1.0 and "1" are all "1"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        value = value.strip()
        try:
            number = float(value)
        except ValueError:
            return value
        return str(int(number)) if number.is_integer() else value
    return str(value)


# --------------------------------------------------------------------------- column mapping

# The fields a --map can fill (what the formats above read).
CANONICAL = (
    "prompt",
    "system",
    "input",
    "messages",
    "completion",
    "response",
    "chosen",
    "rejected",
    "a",
    "b",
    "choice",
    "responses",
    "category",
    "tags",
    "source",
)


@dataclass(frozen=True)
class ColumnMap:
    """Renames a file's columns to our fields and translates values, before detection.

    ColumnMap.parse("prompt=instruction,a=output_1,b=output_2,choice=preference",
                    "choice:1=a,2=b,0=tie")
    """

    columns: tuple[tuple[str, str], ...] = ()  # (our field, the file's column)
    values: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # field -> (from, to)

    def __bool__(self) -> bool:
        return bool(self.columns or self.values)

    @classmethod
    def parse(cls, columns: str | None = None, values: str | list[str] | None = None):
        pairs: list[tuple[str, str]] = []
        for item in _items(columns, ","):
            field, sep, column = (part.strip() for part in item.partition("="))
            if not sep or not field or not column:
                raise InvalidInput(f"--map {item!r}: write FIELD=COLUMN, e.g. prompt=instruction")
            if field not in CANONICAL:
                raise InvalidInput(
                    f"--map {item!r}: {field!r} is not a field; use {', '.join(CANONICAL)}"
                )
            if any(f == field for f, _ in pairs):
                raise InvalidInput(f"--map names the field {field!r} twice")
            pairs.append((field, column))
        tables: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        for group in [
            g
            for v in ([values] if isinstance(values, str) else values or [])
            for g in _items(v, ";")
        ]:
            field, sep, rest = (part.strip() for part in group.partition(":"))
            if not sep or not field or not rest:
                raise InvalidInput(
                    f"--map-values {group!r}: write FIELD:FROM=TO,FROM=TO, e.g. choice:1=a,2=b"
                )
            table = []
            for item in _items(rest, ","):
                old, eq, new = (part.strip() for part in item.partition("="))
                if not eq or not old or not new:
                    raise InvalidInput(f"--map-values {field}: {item!r} is not FROM=TO")
                if field == "choice" and new.lower() not in CHOICES:
                    raise InvalidInput(
                        f"--map-values choice: {new!r} is not a choice; use a, b, tie or both_bad"
                    )
                table.append((normalise_value(old), new))
            tables.append((field, tuple(table)))
        return cls(tuple(pairs), tuple(tables))

    def missing(self, row: dict[str, Any]) -> list[str]:
        return [column for _, column in self.columns if column not in row]

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.columns:
            missing = self.missing(row)
            if missing:
                raise RowProblem(f"no column {missing[0]!r} (named by --map)")
            sources = {column for _, column in self.columns}
            out = {k: v for k, v in row.items() if k not in sources}
            for field, column in self.columns:
                out[field] = row[column]
        else:
            out = dict(row)
        for field, table in self.values:
            value = out.get(field)
            if value is not None:
                key = normalise_value(value)
                for old, new in table:
                    if key == old:
                        out[field] = new
                        break
        return out


def _items(text: str | None, sep: str) -> list[str]:
    return [part.strip() for part in (text or "").split(sep) if part.strip()]


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _text(value: Any, what: str) -> str:
    if value is None:
        raise RowProblem(f"missing {what}")
    if not isinstance(value, str):
        raise RowProblem(f"{what} must be a string, got {_type_name(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise RowProblem(
            f"{what} is too long: {len(value):,} characters (limit {MAX_TEXT_CHARS:,})"
        )
    if not value.strip():
        raise RowProblem(f"{what} is empty")
    return value  # parse_row checks the characters of all texts of a row at once


# NUL and lone surrogates (from "\ud800"-style JSON escapes) cannot be stored as UTF-8 text.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _check_chars(value: str, what: str) -> None:
    bad = _BAD_CHARS.search(value)
    if bad:
        kind = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (bad \\u escape)"
        raise RowProblem(f"{what} contains {kind}")


def _conversation(value: Any, key: str) -> list[dict[str, str]]:
    """A list of {role, content} with known roles and non-empty text."""
    if value is None:
        raise RowProblem(f"missing '{key}'")
    if not isinstance(value, list):
        raise RowProblem(f"'{key}' must be a list of messages, got {_type_name(value)}")
    if not value:
        raise RowProblem(f"'{key}' is empty")
    if len(value) > MAX_MESSAGES:
        raise RowProblem(f"'{key}' has {len(value)} messages (limit {MAX_MESSAGES})")
    out = []
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise RowProblem(f"'{key}' message {i} must be an object, got {_type_name(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise RowProblem(
                f"'{key}' message {i} has role {role!r}: use system, user or assistant"
            )
        content = _text(message.get("content"), f"'{key}' message {i} content")
        out.append({"role": role, "content": content})
    for i, message in enumerate(out[1:], 2):
        if message["role"] == "system":
            raise RowProblem(f"'{key}' message {i}: a system message may only come first")
    return out


def _as_prompt(messages: list[dict[str, str]], key: str) -> list[dict[str, str]]:
    """A conversation that asks for an answer: [system], user, ..., user."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise RowProblem(f"'{key}' has no user turn")
    if turns[0]["role"] != "user":
        raise RowProblem(f"'{key}' must start with a user turn (after an optional system one)")
    if turns[-1]["role"] != "user":
        raise RowProblem(f"the prompt in '{key}' must end with a user turn")
    return messages


def _prompt(row: dict[str, Any], key: str) -> list[dict[str, str]]:
    """The prompt in row[key], with the row's `input` (appended) and `system` (first)."""
    value = row.get(key)
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowProblem(f"'input' must be a string, got {_type_name(extra)}")
    extra = extra if extra and extra.strip() else None
    if isinstance(value, str) or value is None:
        if extra is not None and isinstance(value, str):
            value = value + "\n\n" + extra  # AlpacaFarm's instruction and its input
        messages = [{"role": "user", "content": _text(value, f"'{key}'")}]
    elif not isinstance(value, list):
        raise RowProblem(f"'{key}' must be a string or a list of messages, got {_type_name(value)}")
    else:
        if extra is not None:
            raise RowProblem(f"an 'input' column cannot be added to a conversation in '{key}'")
        messages = _as_prompt(_conversation(value, key), key)
    return _as_prompt(_with_system(messages, row), key)


def _with_system(messages: list[dict[str, str]], row: dict[str, Any]) -> list[dict[str, str]]:
    """A `system` column becomes the first message (it used to be dropped without a word)."""
    system = row.get("system")
    if system is None:
        return messages
    if not isinstance(system, str):
        raise RowProblem(f"'system' must be a string, got {_type_name(system)}")
    if not system.strip():
        return messages
    if messages and messages[0]["role"] == "system":
        raise RowProblem("the row has both a 'system' column and a system message")
    return [{"role": "system", "content": _text(system, "'system'")}, *messages]


def _standard_implicit(chosen: str, rejected: str) -> tuple[list[dict[str, str]], list[str]]:
    """TRL's standard implicit prompt: the text both strings start with, split as TRL's
    extract_prompt does (a space before the split goes with the answers)."""
    c, r = _text(chosen, "'chosen'"), _text(rejected, "'rejected'")
    if c == r:
        raise RowProblem("chosen and rejected are the same text")
    idx = len(os.path.commonprefix([c, r]))
    if idx == min(len(c), len(r)):
        raise RowProblem(
            "one of 'chosen' and 'rejected' is the start of the other, so one answer is empty"
        )
    if idx > 0 and c[idx - 1] == " ":
        idx -= 1
    if not c[:idx].strip():
        raise RowProblem(
            "'chosen' and 'rejected' share no opening text, so there is no implicit prompt to "
            "split off: add a 'prompt' column"
        )
    return (
        [{"role": "user", "content": c[:idx]}],
        [_text(c[idx:], "'chosen' after the shared prompt"),
         _text(r[idx:], "'rejected' after the shared prompt")],
    )  # fmt: skip


def _answer(value: Any, key: str) -> str:
    """An answer: a string, or (conversational) a list holding one assistant message."""
    if isinstance(value, list):
        messages = _conversation(value, key)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise RowProblem(f"'{key}' must be one assistant message")
        return messages[0]["content"]
    return _text(value, f"'{key}'")


def _implicit_pair(chosen: Any, rejected: Any) -> tuple[list[dict[str, str]], list[str]]:
    """TRL's implicit prompt: two whole conversations that differ only in the last turn."""
    c = _conversation(chosen, "chosen")
    r = _conversation(rejected, "rejected")
    if c[-1]["role"] != "assistant" or r[-1]["role"] != "assistant":
        raise RowProblem("'chosen' and 'rejected' must each end with an assistant turn")
    if c[:-1] != r[:-1]:
        raise RowProblem("'chosen' and 'rejected' differ before the final assistant turn")
    return _as_prompt(c[:-1], "chosen"), [c[-1]["content"], r[-1]["content"]]


_HH_ASSISTANT = "\n\nAssistant:"
_HH_HUMAN = "\n\nHuman:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_pair(chosen: Any, rejected: Any) -> tuple[list[dict[str, str]], list[str]]:
    """Anthropic HH-RLHF: the prompt is the shared text before the last "Assistant:"."""
    c = _hh_text(chosen, "chosen")
    r = _hh_text(rejected, "rejected")
    ci, ri = c.rfind(_HH_ASSISTANT), r.rfind(_HH_ASSISTANT)
    if ci < 0 or ri < 0:
        which = "chosen" if ci < 0 else "rejected"
        raise RowProblem(f"'{which}' has no \"\\n\\nAssistant:\" turn")
    if c[:ci] != r[:ri]:
        raise RowProblem("transcripts differ before the last assistant turn")
    messages = _hh_turns(c[:ci])
    answers = []
    for text, name in ((c, "chosen"), (r, "rejected")):
        start = (ci if name == "chosen" else ri) + len(_HH_ASSISTANT)
        answer = text[start:].strip()
        if not answer:
            raise RowProblem(f"the last assistant answer in '{name}' is empty")
        if "\n\nHuman:" in answer:
            raise RowProblem(f"'{name}' ends with a Human turn, not an assistant answer")
        answers.append(_text(answer, f"the last assistant answer in '{name}'"))
    return messages, answers


def _hh_text(value: Any, key: str) -> str:
    if value is None:
        raise RowProblem(f"missing '{key}'")
    if not isinstance(value, str):
        raise RowProblem(f"'{key}' must be a transcript string, got {_type_name(value)}")
    if len(value) > MAX_TEXT_CHARS * 4:
        raise RowProblem(
            f"'{key}' is too long: {len(value):,} characters (limit {MAX_TEXT_CHARS * 4:,})"
        )
    return value


def _hh_turns(prefix: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(prefix)
    if parts[0].strip():
        raise RowProblem('the transcript must start with "\\n\\nHuman:"')
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append(
            {"role": "user" if role == "Human" else "assistant", "content": content.strip()}
        )
    if not messages:
        raise RowProblem('the transcript has no "\\n\\nHuman:" turn before the answer')
    if len(messages) > MAX_MESSAGES:
        raise RowProblem(f"the transcript has {len(messages)} turns (limit {MAX_MESSAGES})")
    for i, message in enumerate(messages, 1):
        _text(message["content"], f"transcript turn {i}")
    if messages[0]["role"] != "user":
        raise RowProblem('the transcript must start with "\\n\\nHuman:"')
    if messages[-1]["role"] != "user":
        raise RowProblem("the turn before the last assistant answer is not a Human turn")
    return messages


def _candidates(value: Any) -> list[str]:
    if value is None:
        raise RowProblem("missing 'responses'")
    if not isinstance(value, list):
        raise RowProblem(f"'responses' must be a list of strings, got {_type_name(value)}")
    if len(value) < 2:
        raise RowProblem(f"'responses' needs at least 2 answers, got {len(value)}")
    if len(value) > 100:
        raise RowProblem(f"'responses' has {len(value)} answers (limit 100)")
    texts = [_text(v, f"'responses' item {i}") for i, v in enumerate(value, 1)]
    if len(set(texts)) != len(texts):
        raise RowProblem("'responses' holds the same answer twice")
    return texts


def _optional_text(value: Any, key: str, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowProblem(f"'{key}' must be a string, got {_type_name(value)}")
    value = value.strip()
    _check_chars(value, f"'{key}'")
    if len(value) > limit:
        raise RowProblem(f"'{key}' is too long: {len(value):,} characters (limit {limit})")
    return value or None


def _tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RowProblem("'tags' must be a list of strings")
    tags = [t.strip() for t in value if t.strip()]
    for tag in tags:
        _check_chars(tag, "'tags'")
    if len(tags) > MAX_TAGS or any(len(t) > MAX_CATEGORY_CHARS for t in tags):
        raise RowProblem(f"'tags': at most {MAX_TAGS} tags of {MAX_CATEGORY_CHARS} characters")
    return tags or None
