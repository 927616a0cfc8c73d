"""Bounds on what a person may type or pass: numbers, names, guideline text.

Kept in the service layer so that the CLI and the UI refuse the same inputs with the same
sentence. Numbers are checked before they reach SQL or `timedelta`: an unbounded lease of
10**12 seconds was accepted once and then broke every later claim with OverflowError.
"""

from __future__ import annotations

import math
import os
import stat
import unicodedata
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput

LEASE_SECONDS = (10, 7 * 24 * 3600)  # ten seconds to a week
OVERLAP = (1, 100)
RANK_K = (2, 20)  # the most answers the ranking page lays out
GUIDELINES_MAX_BYTES = 256 * 1024
NAME_MAX_CHARS = 128


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """`value` as an int in [low, high], or InvalidInput naming `name` and the range."""
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}")
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}") from None
    if not low <= number <= high:
        raise InvalidInput(f"{name} must be from {low} to {high}, not {number}")
    return number


def fraction(value: Any, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """`value` as a finite float in [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{name} must be a number from {low:g} to {high:g}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not low <= number <= high:
        raise InvalidInput(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return number


# Characters that change how text around them is shown without being visible themselves:
# bidi embeddings/overrides/isolates and marks (an "exe.txt" that reads "txt.exe"), zero-width
# joiners and spaces, and every other Unicode format (Cf) or control (Cc) character.
BIDI_CONTROLS = frozenset(
    [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
    + ["\u200e", "\u200f", "\u061c"]
)


def hidden_characters(text: str) -> list[str]:
    """The invisible or direction-changing characters in `text`, as U+XXXX names."""
    found = [
        ch
        for ch in text
        if ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cf", "Cc", "Cs", "Co", "Zl", "Zp")
    ]
    return [f"U+{ord(ch):04X}" for ch in dict.fromkeys(found)]


def check_name(value: Any, what: str, *, max_chars: int = NAME_MAX_CHARS) -> str:
    """A user-visible name (project, checkpoint, model): stripped, 1..max_chars characters,
    with no control, format (bidi, zero-width), private-use or line-separator characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} name must be text")
    name = unicodedata.normalize("NFC", value).strip()
    if not name or len(name) > max_chars:
        raise InvalidInput(f"{what} name must be 1-{max_chars} characters")
    hidden = hidden_characters(name)
    if hidden:
        raise InvalidInput(
            f"{what} name contains invisible or direction-changing characters "
            f"({', '.join(hidden[:5])}): use visible characters only"
        )
    return name


def check_guidelines(text: Any) -> str:
    """Guidelines typed or read from a file: text of at most GUIDELINES_MAX_BYTES in UTF-8."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidInput("guidelines must be text")
    if len(text) > GUIDELINES_MAX_BYTES or len(text.encode("utf-8")) > GUIDELINES_MAX_BYTES:
        raise InvalidInput(
            f"guidelines are longer than {GUIDELINES_MAX_BYTES // 1024} kB: shorten them"
        )
    return text


def read_text_file(path: str | os.PathLike[str], what: str, *, max_bytes: int) -> str:
    """A regular UTF-8 file of at most max_bytes, read without trusting its reported size
    (a FIFO or /dev/zero would be read until the process is killed)."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InvalidInput(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise InvalidInput(f"{what} {path} is {kind}: give a text file")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"{what} {path} is larger than {max_bytes // 1024} kB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
