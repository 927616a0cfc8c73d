"""Projects: what is labeled, how many labels each item wants, and for how long a lease lasts."""

from __future__ import annotations

import os
import re
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labeling import bounds
from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Project,
    ProjectKind,
    Task,
    TaskStatus,
    utcnow,
)

EDITABLE = {
    "guidelines", "overlap", "lease_seconds", "gold_rate", "heldout_fraction", "rank_k",
    "answer_pattern",
}  # fmt: skip
MAX_ANSWER_PATTERN_CHARS = 500
REQUIRED = {"overlap", "lease_seconds", "gold_rate", "heldout_fraction"}  # rank_k None = any


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    """The settings in `values`, checked against labeling.bounds and converted (a form or the
    CLI may pass strings); None values are left for the caller to drop or keep."""
    out = dict(values)
    if out.get("overlap") is not None:
        out["overlap"] = bounds.whole_number(out["overlap"], "overlap", *bounds.OVERLAP)
    if out.get("lease_seconds") is not None:
        out["lease_seconds"] = bounds.whole_number(
            out["lease_seconds"], "lease_seconds", *bounds.LEASE_SECONDS
        )
    if out.get("gold_rate") is not None:
        out["gold_rate"] = bounds.fraction(out["gold_rate"], "gold_rate")
    if out.get("heldout_fraction") is not None:
        out["heldout_fraction"] = bounds.fraction(
            out["heldout_fraction"], "heldout_fraction", 0.0, 0.5
        )
    if out.get("rank_k") is not None:
        out["rank_k"] = bounds.whole_number(out["rank_k"], "rank_k", *bounds.RANK_K)
    if "guidelines" in out:
        out["guidelines"] = bounds.check_guidelines(out["guidelines"])
    if "answer_pattern" in out:
        out["answer_pattern"] = check_answer_pattern(out["answer_pattern"])
    return out


def check_answer_pattern(pattern: str | None) -> str | None:
    """A project's answer regex (its first group, else the whole match, is the final answer a
    verifier reads); empty or None: no pattern. Refused unless it compiles."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise InvalidInput("answer_pattern must be text (a regular expression)")
    if not pattern.strip():
        return None
    if "\x00" in pattern:
        raise InvalidInput("answer_pattern contains a NUL character")
    if len(pattern) > MAX_ANSWER_PATTERN_CHARS:
        raise InvalidInput(
            f"answer_pattern is too long: {len(pattern)} characters "
            f"(limit {MAX_ANSWER_PATTERN_CHARS})"
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidInput(
            f"answer_pattern {pattern!r} is not a regular expression: {exc}"
        ) from None
    return pattern


def read_guidelines_file(path: str | os.PathLike[str]) -> str:
    """Guidelines from a file (`rlhf projects create --guidelines FILE`): a regular UTF-8
    file within the same cap as guidelines typed in the UI."""
    return bounds.read_text_file(path, "guidelines file", max_bytes=bounds.GUIDELINES_MAX_BYTES)


def create_project(
    session: Session, *, name: str, kind: str | ProjectKind, **values: Any
) -> Project:
    name = bounds.check_name(name or "", "project")
    try:
        kind = ProjectKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown project kind {kind!r}: use one of {', '.join(k.value for k in ProjectKind)}"
        ) from None
    unknown = set(values) - EDITABLE
    if unknown:
        raise InvalidInput(f"unknown project settings: {', '.join(sorted(unknown))}")
    values = _validate({k: v for k, v in values.items() if v is not None})
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"project {name!r} already exists")
    project = Project(name=name, kind=kind, **values)
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, name_or_id: str | int) -> Project:
    column = Project.id if isinstance(name_or_id, int) else Project.name
    project = session.scalar(select(Project).where(column == name_or_id))
    if project is None:
        raise NotFound(f"no project named {name_or_id!r}")
    return project


def lock_labels(session: Session, project_id: int) -> None:
    """Serialise what freezes a project's labels (a snapshot) with what withdraws one (an
    undo) until the transaction ends, so a snapshot never holds a label an undo removed.

    PostgreSQL: FOR NO KEY UPDATE on the project row, which claims and submits do not wait on
    (their foreign keys take FOR KEY SHARE). SQLite has one writer at a time already."""
    session.execute(
        select(Project.id).where(Project.id == project_id).with_for_update(key_share=True)
    )


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.name)))


def update_project(session: Session, project: Project, **values: Any) -> Project:
    unknown = set(values) - EDITABLE
    if unknown:
        raise InvalidInput(f"unknown project settings: {', '.join(sorted(unknown))}")
    required = sorted(k for k in REQUIRED if k in values and values[k] is None)
    if required:
        raise InvalidInput(f"{', '.join(required)} cannot be empty")
    values = _validate(values)
    for key, value in values.items():
        setattr(project, key, value)
    if "overlap" in values:
        # Tasks take the new overlap: a higher one reopens done tasks, a lower one closes
        # the open tasks that already have enough labels.
        overlap = int(values["overlap"])
        live = (Task.project_id == project.id, ~Task.is_gold, Task.status != TaskStatus.retired)
        session.execute(update(Task).where(*live).values(overlap=overlap))
        session.execute(
            update(Task).where(*live, Task.labels_count >= overlap).values(status=TaskStatus.done)
        )
        session.execute(
            update(Task).where(*live, Task.labels_count < overlap).values(status=TaskStatus.open)
        )
    return project


def task_status(session: Session, project: Project) -> dict[str, Any]:
    """Counts for `rlhf tasks status`: tasks by state, labels, live leases."""
    now = utcnow()
    rows = session.execute(
        select(
            Task.status, Task.is_gold, func.count(), func.coalesce(func.sum(Task.labels_count), 0)
        )
        .where(Task.project_id == project.id)
        .group_by(Task.status, Task.is_gold)
    ).all()
    by_status = {s.value: 0 for s in TaskStatus}
    gold = labels = total = 0
    for status, is_gold, count, label_sum in rows:
        total += count
        labels += int(label_sum)
        if is_gold:
            gold += count
        else:
            by_status[status.value] += count
    leased = session.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.project_id == project.id,
            Assignment.status == AssignmentStatus.active,
            Assignment.expires_at > now,
        )
    )
    wanted = session.scalar(
        select(func.coalesce(func.sum(Task.overlap - Task.labels_count), 0)).where(
            Task.project_id == project.id, Task.status == TaskStatus.open, ~Task.is_gold
        )
    )
    return {
        "project": project.name,
        "kind": project.kind.value,
        "overlap": project.overlap,
        "tasks": total,
        "gold": gold,
        "open": by_status["open"],
        "done": by_status["done"],
        "retired": by_status["retired"],
        "labels": labels,
        "labels_wanted": int(wanted or 0),
        "active_leases": int(leased or 0),
    }
