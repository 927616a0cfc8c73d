"""Reading import files and turning their rows into prompts, answers and pairs.

Two halves, both free of database code:

1. Readers (labeling/import_readers.py, re-exported here): JSONL (also a .json file holding one array), CSV, Parquet and a directory saved
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

Gold answers: any row may carry an `answer` column, the prompt's gold final answer that a
verifier checks completions against (verifiable rewards): text or a number, at most
MAX_ANSWER_CHARS characters; an empty cell means none. It belongs to the prompt, not to a
response, so `prompt`/`answer` rows are prompts with answers (`messages` + `answer` too).

Imported labels (preference pairs: preference, hh-rlhf, comparison, alpacafarm): a row may say
who gave its choice and how, so that labels from another tool can be audited here (LABEL_FIELDS):
`labeler` (an account name: 1-64 letters, digits, '_', '.', '@', '+' or '-'; a number is taken
as its text; null means none, an empty text is an error), `shown_left` (which answer that
labeler saw on the left: chosen | rejected, or for comparison rows a | b, also chosen |
rejected where the row has a decided choice), `strength` (1-3, only for a decided choice a/b),
`seconds` (time spent, 0 or more) and `created_at` (ISO 8601 text or a timestamp; without an
offset it is UTC). Empty cells mean none (except `labeler`). They describe a label, so a pair
without a choice (a comparison row without one) cannot carry them, nor can demonstrations or
candidates; `prompts` rows take the prompt alone and leave them out.

Size: about 850 lines kept in one module on purpose: the eight row formats, their detection
and ColumnMap share the same text checks (_text, _conversation, _check_chars) and tables
(FORMATS, ROW_KIND, CANONICAL); splitting them would scatter one concept.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from labeling.errors import InvalidInput
from labeling.import_readers import (
    DEFAULT_LIMITS,
    MB,
    Limits,
    RowProblem,
    Source,
    _type_name,
    open_source,
)
from labeling.kinds import ACCOUNT_NAME_RE as NAME_RE

__all__ = ["DEFAULT_LIMITS", "MB", "Limits", "RowProblem", "Source", "open_source"]

MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 500
MAX_SOURCE_CHARS = 200
MAX_CATEGORY_CHARS = 100
MAX_TAGS = 50
MAX_ANSWER_CHARS = 10_000

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
# Columns that describe who labeled a pair and how (see the module docstring).
LABEL_FIELDS = ("labeler", "shown_left", "strength", "seconds", "created_at")
MAX_LABELER_CHARS = 64  # users.name
MAX_SECONDS = 2_000_000  # time_spent_ms is a 4-byte integer: about 24 days in ms


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
    answer: str | None = None  # the prompt's gold final answer
    # An imported label's details (LABEL_FIELDS), all None for a row without them:
    labeler: str | None = None  # the account name
    shown_left: int | None = None  # index into `texts` of the answer shown on the left
    strength: int | None = None  # 1..3, a decided choice only
    ms: int | None = None  # time spent, milliseconds
    created_at: datetime | None = None  # aware, UTC
    has_label_details: bool = False  # any of the five above is set


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
    parsed = Row(
        number, ROW_KIND[fmt], messages, texts, source, category, _tags(row.get("tags")), choice,
        gold_answer(row.get("answer")),
    )  # fmt: skip
    if fmt != "prompts" and not _LABEL_FIELD_SET.isdisjoint(row):
        _label_details(parsed, fmt, row)
    return parsed


_LABEL_FIELD_SET = frozenset(LABEL_FIELDS)


def _label_details(parsed: Row, fmt: str, row: dict[str, Any]) -> None:
    """Fill in the row's LABEL_FIELDS (some are present and not null); raises RowProblem."""
    given = [k for k in LABEL_FIELDS if row.get(k) is not None]
    if not given:  # the columns are there, all null (e.g. CSV cells left empty)
        return
    if parsed.kind != "pair":
        raise RowProblem(
            f"{_quoted(given)} describe{'s' if len(given) == 1 else ''} a preference label; "
            f"{fmt} rows cannot carry {'it' if len(given) == 1 else 'them'} (drop the column)"
        )
    choice = parsed.choice
    if choice is None:
        raise RowProblem(
            f"{_quoted(given)} describe{'s' if len(given) == 1 else ''} a label, but the row "
            "has no 'choice'"
        )
    parsed.labeler = _labeler(row.get("labeler"))
    parsed.shown_left = _shown_left(row.get("shown_left"), fmt, choice)
    parsed.strength = _strength(row.get("strength"), choice)
    parsed.ms = _milliseconds(row.get("seconds"))
    parsed.created_at = _created_at(row.get("created_at"))
    parsed.has_label_details = not (
        parsed.labeler is None
        and parsed.shown_left is None
        and parsed.strength is None
        and parsed.ms is None
        and parsed.created_at is None
    )


def _quoted(keys: list[str]) -> str:
    return ", ".join(f"'{k}'" for k in keys)


