"""Reading import files and turning their rows into prompts, answers and pairs.

Two halves, both free of database code:

1. Readers: JSONL (also a .json file holding one array), CSV, Parquet and a directory saved
   with `datasets.Dataset.save_to_disk`. Each yields `(number, row)` where `row` is a dict or a
   `RowProblem` (malformed JSON, bytes that are not UTF-8). Numbers are 1-based file lines for
   JSONL and CSV, row numbers for Parquet and datasets (`unit` says which).
2. Row parsers, one per format, that check a row and return a `Row`: the prompt as a list of
   {"role", "content"} plus the texts that come with it (a demonstration, a chosen/rejected
   pair, k candidates). A bad row raises `RowProblem` with a message for a person.

Limits: a message or answer holds at most MAX_TEXT_CHARS characters and a conversation at
most MAX_MESSAGES messages; longer input is a row error, never a crash.
"""

from __future__ import annotations

import csv
import io
import json
import re
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

FORMATS = ("prompts", "messages", "prompt-completion", "preference", "hh-rlhf", "candidates")
ROLES = ("system", "user", "assistant")

# What each format turns a row into.
ROW_KIND = {
    "prompts": "prompt",
    "messages": "sft",
    "prompt-completion": "sft",
    "preference": "pair",
    "hh-rlhf": "pair",
    "candidates": "candidates",
}


class RowProblem(Exception):
    """One row cannot be imported; the message says why."""


@dataclass(slots=True)
class Row:
    """One parsed row. `texts`: [demonstration] | [chosen, rejected] | candidates | []."""

    number: int
    kind: str
    messages: list[dict[str, str]]
    texts: list[str]
    source: str | None = None
    category: str | None = None
    tags: list[str] | None = None


# --------------------------------------------------------------------------- file readers


@dataclass
class Source:
    """An opened import file: its type, how rows are numbered, and the rows."""

    file_type: str  # jsonl | json | csv | parquet | datasets
    unit: str  # "line" or "row"
    rows: Iterator[tuple[int, dict[str, Any] | RowProblem]]


