"""What a running trainer writes: its run record, per-step metrics, and its checkpoint.

    with Session.begin() as s:                       # the trainer owns each transaction
        run = start_run(s, kind="sft", snapshot_id=3, config={...}, created_by=user.id)
    with Session.begin() as s:
        log_metrics(s, run_id, step=10, values={"loss": 0.7, "grad_norm": 1.2})
    directory = write_checkpoint_dir("sft-run5", save)   # temp dir, fsync, rename, marker
    with Session.begin() as s:
        register_checkpoint(s, run_id=run_id, kind="policy", directory=directory, ...)
        finish_run(s, run_id, metrics={...})

Under torchrun / accelerate launch the directory is written in two steps:
prepare_checkpoint_dir (rank 0 makes the temp dir), every rank saves into it, then
finish_checkpoint_dir (rank 0: fsync, rename, marker). Checkpoints are listed by
labeling.registry.runs.list_checkpoints and traced by labeling.registry.runs.lineage; `describe_checkpoint`
adds the run, the directory and the parent chain for `rlhf checkpoints show`.

Service functions take the session first and never commit. Like the rest of `labeling`, this
module imports neither torch nor transformers: trainers hand it plain values.

A checkpoint directory is complete when it holds the marker file COMPLETE (written last,
after the rename); `register_checkpoint` refuses a directory without it, and the loader
(training/models.py) refuses to load one. A LoRA run's directory holds the adapter
(adapter_model.safetensors + adapter_config.json, a few MB), the tokenizer, and BASE_POINTER:
the base as a spec (`default`, `checkpoint:ID`, a directory or hub id), never the base's
absolute cache path, so RLHF_HOME can move; the loader merges it in memory and
`rlhf checkpoints merge` replaces it by the full model (`storage`: adapter, full, merged). Non-finite numbers (NaN, inf) are stored as the
strings "nan", "inf", "-inf": JSON (and PostgreSQL's jsonb) has no such numbers.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling import atomic
from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import (
    Checkpoint,
    CheckpointKind,
    RunKind,
    RunMetric,
    RunStatus,
    Snapshot,
    TrainingRun,
    User,
    utcnow,
)
from labeling.registry.runs import get_run, lineage
from labeling.settings import load_settings, resolve_under

COMPLETE_MARKER = "COMPLETE"
LOG_TAIL_CHARS = 20_000
# A LoRA checkpoint: peft's two files, and ours naming the base it applies to.
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
BASE_POINTER = "rlhf_base.json"  # {"base": SPEC, "kind": "policy" | "reward"}
BASE_POINTER_MAX_BYTES = 64 * 1024


def json_safe(value: Any) -> Any:
    """Plain JSON values: non-finite floats become strings, other objects their str()."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str | int):
        return enum_value
    return str(value)


def _tail(text: str) -> str:
    return text[-LOG_TAIL_CHARS:]


# --- runs -------------------------------------------------------------------------------


def start_run(
    session: Session,
    *,
    kind: str | RunKind,
    snapshot_id: int,
    config: dict[str, Any],
    created_by: int | None,
    base_checkpoint_id: int | None = None,
    reward_checkpoint_id: int | None = None,
    run_id: int | None = None,
    host: str | None = None,
    claimed: bool = False,
) -> TrainingRun:
    """Record a run as RUNNING now. run_id: a QUEUED run (claimed by a worker) to start
    instead of a new one; with claimed=True, a run already set RUNNING by
    labeling.registry.run_queue (claim_next_run, or reopen_run for --resume): its host and start
    time stay. The snapshot's SHA-256 is pinned on the run."""
    snapshot = session.get(Snapshot, int(snapshot_id))
    if snapshot is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    now = utcnow()
    if run_id is None:
        run = TrainingRun(kind=RunKind(kind), created_by=created_by)
        session.add(run)
    else:
        run = get_run(session, run_id)
        wanted = RunStatus.running if claimed else RunStatus.queued
        if RunStatus(run.status) != wanted:
            raise Conflict(f"run {run.id} is {RunStatus(run.status).value}, not {wanted.value}")
    run.status = RunStatus.running
    run.config = json_safe(dict(config))
    run.snapshot_id = snapshot.id
    run.snapshot_sha256 = snapshot.sha256
    run.base_checkpoint_id = base_checkpoint_id
    run.reward_checkpoint_id = reward_checkpoint_id
    if not claimed:
        run.host = host or socket.gethostname()
        run.started_at = now
    run.heartbeat_at = now
    run.error = None
    session.flush()
    return run


