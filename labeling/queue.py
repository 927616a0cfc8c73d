"""The labeling queue: claim, renew, skip, release, submit, drafts.

How a task's capacity is kept on its own row, so a claim is one atomic statement:

- ``labels_count`` counts labels received; a non-gold task closes at ``overlap``.
- ``active_leases`` counts leases handed out in the current ``lease_epoch``;
  ``lease_horizon`` is the latest expiry among them. Once the horizon has passed every
  lease of the epoch is void, and the next claim starts a new epoch with a count of one.
  (A lease that lapses while a later one is still live keeps its slot until the horizon
  passes: at most one lease length of delay, never an extra label.)

On PostgreSQL the claim is one ``WITH ... FOR UPDATE SKIP LOCKED`` statement: concurrent
labelers skip each other's rows instead of queueing, and because the claim also updates
the task row, a racing claimer that reaches the row after a commit re-checks its counters.
On SQLite the same three steps run inside ``BEGIN IMMEDIATE`` (see labeling.db).

Submits carry an idempotency key: a double click writes one row. A submit that comes
after the lease lapsed and the item got its labels elsewhere is not accepted, and its
content is kept as the user's draft instead of being lost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from labeling.bounds import LEASE_SECONDS
from labeling.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from labeling.hashing import sha256_text
from labeling.models import (
    Assignment,
    AssignmentStatus,
    AuthorKind,
    Choice,
    Demonstration,
    Draft,
    Flag,
    FlagReason,
    Origin,
    Preference,
    Project,
    Ranking,
    Response,
    Task,
    TaskCandidate,
    TaskKind,
    User,
    utcnow,
)

MAX_TEXT_CHARS = 200_000
MAX_RATIONALE_CHARS = 20_000
MAX_IDEMPOTENCY_KEY = 64
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # what SQLAlchemy's SQLite DateTime writes

# --- claims -------------------------------------------------------------------------------

_CANDIDATE_WHERE = """
    t.project_id = :project_id AND t.status = 'open' AND t.is_gold = :gold
    AND (t.is_gold OR t.labels_count
         + CASE WHEN t.lease_horizon > :now THEN t.active_leases ELSE 0 END < t.overlap)
    AND NOT EXISTS (SELECT 1 FROM assignments a
                    WHERE a.task_id = t.id AND a.user_id = :user_id AND a.status <> 'released')
"""

# New epoch when the horizon has passed (all earlier leases void), else one more lease.
_BUMP_SET = """
    lease_epoch = CASE WHEN lease_horizon > :now THEN lease_epoch ELSE lease_epoch + 1 END,
    active_leases = CASE WHEN lease_horizon > :now THEN active_leases + 1 ELSE 1 END,
    lease_horizon = CASE WHEN lease_horizon > :expires THEN lease_horizon ELSE :expires END
"""

_UPSERT_ASSIGNMENT = """
    ON CONFLICT (task_id, user_id) DO UPDATE SET
        status = 'active', lease_epoch = excluded.lease_epoch, swap_sides = excluded.swap_sides,
        claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, finished_at = NULL
    RETURNING id
