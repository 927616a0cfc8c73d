"""What the labeler pages read and write: one call per user action.

Every function takes the session first, never commits, and returns plain dataclasses, so a
page only renders widgets and calls one of these. Screen positions ("A" on the left, "B" on
the right) are mapped back to the task's response_a/response_b here, using the
assignment's swap_sides, and nowhere else.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, union_all
from sqlalchemy.orm import Session

from labeling import arena, generations, queue
from labeling.errors import InvalidInput, NotFound
from labeling.models import (
    Assignment,
    AssignmentStatus,
    AuthorKind,
    Choice,
    Demonstration,
    Preference,
    Project,
    ProjectKind,
    Ranking,
    Response,
    Task,
    TaskCandidate,
    TaskKind,
    TaskStatus,
    utcnow,
)

COMPARE_KINDS = (ProjectKind.pairwise, ProjectKind.arena)
WRITE_KINDS = (ProjectKind.sft,)
RANK_KINDS = (ProjectKind.ranking,)
STRENGTHS = {1: "Slightly", 2: "Clearly", 3: "Much"}
MAX_MODEL_ANSWERS = 5


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    kind: str
    guidelines: str


@dataclass(frozen=True)
class Answer:
    response_id: int
    text: str
    source: str = ""  # "checkpoint" / "import" for model answers
    truncated: bool = False  # a model answer cut at its token limit (no end-of-sequence)


@dataclass(frozen=True)
class TaskView:
    """One leased task as the labeler sees it. For a comparison, `left` is the answer shown
    under "A" (screen left) and `right` the one under "B"."""

    assignment_id: int
    task_id: int
    project_id: int
    kind: str
    messages: list[dict[str, str]]
    left: Answer | None = None
    right: Answer | None = None
    candidates: list[Answer] = field(default_factory=list)
    model_answers: list[Answer] = field(default_factory=list)
    draft: dict[str, Any] | None = None
    answer: str | None = None  # the prompt's gold final answer (write tasks), if known


@dataclass(frozen=True)
class Outcome:
    """What a submit/skip/flag did, and the task to show next (None: the queue is empty)."""

    accepted: bool
    duplicate: bool = False
    message: str = ""
    next: TaskView | None = None


# --- projects -----------------------------------------------------------------------------


def labeler_projects(session: Session, kinds: tuple[ProjectKind, ...]) -> list[ProjectInfo]:
    rows = session.execute(
        select(Project.id, Project.name, Project.kind, Project.guidelines)
        .where(Project.kind.in_(kinds))
        .order_by(Project.name)
    ).all()
    return [ProjectInfo(r.id, r.name, r.kind.value, r.guidelines or "") for r in rows]


# --- the task on screen -------------------------------------------------------------------


def screen_to_task_choice(screen_choice: str, swap_sides: bool) -> Choice:
    """The labeler picked "a" (left) or "b" (right) on screen; the task's choice is the
    other letter when the sides were swapped. tie and both_bad are the same either way."""
    try:
        choice = Choice(screen_choice)
    except ValueError:
        raise InvalidInput(f"unknown choice {screen_choice!r}") from None
    if swap_sides and choice in (Choice.a, Choice.b):
        return Choice.b if choice == Choice.a else Choice.a
    return choice


def ranks_to_order(candidate_ids: list[int], ranks: list[int]) -> list[int]:
    """ranks[i] is the rank (1 = best) given to candidate_ids[i]; returns ids best first."""
    k = len(candidate_ids)
    if len(ranks) != k:
        raise InvalidInput("give every answer a rank")
    if sorted(ranks) != list(range(1, k + 1)):
        raise InvalidInput(f"use each rank from 1 to {k} exactly once")
    return [cid for _, cid in sorted(zip(ranks, candidate_ids, strict=True))]


def open_task(
    session: Session,
    *,
    user_id: int,
    project_id: int,
    assignment_id: int | None = None,
    now: datetime | None = None,
) -> TaskView | None:
    """The task on screen: the given lease while it is live (a plain read, for reruns),
    otherwise the next claim (the user's own live lease comes back first)."""
    now = now or utcnow()
    if assignment_id is not None:
        assignment = session.get(Assignment, assignment_id)
        if (
            assignment is not None
            and assignment.user_id == user_id
            and assignment.project_id == project_id
            and assignment.status == AssignmentStatus.active
            and assignment.expires_at > now
        ):
            return _view(session, assignment)
    return next_task(session, user_id=user_id, project_id=project_id, now=now)


def held_task(
    session: Session, *, user_id: int, project_id: int, now: datetime | None = None
) -> TaskView | None:
    """The user's own live lease in the project, if any: a read that claims nothing (staff
    opening a labeling page must not take items from labelers' queues until they act)."""
    now = now or utcnow()
    assignment = session.scalar(
        select(Assignment)
        .where(
            Assignment.user_id == user_id,
            Assignment.project_id == project_id,
            Assignment.status == AssignmentStatus.active,
            Assignment.expires_at > now,
        )
        .order_by(Assignment.id.desc())
        .limit(1)
    )
    return None if assignment is None else _view(session, assignment)


def next_task(
    session: Session, *, user_id: int, project_id: int, now: datetime | None = None
) -> TaskView | None:
    assignment = queue.claim_next(session, project_id=project_id, user_id=user_id, now=now)
    return None if assignment is None else _view(session, assignment)


def _view(session: Session, assignment: Assignment) -> TaskView:
    task = session.get(Task, assignment.task_id)
    common = dict(
        assignment_id=assignment.id,
        task_id=task.id,
        project_id=task.project_id,
        kind=task.kind.value,
        messages=[dict(m) for m in task.prompt.messages],
        draft=queue.get_draft(session, task_id=task.id, user_id=assignment.user_id),
    )
    if task.kind in (TaskKind.compare, TaskKind.arena):
        rows = {
            r.id: r
            for r in session.execute(
                select(Response.id, Response.text, Response.sampling_params).where(
                    Response.id.in_((task.response_a_id, task.response_b_id))
                )
            )
        }

        def answer(response_id: int) -> Answer:
            row = rows[response_id]
            return Answer(
                response_id, row.text, truncated=generations.is_truncated(row.sampling_params)
            )

        a, b = answer(task.response_a_id), answer(task.response_b_id)
        left, right = (b, a) if assignment.swap_sides else (a, b)
        return TaskView(**common, left=left, right=right)
    if task.kind == TaskKind.rank:
        rows = session.execute(
            select(Response.id, Response.text)
            .join(TaskCandidate, TaskCandidate.response_id == Response.id)
            .where(TaskCandidate.task_id == task.id)
            .order_by(TaskCandidate.position)
        ).all()
        return TaskView(**common, candidates=[Answer(r.id, r.text) for r in rows])
    rows = session.execute(
        select(Response.id, Response.text, Response.author_kind)
        .where(
            Response.prompt_id == task.prompt_id,
            Response.author_kind.in_((AuthorKind.checkpoint, AuthorKind.imported)),
        )
        .order_by(Response.id)
        .limit(MAX_MODEL_ANSWERS)
    ).all()
    return TaskView(
        **common, model_answers=[Answer(r.id, r.text, r.author_kind.value) for r in rows],
        answer=task.prompt.answer,
    )  # fmt: skip


def _own(session: Session, assignment_id: int, user_id: int) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user_id:
        raise NotFound("no such task for this user")
    return assignment


def _next_after(session: Session, *, user_id: int, project_id: int) -> TaskView | None:
    """The next task after an action; none for a paused account: the action itself stands,
    and the page's next claim says why nothing comes (queue.AccountPaused)."""
    try:
        return next_task(session, user_id=user_id, project_id=project_id)
    except queue.AccountPaused:
        return None


def _after(session: Session, result: queue.SubmitResult, assignment: Assignment) -> Outcome:
    nxt = _next_after(session, user_id=assignment.user_id, project_id=assignment.project_id)
    return Outcome(result.accepted, result.duplicate, result.message, nxt)


# --- actions ------------------------------------------------------------------------------


def submit_compare(
    session: Session,
    *,
    assignment_id: int,
    user_id: int,
    screen_choice: str,
    strength: int | None = None,
    rationale: str | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
) -> Outcome:
    """Record the judgment (screen choice mapped to the task's a/b) and claim the next task."""
    assignment = _own(session, assignment_id, user_id)
    choice = screen_to_task_choice(screen_choice, assignment.swap_sides)
    result = queue.submit_preference(
        session, task_id=assignment.task_id, user_id=user_id, choice=choice,
        strength=strength if choice in (Choice.a, Choice.b) else None,
        rationale=rationale or None, time_spent_ms=time_spent_ms,
        idempotency_key=idempotency_key,
    )  # fmt: skip
    if result.accepted and not result.duplicate:
        arena.after_vote(session, assignment.project_id)  # matchmaking: reprioritise now and then
    return _after(session, result, assignment)


def submit_write(
    session: Session,
    *,
    assignment_id: int,
    user_id: int,
    text: str,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
) -> Outcome:
    assignment = _own(session, assignment_id, user_id)
    result = queue.submit_demonstration(
        session, task_id=assignment.task_id, user_id=user_id, text=text,
        time_spent_ms=time_spent_ms, idempotency_key=idempotency_key,
    )  # fmt: skip
    return _after(session, result, assignment)


def submit_rank(
    session: Session,
    *,
    assignment_id: int,
    user_id: int,
    ranks: list[int],
    rationale: str | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
) -> Outcome:
    """`ranks[i]`: the rank (1 = best) of the i-th answer as shown (TaskCandidate order)."""
    assignment = _own(session, assignment_id, user_id)
    candidate_ids = list(
        session.scalars(
            select(TaskCandidate.response_id)
            .where(TaskCandidate.task_id == assignment.task_id)
            .order_by(TaskCandidate.position)
        )
    )
    order = ranks_to_order(candidate_ids, [int(r) for r in ranks])
    result = queue.submit_ranking(
        session, task_id=assignment.task_id, user_id=user_id, order=order,
        rationale=rationale or None, time_spent_ms=time_spent_ms,
        idempotency_key=idempotency_key,
    )  # fmt: skip
    return _after(session, result, assignment)


def skip_task(session: Session, *, assignment_id: int, user_id: int) -> Outcome:
    assignment = _own(session, assignment_id, user_id)
    if assignment.status == AssignmentStatus.active:
        queue.skip(session, assignment_id=assignment_id, user_id=user_id)
    nxt = _next_after(session, user_id=user_id, project_id=assignment.project_id)
    return Outcome(True, next=nxt)


def flag_task(
    session: Session, *, assignment_id: int, user_id: int, reason: str, note: str | None = None
) -> Outcome:
    assignment = _own(session, assignment_id, user_id)
    queue.flag(session, assignment_id=assignment_id, user_id=user_id, reason=reason, note=note)
    nxt = _next_after(session, user_id=user_id, project_id=assignment.project_id)
    return Outcome(True, message="Thanks, the item was flagged.", next=nxt)


def save_write_draft(
    session: Session, *, assignment_id: int, user_id: int, text: str, now: datetime | None = None
) -> bool:
    """Autosave the answer being written; also keeps the lease alive. False when the lease
    was lost (the draft is saved all the same)."""
    assignment = _own(session, assignment_id, user_id)
    queue.save_draft(session, task_id=assignment.task_id, user_id=user_id, payload={"text": text})
    if assignment.status != AssignmentStatus.active:
        return False
    now = now or utcnow()
    project = session.get(Project, assignment.project_id)
    if (assignment.expires_at - now).total_seconds() > project.lease_seconds / 2:
        return True  # plenty of lease left: no write to the task row
    try:
        queue.renew(session, assignment_id=assignment_id, user_id=user_id, now=now)
    except Exception:  # Conflict: lapsed and taken by others; the draft is still kept
        return False
    return True


def copy_model_answer(
    session: Session, *, assignment_id: int, user_id: int, response_id: int
) -> str:
    """ "Start from a model answer": that answer becomes the user's draft; returns its text."""
    assignment = _own(session, assignment_id, user_id)
    task = session.get(Task, assignment.task_id)
    response = session.get(Response, response_id)
    if (
        response is None
        or response.prompt_id != task.prompt_id
        or response.author_kind not in (AuthorKind.checkpoint, AuthorKind.imported)
    ):
        raise NotFound("no such model answer for this task")
    queue.save_draft(session, task_id=task.id, user_id=user_id, payload={"text": response.text})
    return response.text


# --- progress -----------------------------------------------------------------------------


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _my_labels(user_id: int):
    """(project_id, created_at, time_spent_ms) of every label the user gave."""
    parts = [
        select(Task.project_id, model.created_at, model.time_spent_ms)
        .join(Task, Task.id == model.task_id)
        .where(model.user_id == user_id)
        for model in (Preference, Demonstration, Ranking)
    ]
    return union_all(*parts).subquery()


def done_today(
    session: Session, *, user_id: int, project_id: int, now: datetime | None = None
) -> int:
    """The user's labels in this project since midnight UTC (the counter on the pages)."""
    start = _day_start((now or utcnow()).astimezone(UTC).date())
    labels = _my_labels(user_id)
    return session.scalar(
        select(func.count())
        .select_from(labels)
        .where(labels.c.project_id == project_id, labels.c.created_at >= start)
    )


@dataclass(frozen=True)
class ProjectProgress:
    project_id: int
    name: str
    kind: str
    today: int
    total: int
    remaining: int  # open items this user could still be given
    median_seconds: float | None


@dataclass(frozen=True)
class Progress:
    projects: list[ProjectProgress]
    per_day: dict[str, int]  # "YYYY-MM-DD" -> labels, last `days` days (UTC), oldest first
    today: int
    total: int
    median_seconds: float | None


def remaining_for(session: Session, *, user_id: int, project_id: int, now: datetime) -> int:
    """Open, non-gold items of the project left for this user: the one they hold, and those
    they have not done that still want labels beyond the live leases of others."""
    live = and_(Task.lease_horizon.is_not(None), Task.lease_horizon > now)

    def mine(*statuses: AssignmentStatus):
        return exists().where(
            Assignment.task_id == Task.id,
            Assignment.user_id == user_id,
            Assignment.status.in_(statuses),
        )

    done = mine(AssignmentStatus.submitted, AssignmentStatus.skipped, AssignmentStatus.expired)
    return session.scalar(
        select(func.count())
        .select_from(Task)
        .where(
            Task.project_id == project_id,
            Task.status == TaskStatus.open,
            ~Task.is_gold,
            ~done,
            or_(
                mine(AssignmentStatus.active),
                and_(live, Task.labels_count + Task.active_leases < Task.overlap),
                and_(~live, Task.labels_count < Task.overlap),
            ),
        )
    )


@dataclass(frozen=True)
class QueueState:
    left: int  # items left for this user (remaining_for)
    total: int  # the project's non-gold items
    held_by_others: int  # items this user could still do, all of whose open labels are
    # leased to others right now: they may come back when a lease lapses or is skipped


def queue_state(
    session: Session, *, user_id: int, project_id: int, now: datetime | None = None
) -> QueueState:
    """What "k of N left" and an empty queue's message say: left for me, the project's
    items, and those only others hold right now ("being labeled by others")."""
    now = now or utcnow()
    live = and_(Task.lease_horizon.is_not(None), Task.lease_horizon > now)
    mine = exists().where(Assignment.task_id == Task.id, Assignment.user_id == user_id)
    base = (
        select(func.count()).select_from(Task).where(Task.project_id == project_id, ~Task.is_gold)
    )
    held = session.scalar(
        base.where(
            Task.status == TaskStatus.open, ~mine, live,
            Task.labels_count < Task.overlap,
            Task.labels_count + Task.active_leases >= Task.overlap,
        )
    )  # fmt: skip
    return QueueState(
        left=remaining_for(session, user_id=user_id, project_id=project_id, now=now),
        total=session.scalar(base),
        held_by_others=held,
    )


def progress(
    session: Session, *, user_id: int, days: int = 14, now: datetime | None = None
) -> Progress:
    """The caller's own numbers only: per project and per day."""
    now = now or utcnow()
    today = now.astimezone(UTC).date()
    start_today = _day_start(today)
    labels = _my_labels(user_id)
    rows = session.execute(
        select(labels.c.project_id, labels.c.created_at, labels.c.time_spent_ms)
    ).all()
    projects = {p.id: p for p in session.execute(select(Project.id, Project.name, Project.kind))}
    by_project: dict[int, list] = {}
    for project_id, created_at, spent in rows:
        by_project.setdefault(project_id, []).append((_aware(created_at), spent))
    out = []
    for pid in sorted(projects, key=lambda i: projects[i].name):
        items = by_project.get(pid, [])
        remaining = remaining_for(session, user_id=user_id, project_id=pid, now=now)
        if not items and not remaining:
            continue
        out.append(
            ProjectProgress(
                project_id=pid,
                name=projects[pid].name,
                kind=projects[pid].kind.value,
                today=sum(1 for created, _ in items if created >= start_today),
                total=len(items),
                remaining=remaining,
                median_seconds=_median([s for _, s in items]),
            )
        )
    per_day = {(today - timedelta(days=i)).isoformat(): 0 for i in range(days - 1, -1, -1)}
    for row in rows:
        key = _aware(row.created_at).astimezone(UTC).date().isoformat()
        if key in per_day:
            per_day[key] += 1
    return Progress(
        projects=out,
        per_day=per_day,
        today=sum(p.today for p in out),
        total=len(rows),
        median_seconds=_median([r[2] for r in rows]),
    )


def _aware(value: datetime | str) -> datetime:
    # A UNION drops the column type on SQLite: values may come back as text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _median(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known) / 1000, 1) if known else None
