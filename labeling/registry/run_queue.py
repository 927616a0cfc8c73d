"""Claiming queued training runs: one statement, atomic in the database.

    with Session.begin() as s:                     # the worker owns the transaction
        run = claim_next_run(s, host="gpu-3", kinds=["sft", "reward"])   # or None

The claim is a single `UPDATE ... RETURNING`:

    UPDATE training_runs SET status='running', host=:host, started_at=:now, heartbeat_at=:now
     WHERE status = 'queued' AND id = (SELECT id FROM training_runs WHERE status='queued'
                                        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id

On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several workers on several hosts claim at once:
each skips the rows the others hold, so no run is claimed twice and nobody waits. SQLite has
no row locks (SQLAlchemy leaves the clause out): the transaction starts with BEGIN IMMEDIATE
(labeling/db.py), which takes the database's write lock first, so claims run one at a time.

A run whose process died keeps status RUNNING with a heartbeat that stops moving (the
trainer beats at every logging step). `reap_stale_runs` marks such runs FAILED (leases
expire by time, no timer thread); `reopen_run` puts a failed or stale run back to RUNNING
for `rlhf train ... --resume RUN_ID`, which continues from its last trainer checkpoint.
Service functions take the session first and never commit.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import RunKind, RunStatus, TrainingRun, utcnow

#: A running run whose heartbeat is older than this is presumed dead (for --resume).
STALE_AFTER_SECONDS = 600
HEARTBEAT_SECONDS = 30  # a running recipe beats this often (training/recorder.py Heartbeat)
STALE_BEATS = 4  # missed beats after which the runs page calls a running run stale


def _kinds(kinds: Iterable[str | RunKind] | None) -> list[RunKind] | None:
    if kinds is None:
        return None
    out = []
    for kind in kinds:
        try:
            out.append(RunKind(kind))
        except ValueError:
            raise InvalidInput(
                f"unknown run kind {kind!r}: use {', '.join(k.value for k in RunKind)}"
            ) from None
    return out


def claim_next_run(
    session: Session,
    *,
    host: str | None = None,
    kinds: Iterable[str | RunKind] | None = None,
) -> TrainingRun | None:
    """Claim the oldest QUEUED run (of `kinds`, if given): it becomes RUNNING on `host`.
    Returns the run, or None when nothing is queued. Safe with many concurrent claimers."""
    kinds = _kinds(kinds)
    oldest = select(TrainingRun.id).where(TrainingRun.status == RunStatus.queued)
    if kinds:
        oldest = oldest.where(TrainingRun.kind.in_(kinds))
    oldest = oldest.order_by(TrainingRun.id).limit(1).with_for_update(skip_locked=True)
    now = utcnow()
    claimed = session.execute(
        update(TrainingRun)
        .where(TrainingRun.status == RunStatus.queued)
        .where(TrainingRun.id == oldest.scalar_subquery())
        .values(
            status=RunStatus.running,
            host=host or socket.gethostname(),
            started_at=now,
            heartbeat_at=now,
            error=None,
        )
        .returning(TrainingRun.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        return None
    run = session.get(TrainingRun, claimed, populate_existing=True)
    return run


def heartbeat(session: Session, run_id: int) -> None:
    session.execute(
        update(TrainingRun).where(TrainingRun.id == int(run_id)).values(heartbeat_at=utcnow())
    )


def _stale(cutoff):
    return (TrainingRun.status == RunStatus.running) & or_(
        TrainingRun.heartbeat_at.is_(None), TrainingRun.heartbeat_at < cutoff
    )


def reap_stale_runs(session: Session, *, stale_after: float = STALE_AFTER_SECONDS) -> list[int]:
    """Mark RUNNING runs whose heartbeat is older than `stale_after` seconds FAILED (their
    process is gone); returns their ids. They can be continued with --resume."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    now = utcnow()
    rows = session.execute(
        update(TrainingRun)
        .where(_stale(cutoff))
        .values(
            status=RunStatus.failed,
            finished_at=now,
            error=f"no heartbeat for {stale_after:g} s: the process died; "
            "continue it with `rlhf train KIND --resume ID`",
        )
        .returning(TrainingRun.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(r[0] for r in rows)


def reopen_run(
    session: Session,
    run_id: int,
    *,
    host: str | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
) -> TrainingRun:
    """Put a FAILED run, or a RUNNING one whose heartbeat is stale (its process was killed),
    back to RUNNING on `host`, atomically (two resumes of one run: one wins, one Conflict).
    Cancelled and succeeded runs stay as they are."""
    run = session.get(TrainingRun, int(run_id))
    if run is None:
        raise NotFound(f"no training run with id {run_id}")
    cutoff = utcnow() - timedelta(seconds=stale_after)
    now = utcnow()
    reopened = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == int(run_id))
        .where(or_(TrainingRun.status == RunStatus.failed, _stale(cutoff)))
        .values(
            status=RunStatus.running,
            host=host or socket.gethostname(),
            heartbeat_at=now,
            finished_at=None,
            error=None,
            cancel_requested=False,
        )
        .returning(TrainingRun.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if reopened is None:
        session.refresh(run)
        status = RunStatus(run.status)
        if status == RunStatus.running:
            raise Conflict(
                f"run {run.id} is running on {run.host} (heartbeat {run.heartbeat_at}); a run "
                f"is resumable once failed or {stale_after:g} s without a heartbeat"
            )
        raise Conflict(f"run {run.id} is {status.value}: only failed or dead runs resume")
    return session.get(TrainingRun, int(run_id), populate_existing=True)
