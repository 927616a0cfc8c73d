"""Training runs and checkpoints: what the UI and the CLI record; a worker runs them later.

    run = queue_training_run(s, kind="dpo", snapshot_id=3, config={"learning_rate": 5e-7},
                             base_checkpoint_id=1, created_by=user.id)   # the caller commits

A run is born QUEUED with everything it needs pinned: the snapshot (and its SHA-256, so a
worker can check the files it reads), the checkpoints it starts from, and a flat config of
JSON scalars whose keys are TRL's own config field names (learning_rate, max_steps, ...).

Which snapshot fits which run:
    sft      an sft snapshot (messages)
    reward   a preference snapshot (chosen / rejected)
    dpo      a preference snapshot; needs a base (policy) checkpoint
    rl       any snapshot (only its prompts are used); needs a base (policy) checkpoint and
             a reward checkpoint

Cancelling: a queued run is cancelled at once; a running one gets cancel_requested=True and
its worker stops at the next step it checks.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from labeling.accounts.users import require_role
from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import (
    Checkpoint,
    CheckpointKind,
    Project,
    Role,
    RunKind,
    RunMetric,
    RunStatus,
    Snapshot,
    SnapshotKind,
    TrainingRun,
    User,
    utcnow,
)

#: Snapshot kinds each run kind can train on.
SNAPSHOT_KINDS: dict[RunKind, tuple[SnapshotKind, ...]] = {
    RunKind.sft: (SnapshotKind.sft,),
    RunKind.reward: (SnapshotKind.preference,),
    RunKind.dpo: (SnapshotKind.preference,),
    RunKind.rl: (SnapshotKind.preference, SnapshotKind.kto, SnapshotKind.sft),
}
NEEDS_BASE = (RunKind.dpo, RunKind.rl)
NEEDS_REWARD = (RunKind.rl,)
MAX_CONFIG_KEYS = 100
MAX_CONFIG_STRING = 1000
LIVE = (RunStatus.queued, RunStatus.running)


def _kind(kind: str | RunKind) -> RunKind:
    try:
        return RunKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown run kind {kind!r}: use one of {', '.join(k.value for k in RunKind)}"
        ) from None


def check_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """A flat dict of TRL config fields whose values are JSON scalars (finite numbers)."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidInput("config must be a mapping of field names to values")
    if len(config) > MAX_CONFIG_KEYS:
        raise InvalidInput(f"config has more than {MAX_CONFIG_KEYS} fields")
    clean: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise InvalidInput(f"config field {key!r}: names are identifiers like learning_rate")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"config field {key}: {value} is not a finite number")
        if isinstance(value, str) and len(value) > MAX_CONFIG_STRING:
            raise InvalidInput(f"config field {key}: longer than {MAX_CONFIG_STRING} characters")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"config field {key}: values must be strings, numbers, booleans or null, "
                f"not {type(value).__name__}"
            )
        clean[key] = value
    return clean


def _checkpoint(
    session: Session, checkpoint_id: int, kind: CheckpointKind, role: str
) -> Checkpoint:
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None:
        raise NotFound(f"no checkpoint with id {checkpoint_id} (the {role} checkpoint)")
    if CheckpointKind(checkpoint.kind) != kind:
        raise InvalidInput(
            f"checkpoint {checkpoint_id} is a {CheckpointKind(checkpoint.kind).value} "
            f"checkpoint; the {role} checkpoint must be a {kind.value} checkpoint"
        )
    return checkpoint