"""

_PG_CLAIM = text(
    f"""
    WITH candidate AS (
        SELECT t.id FROM tasks t
        WHERE {_CANDIDATE_WHERE}
        ORDER BY t.priority DESC, t.id
        LIMIT 1
        FOR UPDATE OF t SKIP LOCKED
    ), bumped AS (
        UPDATE tasks SET {_BUMP_SET}
        FROM candidate WHERE tasks.id = candidate.id
        RETURNING tasks.id, tasks.lease_epoch
    )
    INSERT INTO assignments
        (task_id, user_id, project_id, status, lease_epoch, swap_sides, claimed_at, expires_at)
    SELECT bumped.id, :user_id, :project_id, 'active', bumped.lease_epoch, :swap, :now, :expires
    FROM bumped
    {_UPSERT_ASSIGNMENT}
    """
)

_SQLITE_CANDIDATE = text(
    f"SELECT t.id FROM tasks t WHERE {_CANDIDATE_WHERE} ORDER BY t.priority DESC, t.id LIMIT 1"
)
_SQLITE_BUMP = text(f"UPDATE tasks SET {_BUMP_SET} WHERE id = :task_id RETURNING lease_epoch")
_SQLITE_INSERT = text(
    f"""
    INSERT INTO assignments
        (task_id, user_id, project_id, status, lease_epoch, swap_sides, claimed_at, expires_at)
    VALUES (:task_id, :user_id, :project_id, 'active', :epoch, :swap, :now, :expires)
    {_UPSERT_ASSIGNMENT}
    """
)

# Re-lease one given task to a user whose own lease lapsed, if the task still has room.
_RELET = text(
    f"""
    UPDATE tasks SET {_BUMP_SET}
    WHERE id = :task_id AND status = 'open'
      AND (is_gold OR labels_count
           + CASE WHEN lease_horizon > :now THEN active_leases ELSE 0 END < overlap)
    RETURNING lease_epoch
    """
)

# Give a counted lease back (skip, release): only if it still counts in this epoch.
_RETURN_LEASE = text(
    """
    UPDATE tasks SET active_leases = active_leases - 1
    WHERE id = :task_id AND lease_epoch = :epoch AND lease_horizon > :now AND active_leases > 0
    """
)

# Record one label. Accepted when the submitter's lease still counts (epoch and horizon),
# or when the task has room left beside the live leases of others.
_ACCEPT_LABEL = text(
    """
    UPDATE tasks SET
        labels_count = labels_count + 1,
        active_leases = CASE WHEN lease_epoch = :epoch AND lease_horizon > :now
                             AND active_leases > 0 THEN active_leases - 1
                             ELSE active_leases END,
        status = CASE WHEN NOT is_gold AND labels_count + 1 >= overlap THEN 'done'
                      ELSE status END
    WHERE id = :task_id AND (
        is_gold OR (status = 'open' AND (
            (lease_epoch = :epoch AND lease_horizon > :now AND labels_count < overlap)
            OR labels_count + CASE WHEN lease_horizon > :now THEN active_leases ELSE 0 END
               < overlap)))
    RETURNING id
    """
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _active_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise PermissionDenied("unknown or deactivated account")
    return user


class AccountPaused(PermissionDenied):
    """The user was paused by a reviewer (labeling.quality.review.pause_labeler)."""


def _not_paused(user: User) -> None:
    """A paused account claims nothing and renews no lease (it may still submit the task it
    holds while that lease lasts, skip, release and flag)."""
    if user.paused_at is not None:
        raise AccountPaused(
            "your account is paused by a reviewer: you cannot take new tasks until a reviewer "
            f"unpauses it (paused {user.paused_at:%Y-%m-%d %H:%M} UTC)"
        )


def _lease_until(project: Project, now: datetime) -> datetime:
    # Clamped: a row saved before leases were bounded (10**12 s) must not break every claim.
    return now + timedelta(seconds=min(project.lease_seconds, LEASE_SECONDS[1]))


def claim_next(
    session: Session,
    *,
    project_id: int,
    user_id: int,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """The user's next task in this project, leased to them; None when nothing is left.

    A live lease the user already holds comes back first (a reload resumes the same task).
    Gold items are served at the project's gold rate, falling back to the other kind. A paused
    user gets back only a lease that is still live, as it is (not renewed): the task in hand
    can be finished, nothing else is claimed.
    """
    now = now or utcnow()
    rng = rng or random
    user = _active_user(session, user_id)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project with id {project_id}")

    held = session.scalars(
        select(Assignment)
        .where(
            Assignment.user_id == user_id,
            Assignment.project_id == project_id,
            Assignment.status == AssignmentStatus.active,
        )
        .order_by(Assignment.claimed_at.desc())
    ).all()
    if user.paused_at is not None:
        for assignment in held:
            if _counts(session, assignment, now):
                return assignment
        _not_paused(user)
    for assignment in held:
        if _relet(session, assignment, project, now):
            return assignment
        assignment.status = AssignmentStatus.expired
        assignment.finished_at = now

    # Gold items come at the project's rate; with a rate of 0 they are never served.
    want_gold = project.gold_rate > 0 and rng.random() < project.gold_rate
    for gold in (want_gold, not want_gold) if project.gold_rate > 0 else (False,):
        assignment_id = _claim(session, project, user_id, gold, now, swap=rng.random() < 0.5)
        if assignment_id is not None:
            return session.get(Assignment, assignment_id, populate_existing=True)
    return None


def _claim(
    session: Session, project: Project, user_id: int, gold: bool, now: datetime, *, swap: bool
) -> int | None:
    params = {
        "project_id": project.id,
        "user_id": user_id,
        "gold": gold,
        "now": now,
        "expires": _lease_until(project, now),
        "swap": swap,
    }
    params = _bind(session, params)
    if _dialect(session) == "postgresql":
        return session.execute(_PG_CLAIM, params).scalar()
    task_id = session.execute(_SQLITE_CANDIDATE, params).scalar()
    if task_id is None:
        return None
    epoch = session.execute(_SQLITE_BUMP, {**params, "task_id": task_id}).scalar_one()
    return session.execute(
        _SQLITE_INSERT, {**params, "task_id": task_id, "epoch": epoch}
    ).scalar_one()


def _bind(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as the UTCDateTime column stores them (text() binds skip the TypeDecorator)."""
    if _dialect(session) != "sqlite":
        return params
    return {
        k: (v.astimezone(UTC).strftime(_SQLITE_DATETIME) if isinstance(v, datetime) else v)
        for k, v in params.items()
    }