def log_metrics(session: Session, run_id: int, *, step: int, values: dict[str, Any]) -> None:
    """Store one logging step's numbers (merged into the row if the step was logged before)
    and beat the run's heartbeat."""
    clean = json_safe({k: v for k, v in values.items() if isinstance(v, int | float)})
    row = session.get(RunMetric, (int(run_id), int(step)))
    if row is None:
        session.add(RunMetric(run_id=int(run_id), step=int(step), values=clean))
    else:
        row.values = {**dict(row.values or {}), **clean}
    session.execute(
        TrainingRun.__table__.update()
        .where(TrainingRun.id == int(run_id))
        .values(heartbeat_at=utcnow())
    )
    session.flush()


def cancel_requested(session: Session, run_id: int) -> bool:
    return bool(
        session.scalar(select(TrainingRun.cancel_requested).where(TrainingRun.id == int(run_id)))
    )


def _end(session: Session, run_id: int, status: RunStatus, **fields: Any) -> TrainingRun:
    run = get_run(session, run_id)
    if RunStatus(run.status) != RunStatus.running:
        raise Conflict(f"run {run.id} is {RunStatus(run.status).value}, not running")
    run.status = status
    run.finished_at = utcnow()
    run.heartbeat_at = run.finished_at
    for name, value in fields.items():
        setattr(run, name, value)
    session.flush()
    return run


def finish_run(
    session: Session, run_id: int, *, metrics: dict[str, Any], log_tail: str = ""
) -> TrainingRun:
    """The run SUCCEEDED; `metrics` are its summary numbers (final loss, accuracy, ...)."""
    return _end(
        session, run_id, RunStatus.succeeded, metrics=json_safe(metrics), log_tail=_tail(log_tail)
    )


def fail_run(
    session: Session,
    run_id: int,
    *,
    error: str,
    log_tail: str = "",
    metrics: dict[str, Any] | None = None,
    cancelled: bool = False,
) -> TrainingRun:
    """The run FAILED (or was CANCELLED on request); `error` says why, for a person."""
    fields: dict[str, Any] = {"error": error, "log_tail": _tail(log_tail)}
    if metrics is not None:
        fields["metrics"] = json_safe(metrics)
    status = RunStatus.cancelled if cancelled else RunStatus.failed
    return _end(session, run_id, status, **fields)


# --- checkpoint directories ----------------------------------------------------------------


def checkpoint_name(kind: str | RunKind, run_id: int, snapshot_sha256: str | None) -> str:
    name = f"{RunKind(kind).value}-run{int(run_id)}"
    return f"{name}-{snapshot_sha256[:8]}" if snapshot_sha256 else name


