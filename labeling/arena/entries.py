"""How a checkpoint's arena entry is going, recorded on the run that made the checkpoint.

    with Session.begin() as s:    # after each batch of answers (training/arena_entry.py)
        record_entry(s, checkpoint_id=7, project="demo-arena", answered=8, total=20,
                     status="answering", seconds=72.0)
    with Session.begin() as s:    # the runs page: "arena entry demo-arena: 8/20 prompts"
        entry_progress(s, run_id)

The automatic entry runs after its training run succeeded, so the run's summary metrics
(TrainingRun.metrics, a JSON column) are final by then; the entry lives beside them under
metrics["arena_entry"][project] = {"answered", "total", "status" (answering, entered,
failed), "seconds", "cap", "tasks_created", "error", "updated_at"}: no migration, and
`rlhf checkpoints show` lists it with the run's other metrics. A checkpoint no run made
(`rlhf checkpoints add`) has nowhere to record it: its entry reports on stderr only.

Service functions take the session first and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.errors import InvalidInput
from labeling.models import Checkpoint, TrainingRun, utcnow

ENTRY_KEY = "arena_entry"
STATUSES = ("answering", "entered", "failed")
FIELDS = ("answered", "total", "status", "seconds", "cap", "tasks_created", "error")


def record_entry(
    session: Session, *, checkpoint_id: int, project: str, **values: Any
) -> int | None:
    """Merge `values` (FIELDS) into the entry of `project` on the checkpoint's run; returns
    the run's id, or None when the checkpoint has no run (nothing is recorded then)."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown arena entry fields: {', '.join(sorted(unknown))}")
    if "status" in values and values["status"] not in STATUSES:
        raise InvalidInput(f"arena entry status must be one of {', '.join(STATUSES)}")
    run_id = session.scalar(select(Checkpoint.run_id).where(Checkpoint.id == int(checkpoint_id)))
    if run_id is None:
        return None
    # FOR UPDATE on PostgreSQL: two arenas entering the same checkpoint keep both entries.
    run = session.get(TrainingRun, run_id, with_for_update=True)
    metrics = dict(run.metrics or {})
    entries = dict(metrics.get(ENTRY_KEY) or {})
    entry = {**dict(entries.get(project) or {}), **values, "updated_at": utcnow().isoformat()}
    if isinstance(entry.get("seconds"), float):
        entry["seconds"] = round(entry["seconds"], 1)
    entries[project] = entry
    # New dicts all the way down, so that SQLAlchemy sees the JSON column change.
    run.metrics = {**metrics, ENTRY_KEY: entries}
    session.flush()
    return run.id


def entry_progress(session: Session, run_id: int) -> list[dict[str, Any]]:
    """The run's arena entries, one dict per arena (its "project" added), by project name."""
    metrics = session.scalar(select(TrainingRun.metrics).where(TrainingRun.id == int(run_id)))
    entries = (metrics or {}).get(ENTRY_KEY) or {}
    if not isinstance(entries, dict):
        return []
    return [
        {"project": name, **dict(entry)}
        for name, entry in sorted(entries.items())
        if isinstance(entry, dict)
    ]