def _counts(session: Session, assignment: Assignment, now: datetime) -> bool:
    """Whether this assignment's lease is still counted on its task row."""
    if assignment.status != AssignmentStatus.active:
        return False
    task = session.execute(
        select(Task.lease_epoch, Task.lease_horizon).where(Task.id == assignment.task_id)
    ).one()
    return (
        task.lease_epoch == assignment.lease_epoch
        and task.lease_horizon is not None
        and task.lease_horizon > now
    )


def _relet(session: Session, assignment: Assignment, project: Project, now: datetime) -> bool:
    """Extend the user's own lease; if it lapsed, take the task again when it has room."""
    expires = _lease_until(project, now)
    if _counts(session, assignment, now):
        session.execute(
            update(Task)
            .where(Task.id == assignment.task_id)
            .values(lease_horizon=expires)
            .where((Task.lease_horizon.is_(None)) | (Task.lease_horizon < expires))
        )
    else:
        params = _bind(session, {"task_id": assignment.task_id, "now": now, "expires": expires})
        epoch = session.execute(_RELET, params).scalar()
        if epoch is None:
            return False
        assignment.lease_epoch = epoch
    assignment.expires_at = expires
    return True


def _own_assignment(session: Session, assignment_id: int, user_id: int) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user_id:
        raise NotFound("no such assignment for this user")
    return assignment


def renew(
    session: Session, *, assignment_id: int, user_id: int, now: datetime | None = None
) -> Assignment:
    """Extend a lease (the UI calls this while the labeler is working)."""
    now = now or utcnow()
    _not_paused(_active_user(session, user_id))
    assignment = _own_assignment(session, assignment_id, user_id)
    if assignment.status != AssignmentStatus.active:
        raise Conflict(f"this task is no longer yours to renew ({assignment.status.value})")
    project = session.get(Project, assignment.project_id)
    if not _relet(session, assignment, project, now):
        assignment.status = AssignmentStatus.expired
        assignment.finished_at = now
        raise Conflict("your lease expired and the item was given to others")
    return assignment


def _give_back(
    session: Session, assignment: Assignment, status: AssignmentStatus, now: datetime
) -> None:
    if _counts(session, assignment, now):
        session.execute(
            _RETURN_LEASE,
            _bind(
                session,
                {"task_id": assignment.task_id, "epoch": assignment.lease_epoch, "now": now},
            ),
        )
    assignment.status = status
    assignment.finished_at = now


def skip(
    session: Session, *, assignment_id: int, user_id: int, now: datetime | None = None
) -> Assignment:
    """Pass on a task: it goes back to the pool and never comes back to this user."""
    now = now or utcnow()
    _active_user(session, user_id)
    assignment = _own_assignment(session, assignment_id, user_id)
    if assignment.status != AssignmentStatus.active:
        raise Conflict(f"cannot skip a task that is {assignment.status.value}")
    _give_back(session, assignment, AssignmentStatus.skipped, now)
    return assignment


def release(
    session: Session, *, assignment_id: int, user_id: int, now: datetime | None = None
) -> Assignment:
    """Hand a task back without judging it (logout, end of shift); the user may get it again."""
    now = now or utcnow()
    _active_user(session, user_id)
    assignment = _own_assignment(session, assignment_id, user_id)
    if assignment.status == AssignmentStatus.active:
        _give_back(session, assignment, AssignmentStatus.released, now)
    return assignment


def flag(
    session: Session,
    *,
    assignment_id: int,
    user_id: int,
    reason: str | FlagReason,
    note: str | None = None,
    now: datetime | None = None,
) -> Flag:
    """Report a task (unsafe, unanswerable, personal data); the labeler moves on without it."""
    now = now or utcnow()
    try:
        reason = FlagReason(reason)
    except ValueError:
        raise InvalidInput(
            f"unknown flag reason {reason!r}: use {', '.join(r.value for r in FlagReason)}"
        ) from None
    _active_user(session, user_id)
    assignment = _own_assignment(session, assignment_id, user_id)
    existing = session.scalar(
        select(Flag).where(
            Flag.task_id == assignment.task_id, Flag.user_id == user_id, Flag.reason == reason
        )
    )
    if assignment.status == AssignmentStatus.active:
        _give_back(session, assignment, AssignmentStatus.skipped, now)
    if existing is not None:
        return existing
    row = Flag(task_id=assignment.task_id, user_id=user_id, reason=reason, note=_clip(note))
    session.add(row)
    session.flush()
    return row