def prepare_checkpoint_dir(name: str) -> Path:
    """Step 1 of writing a checkpoint: an empty temporary directory beside
    $RLHF_HOME/checkpoints/NAME (which must not exist yet) for the trainer to save into."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}", name):
        raise InvalidInput(f"bad checkpoint name {name!r}")
    root = load_settings().checkpoints_dir
    root.mkdir(parents=True, exist_ok=True)
    final = resolve_under(root, name)
    if final.exists():
        raise Conflict(f"checkpoint directory {final} already exists")
    return atomic.temp_dir_beside(final)


def finish_checkpoint_dir(tmp: Path, name: str) -> Path:
    """Step 2: the files saved into `tmp` (from prepare_checkpoint_dir) are fsynced, the
    directory is renamed to checkpoints/NAME, and only then the COMPLETE marker is written
    (and fsynced). A failure removes `tmp` and leaves no directory with that name behind."""
    root = load_settings().checkpoints_dir
    tmp = Path(tmp)
    if tmp.parent.resolve() != root.resolve() or not tmp.name.startswith(f".tmp-{name}-"):
        raise InvalidInput(f"{tmp} is not a temporary directory for checkpoint {name!r}")
    try:
        final = resolve_under(root, name)
        if not any(tmp.iterdir()):
            raise InvalidInput("the trainer saved nothing into the checkpoint directory")
    except BaseException:
        atomic.discard(tmp)
        raise
    marker_text = json.dumps({"name": name, "files": sorted(p.name for p in tmp.iterdir())})
    atomic.publish(tmp, final, marker=COMPLETE_MARKER, marker_text=marker_text)
    return final


def write_checkpoint_dir(name: str, save: Callable[[Path], None]) -> Path:
    """Write a checkpoint directory atomically under $RLHF_HOME/checkpoints/NAME.

    `save(tmp)` writes the files into a temporary directory beside the target; they are
    fsynced, the directory is renamed into place, and only then the COMPLETE marker is
    written (and fsynced). A failure leaves no directory with that name behind.
    (A multi-process launch uses the two steps on their own: every rank saves into the
    temporary directory, rank 0 finishes it; see training/checkpoint.py.)
    """
    tmp = prepare_checkpoint_dir(name)
    try:
        save(tmp)
    except BaseException:
        atomic.discard(tmp)
        raise
    return finish_checkpoint_dir(tmp, name)


def is_complete(directory: Path) -> bool:
    return (Path(directory) / COMPLETE_MARKER).is_file()


def is_adapter(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def read_base_pointer(directory: Path) -> dict[str, str] | None:
    """An adapter directory's base: {"base": spec, "kind": policy|reward}, from BASE_POINTER,
    else (a peft adapter made elsewhere) from adapter_config.json's base_model_name_or_path;
    None for a directory that is no adapter. A pointer that cannot be read is refused."""
    directory = Path(directory)
    if not is_adapter(directory):
        return None
    pointer = directory / BASE_POINTER
    source = pointer if pointer.is_file() else directory / ADAPTER_CONFIG
    try:
        if source.stat().st_size > BASE_POINTER_MAX_BYTES:
            raise ValueError("too large")
        data = json.loads(source.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, UnicodeDecodeError, ValueError):
        raise InvalidInput(
            f"{source} cannot be read as JSON: the adapter's base is unknown"
        ) from None
    if source == pointer:
        base, kind = data.get("base"), data.get("kind", "policy")
    else:  # peft's config: a reward adapter is a sequence-classification one
        base = data.get("base_model_name_or_path")
        kind = "reward" if data.get("task_type") == "SEQ_CLS" else "policy"
    if not isinstance(base, str) or not base.strip() or kind not in ("policy", "reward"):
        raise InvalidInput(f"{source} names no base model for the adapter in {directory}")
    return {"base": base.strip(), "kind": kind}


def write_base_pointer(directory: Path, *, base: str, kind: str, base_model: str | None) -> None:
    """Written by the trainer beside the adapter it saved (inside the temporary directory)."""
    text = json.dumps({"base": base, "kind": kind, "base_model": base_model}, indent=1)
    (Path(directory) / BASE_POINTER).write_text(text + "\n", encoding="utf-8")


def marker_info(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(directory) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def storage_of(directory: Path) -> str | None:
    """How a checkpoint's weights are stored: "adapter" (LoRA, merged when loaded), "merged"
    (an adapter replaced by its full model by `rlhf checkpoints merge`), "full"; None when
    the directory is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    if is_adapter(directory):
        return "adapter"
    return "merged" if marker_info(directory).get("merged") else "full"