def _blank(value: Any) -> bool:
    """An empty cell: null, NaN (pandas' missing number), NaT, or text of blanks."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(value != value)  # NaN and NaT are the values unequal to themselves
    except Exception:  # noqa: BLE001 - e.g. an array-like cell: not blank
        return False


def _labeler(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # annotator ids are often numbers
    if not isinstance(value, str):
        raise RowProblem(f"'labeler' must be a name (text), got {_type_name(value)}")
    name = value.strip()
    if not name:
        raise RowProblem("'labeler' is empty: give the labeler's name, or leave the cell null")
    if len(name) > MAX_LABELER_CHARS:
        raise RowProblem(
            f"'labeler' is too long: {len(name):,} characters (limit {MAX_LABELER_CHARS})"
        )
    if not NAME_RE.match(name):
        raise RowProblem(
            f"'labeler' {name[:40]!r} is not an account name: 1-{MAX_LABELER_CHARS} letters, "
            "digits, '_', '.', '@', '+' or '-', starting with a letter or digit (rename it "
            "with --map-values labeler:OLD=NEW)"
        )
    return name


# shown_left: which of the row's texts (0 = chosen / a, 1 = rejected / b) was on the left.
_SIDES = {
    "preference": {"chosen": 0, "rejected": 1},
    "hh-rlhf": {"chosen": 0, "rejected": 1},
    "comparison": {"a": 0, "b": 1},
    "alpacafarm": {"a": 0, "b": 1, "output_1": 0, "output_2": 1},
}


def _shown_left(value: Any, fmt: str, choice: str) -> int | None:
    if _blank(value):
        return None
    sides = _SIDES[fmt]
    text = value.strip().lower() if isinstance(value, str) else None
    if text in sides:
        return sides[text]
    if text in ("chosen", "rejected") and choice in ("a", "b"):
        winner = 0 if choice == "a" else 1
        return winner if text == "chosen" else 1 - winner
    names = list(sides) + (["chosen", "rejected"] if fmt in ("comparison", "alpacafarm") else [])
    shown = repr(value.strip()[:40]) if isinstance(value, str) else _type_name(value)
    hint = (
        " (chosen and rejected need a choice of a or b)" if text in ("chosen", "rejected") else ""
    )
    raise RowProblem(
        f"'shown_left' is {shown}: use {', '.join(names[:-1])} or {names[-1]} (the answer that "
        f"labeler saw on the left){hint}"
    )


def _strength(value: Any, choice: str) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowProblem(f"'strength' must be 1, 2 or 3, got {_type_name(value)}")
    text = normalise_value(value)
    if text not in ("1", "2", "3"):
        raise RowProblem(
            f"'strength' is {text[:40]!r}: use 1 (slightly better), 2 (clearly) or 3 (much better)"
        )
    if choice not in ("a", "b"):
        raise RowProblem(
            f"'strength' applies to a decided choice (a or b), not to {choice}: leave it empty"
        )
    return int(text)


def _milliseconds(value: Any) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowProblem(f"'seconds' must be a number, got {_type_name(value)}")
    try:
        seconds = float(value)
    except ValueError:
        raise RowProblem(f"'seconds' is {value.strip()[:40]!r}: give a number of seconds") from None
    if not math.isfinite(seconds):
        raise RowProblem("'seconds' is not a finite number")
    if seconds < 0:
        raise RowProblem(f"'seconds' is {normalise_value(value)}: it must be 0 or more")
    if seconds > MAX_SECONDS:
        raise RowProblem(
            f"'seconds' is {normalise_value(value)}: at most {MAX_SECONDS:,} seconds a label"
        )
    return round(seconds * 1000)


def _created_at(value: Any) -> datetime | None:
    if _blank(value):
        return None
    if isinstance(value, datetime):  # Parquet timestamps (pandas' Timestamp is one too)
        moment = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RowProblem(
                f"'created_at' is {text[:40]!r}: use an ISO 8601 time such as "
                "2024-05-01T12:30:00Z (without an offset it is UTC)"
            ) from None
    else:
        raise RowProblem(
            f"'created_at' must be an ISO 8601 time (text) or a timestamp, got {_type_name(value)}"
        )
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise RowProblem(f"'created_at' {str(value)[:40]!r} is out of range") from None


def gold_answer(value: Any, what: str = "'answer'") -> str | None:
    """A gold final answer as stored: stripped text (a number as normalise_value writes it:
    42, 0.75), None for an empty cell; anything else is a RowProblem."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowProblem(f"{what} must be text or a number, got {_type_name(value)}")
    if isinstance(value, float) and math.isinf(value):
        raise RowProblem(f"{what} is not a finite number")
    text = value.strip() if isinstance(value, str) else normalise_value(value)
    if len(text) > MAX_ANSWER_CHARS:
        raise RowProblem(
            f"{what} is too long: {len(text):,} characters (limit {MAX_ANSWER_CHARS:,})"
        )
    _check_chars(text, what)
    return text or None


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
    "answer",
    *LABEL_FIELDS,
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