def _clip(note: str | None) -> str | None:
    if note is None:
        return None
    if len(note) > MAX_RATIONALE_CHARS:
        raise InvalidInput(f"note is longer than {MAX_RATIONALE_CHARS} characters")
    return note.strip() or None


# --- drafts -------------------------------------------------------------------------------


def save_draft(session: Session, *, task_id: int, user_id: int, payload: dict[str, Any]) -> Draft:
    """Autosave: one draft per (task, user), overwritten on each save."""
    if len(repr(payload)) > MAX_TEXT_CHARS + MAX_RATIONALE_CHARS + 1000:
        raise InvalidInput("draft is too large")
    draft = session.scalar(select(Draft).where(Draft.task_id == task_id, Draft.user_id == user_id))
    if draft is None:
        draft = Draft(task_id=task_id, user_id=user_id, payload=payload)
        session.add(draft)
    else:
        draft.payload = payload
        draft.updated_at = utcnow()
    session.flush()
    return draft


def get_draft(session: Session, *, task_id: int, user_id: int) -> dict[str, Any] | None:
    return session.scalar(
        select(Draft.payload).where(Draft.task_id == task_id, Draft.user_id == user_id)
    )


# --- submits ------------------------------------------------------------------------------


@dataclass
class SubmitResult:
    """accepted: the label counts. duplicate: it was already recorded (double submit).
    Not accepted: `message` says why and the content was saved as the user's draft."""

    accepted: bool
    label: Demonstration | Preference | Ranking | None = None
    duplicate: bool = False
    message: str = ""
    draft: dict[str, Any] | None = field(default=None, repr=False)


def check_judgment(choice, strength) -> tuple[Choice, int | None]:
    """A pairwise judgment as a labeler submits it or a reviewer relabels it: a known choice,
    and a strength (1-3) only where A or B is better; one sentence otherwise."""
    try:
        choice = Choice(choice)
    except ValueError:
        raise InvalidInput(
            f"unknown choice {choice!r}: use {', '.join(c.value for c in Choice)}"
        ) from None
    if strength is not None:
        if choice not in (Choice.a, Choice.b):
            raise InvalidInput("strength applies only when A or B is better, not to a "
                               f"{choice.value}")  # fmt: skip
        if isinstance(strength, bool) or strength not in (1, 2, 3):
            raise InvalidInput("strength must be 1 (slightly), 2 (clearly) or 3 (much better)")
    return choice, strength