def size_of(path: Path) -> int:
    """Bytes of the files under `path` (links not followed); 0 when it is missing."""
    path = Path(path)
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def storage_info(checkpoint: Checkpoint) -> dict[str, Any]:
    """What `rlhf checkpoints list/show` add: storage, bytes on disk, the adapter's base."""
    try:
        directory = checkpoint_dir(checkpoint)
    except ValueError:
        return {"storage": None, "bytes": 0, "adapter_base": None}
    storage = storage_of(directory)
    try:
        pointer = read_base_pointer(directory) if storage == "adapter" else None
    except InvalidInput:
        pointer = None
    return {
        "storage": storage,
        "bytes": size_of(directory),
        "adapter_base": pointer["base"] if pointer else None,
    }


def checkpoint_dir(checkpoint: Checkpoint) -> Path:
    """The checkpoint's directory, resolved under the data root (RLHF_HOME)."""
    return resolve_under(load_settings().home, checkpoint.path)


def register_checkpoint(
    session: Session,
    *,
    kind: str | CheckpointKind,
    directory: Path,
    run_id: int | None,
    base_model: str | None,
    parent_id: int | None = None,
    config: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    name: str | None = None,
) -> Checkpoint:
    """Record a complete checkpoint directory with its lineage: the run that made it, the
    snapshot (id and SHA-256) that run trained on, the parent checkpoint, the config."""
    home = load_settings().home
    directory = Path(directory).resolve()
    relative = directory.relative_to(home) if home in directory.parents else None
    if relative is None:
        raise InvalidInput(f"checkpoint directory {directory} is not under the data root {home}")
    if not is_complete(directory):
        raise InvalidInput(f"checkpoint directory {directory} has no {COMPLETE_MARKER} marker")
    snapshot_id = snapshot_sha256 = None
    if run_id is not None:
        run = get_run(session, run_id)
        snapshot_id, snapshot_sha256 = run.snapshot_id, run.snapshot_sha256
        if parent_id is None:
            parent_id = run.base_checkpoint_id
    if parent_id is not None and session.get(Checkpoint, int(parent_id)) is None:
        raise NotFound(f"no checkpoint with id {parent_id} (the parent)")
    checkpoint = Checkpoint(
        kind=CheckpointKind(kind),
        name=name or directory.name,
        path=str(relative),
        base_model=base_model,
        parent_id=parent_id,
        run_id=run_id,
        snapshot_id=snapshot_id,
        snapshot_sha256=snapshot_sha256,
        config=json_safe(dict(config or {})),
        evaluation=json_safe(dict(evaluation or {})),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def get_checkpoint(session: Session, checkpoint_id: int) -> Checkpoint:
    checkpoint = session.get(Checkpoint, int(checkpoint_id))
    if checkpoint is None:
        raise NotFound(f"no checkpoint with id {checkpoint_id}")
    return checkpoint


def describe_checkpoint(session: Session, checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything about one checkpoint, with its run and its chain of parents (the same
    chain as labeling.registry.runs.lineage; checkpoints are listed by labeling.registry.runs.list_checkpoints)."""
    run = session.get(TrainingRun, checkpoint.run_id) if checkpoint.run_id else None
    creator = (
        session.scalar(select(User.name).where(User.id == run.created_by))
        if run is not None and run.created_by is not None
        else None
    )
    directory = checkpoint_dir(checkpoint)
    return {
        "id": checkpoint.id,
        "kind": CheckpointKind(checkpoint.kind).value,
        "name": checkpoint.name,
        "note": checkpoint.note,
        "path": str(directory),
        "complete": is_complete(directory),
        "base_model": checkpoint.base_model,
        "parent_id": checkpoint.parent_id,
        "parents": lineage(session, checkpoint.id)[1:],  # parent, grandparent, ...
        "run_id": checkpoint.run_id,
        "run": None
        if run is None
        else {
            "kind": RunKind(run.kind).value,
            "status": RunStatus(run.status).value,
            "created_by": creator,
            "host": run.host,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "metrics": dict(run.metrics or {}),
        },
        "snapshot_id": checkpoint.snapshot_id,
        "snapshot_sha256": checkpoint.snapshot_sha256,
        "config": dict(checkpoint.config or {}),
        "evaluation": dict(checkpoint.evaluation or {}),
        "created_at": checkpoint.created_at,
        **storage_info(checkpoint),
    }
