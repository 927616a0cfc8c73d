"""The database side of active learning (`rlhf queue prioritise`): the pairs to score and
the claim priorities that follow from the scores. No torch here; reward/prioritise.py loads
the model, reward/active.py does the maths.

    project = pairwise_project(s, "helpful")
    rows = open_pairs(s, project.id)         # the pairs a labeler may still be served
    seen = labeled_pairs(s, project.id)      # the decided labels, reviews in force
    set_priorities(s, project.id, [task ids, best first])
    queue_top(s, project.id, limit=10)       # what claim_next serves next, in order

Only OPEN, non-gold compare tasks are ever re-prioritised: gold tasks keep the rate the
project serves them at, done tasks are not served, arena tasks belong to matchmaking
(labeling/arena/matchmaking.py). Priorities are written as ranks: the first of n tasks gets
n, the last 1, so a task imported later (priority 0) waits behind them until the next run.
Services take the session and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, aliased

from labeling.errors import InvalidInput
from labeling.models import (
    Choice,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    ReviewAction,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.projects import get_project

CHUNK = 1_000  # rows per executemany batch of priority updates


def pairwise_project(session: Session, name_or_id: str | int) -> Project:
    """The project, refused in one sentence unless it is a pairwise one."""
    project = get_project(session, name_or_id)
    kind = ProjectKind(project.kind)
    if kind != ProjectKind.pairwise:
        what, why = {
            ProjectKind.arena: ("an arena", "its queue is ordered by matchmaking"),
            ProjectKind.sft: ("an sft", "it has written answers, not pairs"),
            ProjectKind.ranking: ("a ranking", "it has rankings, not pairs"),
        }[kind]
        raise InvalidInput(
            f"project {project.name!r} is {what} project: only pairwise projects are "
            f"prioritised ({why})"
        )
    return project


def _open_filter(project_id: int):
    return (
        Task.project_id == project_id,
        Task.kind == TaskKind.compare,
        Task.status == TaskStatus.open,
        Task.is_gold.is_(False),
    )


def _pairs(session: Session, query) -> list[dict[str, Any]]:
    ra, rb = aliased(Response), aliased(Response)
    rows = session.execute(
        query.add_columns(Prompt.messages, ra.text.label("text_a"), rb.text.label("text_b"))
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(ra, ra.id == Task.response_a_id)
        .join(rb, rb.id == Task.response_b_id)
    ).all()
    return [dict(r._mapping) | {"messages": list(r.messages)} for r in rows]


def open_pairs(session: Session, project_id: int) -> list[dict[str, Any]]:
    """The project's open, non-gold compare tasks, oldest first: task_id, priority,
    messages (the prompt), text_a, text_b."""
    query = (
        select(Task.id.label("task_id"), Task.priority)
        .where(*_open_filter(project_id))
        .order_by(Task.id)
    )
    return _pairs(session, query)


def labeled_pairs(session: Session, project_id: int) -> list[dict[str, Any]]:
    """One row per decided preference label (A or B better) on the project's compare tasks,
    gold ones included, with the reviews in force: a rejected label is left out, a relabel's
    choice replaces the label's (labeling/quality/review.py). task_id, messages, text_a,
    text_b, a_wins (bool)."""
    from labeling.quality.review import in_force

    reviews = in_force(session, project_id)
    query = (
        select(Task.id.label("task_id"), Preference.id.label("preference_id"), Preference.choice)
        .join(Preference, Preference.task_id == Task.id)
        .where(Task.project_id == project_id, Task.kind == TaskKind.compare)
        .order_by(Preference.id)
    )
    out = []
    for row in _pairs(session, query):
        choice = Choice(row["choice"])
        review = reviews.get(("preference", row["preference_id"]))
        if review is not None and ReviewAction(review.action) == ReviewAction.reject:
            continue
        if review is not None and ReviewAction(review.action) == ReviewAction.relabel:
            choice = Choice(review.choice) if review.choice is not None else choice
        if choice not in (Choice.a, Choice.b):
            continue
        pair = {k: v for k, v in row.items() if k not in ("preference_id", "choice")}
        out.append(pair | {"a_wins": choice == Choice.a})
    return out


def set_priorities(session: Session, project_id: int, order: list[int]) -> int:
    """Claim priorities from an order of task ids (best first): the first of n gets n, the
    last 1. Only the project's open, non-gold compare tasks are written (executemany in
    batches); returns how many rows were written."""
    if len(set(order)) != len(order):
        raise InvalidInput("a queue order names each task once")
    wanted = set(order)
    writable = set(session.scalars(select(Task.id).where(*_open_filter(project_id))))
    stray = wanted - writable
    if stray:
        raise InvalidInput(
            f"task {min(stray)} is not an open, non-gold compare task of this project: "
            "its priority is left alone"
        )
    table = Task.__table__
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("task_id"),
            table.c.project_id == project_id,
            table.c.kind == TaskKind.compare,
            table.c.status == TaskStatus.open,
            table.c.is_gold.is_(False),
        )  # again: a task closed since the check above keeps its priority
        .values(priority=bindparam("new_priority"))
    )
    n = len(order)
    rows = [{"task_id": t, "new_priority": n - i} for i, t in enumerate(order)]
    for start in range(0, n, CHUNK):
        session.execute(statement, rows[start : start + CHUNK])
    return n


def queue_top(session: Session, project_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
    """The open, non-gold compare tasks in the order claims serve them (priority, then id):
    task_id, priority, messages, text_a, text_b."""
    query = (
        select(Task.id.label("task_id"), Task.priority)
        .where(*_open_filter(project_id))
        .order_by(Task.priority.desc(), Task.id)
        .limit(limit)
    )
    return _pairs(session, query)
