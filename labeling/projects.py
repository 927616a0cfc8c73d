"""Projects: what is labeled, how many labels each item wants, and for how long a lease lasts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

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

EDITABLE = {"guidelines", "overlap", "lease_seconds", "gold_rate", "heldout_fraction", "rank_k"}


def _validate(values: dict[str, Any]) -> None:
    if "overlap" in values and not 1 <= int(values["overlap"]) <= 100:
        raise InvalidInput("overlap must be between 1 and 100")
    if "lease_seconds" in values and int(values["lease_seconds"]) < 10:
        raise InvalidInput("lease_seconds must be at least 10")
    if "gold_rate" in values and not 0 <= float(values["gold_rate"]) <= 1:
        raise InvalidInput("gold_rate must be between 0 and 1")
    if "heldout_fraction" in values and not 0 <= float(values["heldout_fraction"]) <= 0.5:
        raise InvalidInput("heldout_fraction must be between 0 and 0.5")
    if values.get("rank_k") is not None and int(values["rank_k"]) < 2:
        raise InvalidInput("rank_k must be at least 2")


def create_project(
    session: Session, *, name: str, kind: str | ProjectKind, **values: Any
) -> Project:
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise InvalidInput("project name must be 1-128 characters")
    try:
        kind = ProjectKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown project kind {kind!r}: use one of {', '.join(k.value for k in ProjectKind)}"
        ) from None
    unknown = set(values) - EDITABLE
    if unknown:
        raise InvalidInput(f"unknown project settings: {', '.join(sorted(unknown))}")
    values = {k: v for k, v in values.items() if v is not None}
    _validate(values)
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


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.name)))


def update_project(session: Session, project: Project, **values: Any) -> Project:
    unknown = set(values) - EDITABLE
    if unknown:
        raise InvalidInput(f"unknown project settings: {', '.join(sorted(unknown))}")
    _validate(values)
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
