"""Undo: a labeler takes back their last label within a minute, to correct it.

The pages only offer the button; every rule is checked here, on the server:

- only the author, only their most recent label in the project, only a labeler's own label
  (not an imported one), only within UNDO_SECONDS of its submit, only while the item is not
  retired, and only while no snapshot of a kind that holds the label was made since it
  (snapshots are frozen Parquet: the label would live on in one);
- one step back only: an undo stamps the assignment (``undone_at``), and labels given
  before that moment stay. The answer given after it (the correction) is undoable again.

What an undo does, in the caller's transaction:

- the label row is deleted (for a written answer, its Response too when nothing else uses
  it). Withdrawn labels simply no longer exist, so every query built on the label tables
  (stats, agreement, gold accuracy, arena battles and leaderboards, snapshots, the "done
  today" counter) stays right without learning a "withdrawn" flag;
- the task's ``labels_count`` drops by one and, in the same statement, the same labeler
  gets a fresh lease on it (as queue.claim_next would count it). Labels plus live leases
  stay what they were, so an item that had reached its overlap is open again for this
  labeler alone; if their lease lapses it goes back to the pool like any other;
- the answer is kept as their draft, and returned, so the page can show it to correct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.orm import Session

from labeling import queue
from labeling.errors import Conflict, NotFound
from labeling.labeler_views import screen_to_task_choice  # the one mapping of screen sides
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Origin,
    Preference,
    Project,
    Ranking,
    Response,
    Snapshot,
    SnapshotKind,
    Task,
    TaskCandidate,
    TaskStatus,
    utcnow,
)
from labeling.projects import lock_labels

UNDO_SECONDS = 60

# The snapshot kinds a label of each table goes into (rows or, for ties, stats).
_HELD_BY = {
    Demonstration: (SnapshotKind.sft,),
    Preference: (SnapshotKind.preference, SnapshotKind.kto),
    Ranking: (SnapshotKind.preference, SnapshotKind.kto),
}

# One label fewer and a new lease for the undoer, in one statement (queue's lease epochs).
_REOPEN = text(
    f"""
    UPDATE tasks SET
        labels_count = labels_count - 1,
        status = CASE WHEN status = 'done' AND labels_count - 1 < overlap THEN 'open'
                      ELSE status END,
        {queue._BUMP_SET}
    WHERE id = :task_id AND status <> 'retired' AND labels_count > 0
    RETURNING lease_epoch
    """
)


@dataclass(frozen=True)
class UndoResult:
    """The withdrawn label's task, leased again to its author, and what they had answered.

    previous: write {"text"}; compare/arena {"choice" (the task's a/b), "screen_choice"
    (as shown to this labeler), "strength", "rationale"}; rank {"order" (response ids, best
    first), "positions" (0-based screen positions, best first), "rationale"}."""

    task_id: int
    assignment_id: int
    kind: str
    previous: dict[str, Any] = field(default_factory=dict)
    time_spent_ms: int | None = None


def _last_label(session: Session, user_id: int, project_id: int):
    newest = None
    for model in (Preference, Demonstration, Ranking):
        label = session.scalar(
            select(model)
            .join(Task, Task.id == model.task_id)
            .where(model.user_id == user_id, Task.project_id == project_id)
            .order_by(model.created_at.desc(), model.id.desc())
            .limit(1)
        )
        if label is not None and (newest is None or label.created_at > newest.created_at):
            newest = label
    return newest


def undo_last(
    session: Session,
    *,
    user_id: int,
    project_id: int,
    task_id: int | None = None,
    now: datetime | None = None,
) -> UndoResult:
    """Withdraw the user's most recent label in the project and lease its task back to them.

    task_id: the task the caller means (the page's last submit); refused when the most
    recent label is on another task (another tab submitted since)."""
    now = now or utcnow()
    # a paused labeler's labels wait for a reviewer: they may not take one back (and relabel)
    queue._not_paused(queue._active_user(session, user_id))
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")
    lock_labels(session, project_id)  # waits for a snapshot being made, which may hold it

    label = _last_label(session, user_id, project_id)
    if label is None:
        raise Conflict("You have no label in this project to undo.")
    if task_id is not None and label.task_id != task_id:
        raise Conflict(
            "Only your most recent label can be undone, and you have submitted another since."
        )
    if label.origin != Origin.labeler:
        raise Conflict("Your most recent label here was imported, so it cannot be undone.")
    age = (now - label.created_at).total_seconds()
    if age > UNDO_SECONDS:
        raise Conflict(
            f"A label can be undone only within {UNDO_SECONDS} seconds of submitting; "
            f"this one was submitted {int(age)} seconds ago, so it stays."
        )
    undone_since = session.scalar(
        select(func.max(Assignment.undone_at)).where(
            Assignment.user_id == user_id, Assignment.project_id == project_id
        )
    )
    if undone_since is not None and undone_since > label.created_at:
        raise Conflict(
            "Only your last label can be undone, once: you already undid one after this label, "
            "so it stays."
        )
    snapshot_id = session.scalar(
        select(Snapshot.id)
        .where(
            Snapshot.project_id == project_id,
            Snapshot.kind.in_(_HELD_BY[type(label)]),
            Snapshot.created_at >= label.created_at,
        )
        .limit(1)
    )
    if snapshot_id is not None:
        raise Conflict(
            f"Snapshot #{snapshot_id} was made after this label and already holds it; "
            "snapshots never change, so the label stays."
        )
    assignment = session.scalar(
        select(Assignment).where(Assignment.task_id == label.task_id, Assignment.user_id == user_id)
    )
    if assignment is None or assignment.status != AssignmentStatus.submitted:
        raise Conflict("This label is no longer yours to undo.")
    task = session.get(Task, label.task_id)
    if task.status == TaskStatus.retired:
        raise Conflict("This item was retired since you labeled it, so your label stays.")

    previous, draft = _previous(session, label, task, assignment)
    time_spent_ms = label.time_spent_ms
    model, label_id = type(label), label.id
    # In a savepoint, so a refusal below leaves the label and the counts as they were even
    # for a caller that goes on with its transaction.
    savepoint = session.begin_nested()
    # Deleted first and counted: a double click's second undo finds no row and stops here
    # (on PostgreSQL it waits for the first one's row lock, then sees it gone).
    if session.execute(delete(model).where(model.id == label_id)).rowcount != 1:
        savepoint.rollback()
        raise Conflict("This label was already undone.")
    expires = queue._lease_until(project, now)
    params = queue._bind(session, {"task_id": task.id, "now": now, "expires": expires})
    epoch = session.execute(_REOPEN, params).scalar()
    if epoch is None:  # the checks above make this unreachable; never leave counts wrong
        savepoint.rollback()
        raise Conflict("This item cannot be reopened, so your label stays.")
    session.expunge(label)
    if model is Demonstration:
        _drop_unused_response(session, previous.pop("response_id"))
    savepoint.commit()
    session.expire(task)
    assignment.status = AssignmentStatus.active
    assignment.lease_epoch = epoch
    assignment.claimed_at = now  # the newest held lease: claim_next hands it back first
    assignment.expires_at = expires
    assignment.finished_at = None
    assignment.undone_at = now
    queue.save_draft(session, task_id=task.id, user_id=user_id, payload=draft)
    session.flush()
    return UndoResult(
        task_id=task.id,
        assignment_id=assignment.id,
        kind=task.kind.value,
        previous=previous,
        time_spent_ms=time_spent_ms,
    )


def _previous(
    session: Session, label, task: Task, assignment: Assignment
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the page shows again, the draft to keep): the same payloads submits keep."""
    if isinstance(label, Demonstration):
        text_ = session.scalar(select(Response.text).where(Response.id == label.response_id))
        return {"text": text_, "response_id": label.response_id}, {"text": text_}
    if isinstance(label, Preference):
        choice = label.choice.value
        draft = {"choice": choice, "strength": label.strength, "rationale": label.rationale}
        screen = screen_to_task_choice(choice, assignment.swap_sides).value  # its own inverse
        return {**draft, "screen_choice": screen}, draft
    shown = list(
        session.scalars(
            select(TaskCandidate.response_id)
            .where(TaskCandidate.task_id == task.id)
            .order_by(TaskCandidate.position)
        )
    )
    order = [int(r) for r in label.order]
    positions = [shown.index(r) for r in order if r in shown]
    draft = {"order": order, "rationale": label.rationale}
    return {**draft, "positions": positions}, draft


def _drop_unused_response(session: Session, response_id: int) -> None:
    """A withdrawn answer's text goes with it, unless something else already points at it."""
    used = session.scalar(
        select(
            exists().where(
                (Task.response_a_id == response_id) | (Task.response_b_id == response_id)
            )
            | exists().where(TaskCandidate.response_id == response_id)
            | exists().where(Demonstration.response_id == response_id)
            | exists().where(Preference.left_response_id == response_id)
        )
    )
    if not used:
        session.execute(delete(Response).where(Response.id == response_id))