def queue_training_run(
    session: Session,
    *,
    kind: str | RunKind,
    snapshot_id: int,
    config: dict[str, Any] | None,
    base_checkpoint_id: int | None = None,
    reward_checkpoint_id: int | None = None,
    created_by: int,
) -> TrainingRun:
    """Record a QUEUED run after checking that its inputs fit together."""
    require_role(session, int(created_by), Role.admin, Role.engineer)
    kind = _kind(kind)
    config = check_config(config)
    if snapshot_id is None:
        raise InvalidInput("a training run needs a snapshot")
    snapshot = session.get(Snapshot, int(snapshot_id))
    if snapshot is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    snapshot_kind = SnapshotKind(snapshot.kind)
    fitting = SNAPSHOT_KINDS[kind]
    if snapshot_kind not in fitting:
        raise InvalidInput(
            f"snapshot {snapshot.id} is a {snapshot_kind.value} snapshot; a {kind.value} run "
            f"trains on {' or '.join(k.value for k in fitting)} snapshots"
        )
    if base_checkpoint_id is not None:
        _checkpoint(session, int(base_checkpoint_id), CheckpointKind.policy, "base")
    elif kind in NEEDS_BASE:
        raise InvalidInput(f"a {kind.value} run needs a base (policy) checkpoint to start from")
    if reward_checkpoint_id is not None:
        if kind not in NEEDS_REWARD:
            raise InvalidInput(f"a {kind.value} run takes no reward checkpoint")
        _checkpoint(session, int(reward_checkpoint_id), CheckpointKind.reward, "reward")
    elif kind in NEEDS_REWARD and "verifiable" not in str((config or {}).get("reward") or ""):
        raise InvalidInput(
            f"a {kind.value} run needs a reward checkpoint or the verifier (--reward verifiable)"
        )
    run = TrainingRun(
        kind=kind,
        status=RunStatus.queued,
        config=config,
        snapshot_id=snapshot.id,
        snapshot_sha256=snapshot.sha256,
        base_checkpoint_id=base_checkpoint_id,
        reward_checkpoint_id=reward_checkpoint_id,
        created_by=int(created_by),
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, int(run_id))
    if run is None:
        raise NotFound(f"no training run with id {run_id}")
    return run


def list_runs(
    session: Session, *, status: str | RunStatus | None = None, limit: int = 500
) -> list[TrainingRun]:
    """Runs, newest first (at most `limit`)."""
    query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)
    if status is not None:
        try:
            status = RunStatus(status)
        except ValueError:
            raise InvalidInput(f"unknown run status {status!r}") from None
        query = query.where(TrainingRun.status == status)
    return list(session.scalars(query))