def open_source(path: str | Path, *, split: str | None = None) -> Source:
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    if path.is_dir():
        return Source("datasets", "row", _read_datasets(path, split))
    if split is not None:
        raise InvalidInput("--split applies to a saved datasets directory only")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return Source("jsonl", "line", _read_jsonl(_read_bytes(path)))
    if suffix == ".csv":
        return Source("csv", "line", _read_csv(_read_bytes(path)))
    if suffix in (".parquet", ".pq"):
        return Source("parquet", "row", _read_parquet(path))
    data = _read_bytes(path)
    if data[:4] == b"PAR1":
        return Source("parquet", "row", _read_parquet(path))
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"[":
        return Source("json", "row", _read_json_array(data))
    if head == b"{":
        return Source("jsonl", "line", _read_jsonl(data))
    if not head:
        raise InvalidInput(f"{path.name}: no rows (the file is empty)")
    raise InvalidInput(
        f"cannot tell the type of {path.name}: use JSON lines (.jsonl), CSV (.csv), "
        "Parquet (.parquet) or a directory saved with datasets' save_to_disk"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_jsonl(data: bytes) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    loads = json.loads
    for number, raw in enumerate(data.split(b"\n"), 1):
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


def _read_json_array(data: bytes) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    try:
        values = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InvalidInput("the JSON file is not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON file: {exc}") from None
    if not isinstance(values, list):
        raise InvalidInput("a .json file must hold one array of objects (or use JSON lines)")
    for number, value in enumerate(values, 1):
        if isinstance(value, dict):
            yield number, value
        else:
            yield number, RowProblem(f"expected a JSON object, got {_type_name(value)}")


# CSV cells are text; these columns may carry JSON (a list of messages, of answers, of tags).
_JSON_LIST_COLUMNS = ("messages", "responses", "tags")
_MAYBE_CONVERSATION_COLUMNS = ("prompt", "completion", "chosen", "rejected")


def _read_csv(data: bytes) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    try:
        text = data.decode("utf-8-sig")
        checked = True
    except UnicodeDecodeError:
        # Decode what we can; rows holding undecodable bytes are reported by line below.
        text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
        checked = False
    if csv.field_size_limit() < 4 * MAX_TEXT_CHARS:
        csv.field_size_limit(4 * MAX_TEXT_CHARS)  # longer cells are reported by the row check
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    last_line = 0
    while True:
        start = last_line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num or start, RowProblem(f"malformed CSV: {exc}")
            return
        last_line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            if not checked and any(_has_surrogates(c) for c in header):
                raise InvalidInput(f"line {start}: the CSV header is not UTF-8 text")
            continue
        if not checked and any(_has_surrogates(c) for c in record):
            yield start, RowProblem("not UTF-8 text")
            continue
        if len(record) > len(header):
            yield (
                start,
                RowProblem(f"{len(record)} cells but the header names {len(header)} columns"),
            )
            continue
        row: dict[str, Any] = {}  # every column of the header; an empty cell is None
        try:
            for key, cell in zip(header, record, strict=False):
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


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InvalidInput(f"cannot read Parquet file {path.name}: {exc}") from None
    return _table_rows(table)


def _read_datasets(
    path: Path, split: str | None
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
    return _table_rows(loaded.data.table if hasattr(loaded.data, "table") else loaded.data)


def _table_rows(table) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    yield from enumerate(table.to_pylist(), 1)


# --------------------------------------------------------------------------- formats


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row's keys point to, or None."""
    if "chosen" in row and "rejected" in row:
        if "prompt" in row:
            return "preference"
        return "hh-rlhf" if isinstance(row["chosen"], str) else "preference"
    if "prompt" in row and "responses" in row:
        return "candidates"
    if "prompt" in row and "completion" in row:
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
    return None


# Keys that mark a row as an attempt at a format (used to explain what is wrong with it).
FORMAT_KEYS = {
    "prompts": ("prompt", "messages"),
    "messages": ("messages",),
    "prompt-completion": ("completion",),
    "preference": ("chosen", "rejected"),
    "hh-rlhf": ("chosen", "rejected"),
    "candidates": ("responses",),
}


def looks_like(fmt: str, row: dict[str, Any]) -> bool:
    return any(key in row for key in FORMAT_KEYS[fmt])


def no_format_message(row: dict[str, Any]) -> str:
    keys = ", ".join(sorted(map(str, row))) or "none"
    return (
        f"matches no import format (keys found: {keys}); recognised: prompts (prompt or "
        "messages), messages (messages ending with an assistant turn), prompt-completion "
        "(prompt, completion), preference (prompt, chosen, rejected; or chosen/rejected "
        "conversations), hh-rlhf (chosen, rejected transcripts), candidates (prompt, responses)"
    )


def parse_row(fmt: str, number: int, row: dict[str, Any], default_source: str | None) -> Row:
    """Check one row against `fmt` and return what it holds; raises RowProblem."""
    if fmt == "prompts":
        key = "prompt" if "prompt" in row else "messages"
        messages, texts = _prompt(row.get(key), key), []
    elif fmt == "messages":
        conversation = _conversation(row.get("messages"), "messages")
        if conversation[-1]["role"] != "assistant":
            raise RowProblem("'messages' must end with an assistant turn")
        messages = _as_prompt(conversation[:-1], "messages")
        texts = [conversation[-1]["content"]]
    elif fmt == "prompt-completion":
        messages = _prompt(row.get("prompt"), "prompt")
        texts = [_answer(row.get("completion"), "completion")]
    elif fmt == "preference":
        if "prompt" in row:
            messages = _prompt(row.get("prompt"), "prompt")
            texts = [_answer(row.get("chosen"), "chosen"), _answer(row.get("rejected"), "rejected")]
        else:
            messages, texts = _implicit_pair(row.get("chosen"), row.get("rejected"))
    elif fmt == "hh-rlhf":
        messages, texts = _hh_pair(row.get("chosen"), row.get("rejected"))
    elif fmt == "candidates":
        messages = _prompt(row.get("prompt"), "prompt")
        texts = _candidates(row.get("responses"))
    else:
        raise InvalidInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if ROW_KIND[fmt] == "pair" and texts[0] == texts[1]:
        raise RowProblem("chosen and rejected are the same text")
    if _BAD_CHARS.search("".join([m["content"] for m in messages] + texts)):
        for i, m in enumerate(messages, 1):
            _check_chars(m["content"], f"prompt message {i}")
        for i, t in enumerate(texts, 1):
            _check_chars(t, f"answer {i}")
    source = _optional_text(row.get("source"), "source", MAX_SOURCE_CHARS) or default_source
    category = _optional_text(row.get("category"), "category", MAX_CATEGORY_CHARS)
    return Row(number, ROW_KIND[fmt], messages, texts, source, category, _tags(row.get("tags")))


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


def _prompt(value: Any, key: str) -> list[dict[str, str]]:
    if isinstance(value, str) or value is None:
        return [{"role": "user", "content": _text(value, f"'{key}'")}]
    if not isinstance(value, list):
        raise RowProblem(f"'{key}' must be a string or a list of messages, got {_type_name(value)}")
    return _as_prompt(_conversation(value, key), key)


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