def submit_preference(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    choice: str | Choice,
    strength: int | None = None,
    rationale: str | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    choice, strength = check_judgment(choice, strength)
    rationale = _clip(rationale)
    payload = {"choice": choice.value, "strength": strength, "rationale": rationale}

    def write(task: Task, assignment: Assignment) -> Preference:
        if task.kind not in (TaskKind.compare, TaskKind.arena):
            raise InvalidInput(f"task {task.id} is a {task.kind.value} task, not a comparison")
        left = task.response_b_id if assignment.swap_sides else task.response_a_id
        return Preference(
            task_id=task.id, user_id=user_id, origin=Origin.labeler, choice=choice,
            strength=strength, left_response_id=left, rationale=rationale,
        )  # fmt: skip

    return _submit(
        session, Preference, task_id, user_id, idempotency_key, time_spent_ms, now, payload, write
    )


def submit_demonstration(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    text: str,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the answer is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"the answer is longer than {MAX_TEXT_CHARS} characters")
    if "\x00" in text:
        raise InvalidInput("the answer contains a NUL character")
    payload = {"text": text}

    def write(task: Task, assignment: Assignment) -> Demonstration:
        if task.kind != TaskKind.write:
            raise InvalidInput(f"task {task.id} is a {task.kind.value} task, not a write task")
        response = Response(
            prompt_id=task.prompt_id, text=text, content_hash=sha256_text(text),
            author_kind=AuthorKind.labeler, author_user_id=user_id,
        )  # fmt: skip
        session.add(response)
        session.flush()
        return Demonstration(
            task_id=task.id, user_id=user_id, origin=Origin.labeler, response_id=response.id
        )

    return _submit(
        session, Demonstration, task_id, user_id, idempotency_key, time_spent_ms, now, payload,
        write,
    )  # fmt: skip


def submit_ranking(
    session: Session,
    *,
    task_id: int,
    user_id: int,
    order: list[int],
    rationale: str | None = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """`order`: the task's candidate response ids, best first."""
    rationale = _clip(rationale)
    payload = {"order": list(order), "rationale": rationale}

    def write(task: Task, assignment: Assignment) -> Ranking:
        if task.kind != TaskKind.rank:
            raise InvalidInput(f"task {task.id} is a {task.kind.value} task, not a ranking")
        candidates = set(
            session.scalars(
                select(TaskCandidate.response_id).where(TaskCandidate.task_id == task.id)
            )
        )
        if len(order) != len(set(order)) or set(order) != candidates:
            raise InvalidInput("the ranking must order each of the task's answers exactly once")
        return Ranking(
            task_id=task.id, user_id=user_id, origin=Origin.labeler, order=list(order),
            rationale=rationale,
        )  # fmt: skip

    return _submit(
        session, Ranking, task_id, user_id, idempotency_key, time_spent_ms, now, payload, write
    )


def _submit(
    session: Session,
    model: type[Demonstration] | type[Preference] | type[Ranking],
    task_id: int,
    user_id: int,
    idempotency_key: str | None,
    time_spent_ms: int | None,
    now: datetime | None,
    payload: dict[str, Any],
    write,
) -> SubmitResult:
    now = now or utcnow()
    _active_user(session, user_id)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    if time_spent_ms is not None and time_spent_ms < 0:
        raise InvalidInput("time spent cannot be negative")

    if idempotency_key is not None:
        seen = session.scalar(select(model).where(model.idempotency_key == idempotency_key))
        if seen is not None:
            if seen.user_id != user_id or seen.task_id != task_id:
                raise Conflict("this idempotency key was used for another submission")
            return SubmitResult(accepted=True, label=seen, duplicate=True)

    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task with id {task_id}")
    assignment = session.scalar(
        select(Assignment).where(Assignment.task_id == task_id, Assignment.user_id == user_id)
    )
    if assignment is None:
        raise PermissionDenied("this task was never assigned to you: claim it first")
    if assignment.status == AssignmentStatus.submitted:
        return _existing(session, model, task_id, user_id)
    # A skipped (or flagged) or released task was handed back: its slot may be someone
    # else's now, so a stale form from another tab must not add a label.
    if assignment.status in (AssignmentStatus.skipped, AssignmentStatus.released):
        done = "skipped" if assignment.status == AssignmentStatus.skipped else "handed back"
        raise Conflict(
            f"you {done} this task, so this answer was not recorded; claim a new task to go on"
        )

    if time_spent_ms is None:
        time_spent_ms = max(0, int((now - assignment.claimed_at).total_seconds() * 1000))
    counted = _counts(session, assignment, now)

    savepoint = session.begin_nested()
    label = write(task, assignment)
    label.time_spent_ms = time_spent_ms
    label.idempotency_key = idempotency_key
    label.created_at = now
    session.add(label)
    try:
        session.flush()
    except Exception as exc:  # a racing double submit committed first
        savepoint.rollback()
        if _is_unique_violation(exc):
            return _existing(session, model, task_id, user_id)
        raise
    accepted = session.execute(
        _ACCEPT_LABEL,
        _bind(
            session,
            {"task_id": task_id, "epoch": assignment.lease_epoch if counted else -1, "now": now},
        ),
    ).scalar()
    if accepted is None:
        savepoint.rollback()
        session.refresh(assignment)
        assignment.status = AssignmentStatus.expired
        assignment.finished_at = now
        save_draft(session, task_id=task_id, user_id=user_id, payload=payload)
        return SubmitResult(
            accepted=False,
            message=(
                "Your lease on this item had expired and it got all its labels from others "
                "meanwhile, so this answer was not counted. It is kept as your draft."
            ),
            draft=payload,
        )
    savepoint.commit()
    assignment.status = AssignmentStatus.submitted
    assignment.finished_at = now
    session.execute(delete(Draft).where(Draft.task_id == task_id, Draft.user_id == user_id))
    session.flush()
    return SubmitResult(accepted=True, label=label)


def _existing(session: Session, model, task_id: int, user_id: int) -> SubmitResult:
    label = session.scalar(select(model).where(model.task_id == task_id, model.user_id == user_id))
    if label is None:
        raise Conflict("this task was already submitted with another kind of label")
    return SubmitResult(accepted=True, label=label, duplicate=True)


def _is_unique_violation(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    if not isinstance(exc, IntegrityError):
        return False
    message = str(exc.orig).lower()
    return "unique" in message or "duplicate key" in message
