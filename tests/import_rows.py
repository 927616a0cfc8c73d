"""Helpers the import tests share: rows to write, and what the tables hold."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from labeling.models import Demonstration, Preference, Prompt, Response, Task

TABLES = (Prompt, Response, Task, Preference, Demonstration)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs(n: int, start: int = 0) -> list[dict]:
    return [
        {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}
        for i in range(start, start + n)
    ]


def counts(Session, tables=TABLES) -> dict[str, int]:  # noqa: N803
    """Rows per table: compared before and after an import that must change nothing."""
    with Session() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in tables}
