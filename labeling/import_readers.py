"""Reading import files, bounded: JSONL (also a .json file holding one array), CSV, Parquet
and a directory saved with `datasets.Dataset.save_to_disk`.

`open_source` returns a `Source` whose rows are `(number, row)`, `row` a dict or a `RowProblem`
(malformed JSON, bytes that are not UTF-8, a cell over a cap). Numbers are 1-based file lines
for JSONL and CSV, row numbers for Parquet and datasets (`unit` says which). Every reader
streams, batch by batch, under `Limits` (rows, characters a cell, bytes a row, decompressed
bytes in all): a Parquet file's declared sizes are checked before anything is decoded and its
real decoded size is counted before any row is kept, so a small file that expands to gigabytes
is refused while memory stays flat. What a row means is labeling/import_formats.py's business.
"""

from __future__ import annotations

import csv
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput

MB = 1024 * 1024


class RowProblem(Exception):
    """One row cannot be imported; the message says why."""


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