def describe_runs(
    session: Session, runs: list[TrainingRun], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Plain rows for tables: the run's columns plus its project and creator names, and for
    running runs the heartbeat's age: `stale` once STALE_BEATS beats were missed (the process
    most likely died; the worker's reaper marks it failed after STALE_AFTER_SECONDS)."""
    from labeling.registry.run_queue import HEARTBEAT_SECONDS, STALE_BEATS

    now = now or utcnow()
    snapshot_ids = {r.snapshot_id for r in runs if r.snapshot_id is not None}
    user_ids = {r.created_by for r in runs if r.created_by is not None}
    projects = dict(
        session.execute(
            select(Snapshot.id, Project.name)
            .join(Project, Project.id == Snapshot.project_id)
            .where(Snapshot.id.in_(snapshot_ids))
        ).all()
        if snapshot_ids
        else []
    )
    names = dict(
        session.execute(select(User.id, User.name).where(User.id.in_(user_ids))).all()
        if user_ids
        else []
    )
    return [
        {
            "id": r.id,
            "kind": RunKind(r.kind).value,
            "status": RunStatus(r.status).value,
            "cancel_requested": bool(r.cancel_requested),
            "snapshot_id": r.snapshot_id,
            "project": projects.get(r.snapshot_id),
            "base_checkpoint_id": r.base_checkpoint_id,
            "reward_checkpoint_id": r.reward_checkpoint_id,
            "created_by": names.get(r.created_by),
            "created_at": r.created_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "host": r.host,
            "error": r.error,
            "config": dict(r.config or {}),
            "heartbeat_age_s": (age := _age(r, now)),
            "stale": age is not None and age > STALE_BEATS * HEARTBEAT_SECONDS,
        }
        for r in runs
    ]


def _age(run: TrainingRun, now: datetime) -> float | None:
    """Seconds since a RUNNING run's heartbeat (None for runs in any other state)."""
    if RunStatus(run.status) != RunStatus.running or run.heartbeat_at is None:
        return None
    beat = run.heartbeat_at if run.heartbeat_at.tzinfo else run.heartbeat_at.replace(tzinfo=UTC)
    return max(0.0, (now - beat).total_seconds())


def cancel_run(session: Session, run_id: int) -> TrainingRun:
    """Queued: cancelled now. Running: cancel_requested, the worker stops it. Else Conflict."""
    run = get_run(session, run_id)
    status = RunStatus(run.status)
    if status == RunStatus.queued:
        run.status = RunStatus.cancelled
        run.finished_at = utcnow()
    elif status == RunStatus.running:
        run.cancel_requested = True
    else:
        raise Conflict(
            f"run {run.id} is {status.value}: only queued or running runs can be cancelled"
        )
    session.flush()
    return run


def run_metrics(session: Session, run_id: int) -> list[dict[str, Any]]:
    """[{"step": 10, "loss": 0.7, ...}, ...] in step order: one row per logging step."""
    rows = session.execute(
        select(RunMetric.step, RunMetric.values)
        .where(RunMetric.run_id == int(run_id))
        .order_by(RunMetric.step)
    ).all()
    return [{**{k: v for k, v in (values or {}).items() if k != "step"}, "step": step}
            for step, values in rows]  # fmt: skip


def list_checkpoints(
    session: Session, *, kind: str | CheckpointKind | None = None
) -> list[dict[str, Any]]:
    """Checkpoints, newest first, with their lineage: parent, the run that made them, and the
    snapshot (and project) that run trained on, plus their evaluation results. The one
    listing: the UI pages and `rlhf checkpoints list` both show these rows."""
    parent = aliased(Checkpoint)
    query = (
        select(
            Checkpoint,
            parent.name,
            TrainingRun.kind,
            Snapshot.kind,
            Project.name,
        )
        .outerjoin(parent, parent.id == Checkpoint.parent_id)
        .outerjoin(TrainingRun, TrainingRun.id == Checkpoint.run_id)
        .outerjoin(Snapshot, Snapshot.id == Checkpoint.snapshot_id)
        .outerjoin(Project, Project.id == Snapshot.project_id)
        .order_by(Checkpoint.id.desc())
    )
    if kind is not None:
        try:
            kind = CheckpointKind(kind)
        except ValueError:
            raise InvalidInput(f"unknown checkpoint kind {kind!r}") from None
        query = query.where(Checkpoint.kind == kind)
    out = []
    for ck, parent_name, run_kind, snapshot_kind, project in session.execute(query).all():
        out.append(
            {
                "id": ck.id,
                "kind": CheckpointKind(ck.kind).value,
                "name": ck.name,
                "note": ck.note,
                "base_model": ck.base_model,
                "parent_id": ck.parent_id,
                "parent": parent_name,
                "run_id": ck.run_id,
                "run_kind": RunKind(run_kind).value if run_kind is not None else None,
                "snapshot_id": ck.snapshot_id,
                "snapshot_kind": (
                    SnapshotKind(snapshot_kind).value if snapshot_kind is not None else None
                ),
                "snapshot_sha256": ck.snapshot_sha256,
                "project": project,
                "evaluation": dict(ck.evaluation or {}),
                "path": ck.path,
                "created_at": ck.created_at,
            }
        )
    return out


def lineage(session: Session, checkpoint_id: int) -> list[dict[str, Any]]:
    """The chain from this checkpoint back to its root: [self, parent, grandparent, ...]."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: int | None = int(checkpoint_id)
    while current is not None and current not in seen:
        seen.add(current)
        ck = session.get(Checkpoint, current)
        if ck is None:
            if not chain:
                raise NotFound(f"no checkpoint with id {checkpoint_id}")
            break
        chain.append(
            {
                "id": ck.id,
                "kind": CheckpointKind(ck.kind).value,
                "name": ck.name,
                "run_id": ck.run_id,
                "snapshot_id": ck.snapshot_id,
                "snapshot_sha256": ck.snapshot_sha256,
            }
        )
        current = ck.parent_id
    return chain
