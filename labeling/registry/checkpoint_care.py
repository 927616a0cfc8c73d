"""Looking after registered checkpoints: rename, note, delete, and collect what nothing uses.

    rlhf checkpoints rename 7 "sft, 3 epochs"     rlhf checkpoints note 7 "best on math"
    rlhf checkpoints delete 7                     rlhf checkpoints gc [--dry-run]

Delete refuses a checkpoint that the record still needs: a child checkpoint (lineage), a run
that started from it or used it as its reward model, or answers it gave (arenas, generated
responses, the leaderboard's battles). The row goes in the caller's transaction; its
directory is removed only after that commits (`remove_dirs`), and only when it lies under
$RLHF_HOME/checkpoints/ (the default model's cache under models/, registered by
`rlhf checkpoints add --model default`, stays).

gc frees disk that no record points at: directories under checkpoints/ that no checkpoint
row names (a crash between rename and registration, rows deleted by hand), and the trainer's
resume points (runs/run-N/checkpoint-*) of runs that can never resume: succeeded or
cancelled ones (a failed run keeps its resume points: `--resume` reopens it). Temporary `.tmp-*` directories belong to
labeling/tempdirs.py (removed by age at the start of every writing command).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labeling.bounds import check_name
from labeling.errors import Conflict, InvalidInput
from labeling.kinds import RunStatus
from labeling.models import Checkpoint, Response, TrainingRun
from labeling.registry.training_records import get_checkpoint
from labeling.settings import load_settings, resolve_under
from labeling.tempdirs import TEMP_PREFIX

NOTE_MAX_CHARS = 4000
NOT_RESUMABLE = (RunStatus.succeeded, RunStatus.cancelled)


def rename_checkpoint(session: Session, checkpoint_id: int, name: str) -> Checkpoint:
    """The name people see; the directory keeps its own (paths in runs' logs stay true)."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    checkpoint.name = check_name(name, "checkpoint name", max_chars=200)
    session.flush()
    return checkpoint


def note_checkpoint(session: Session, checkpoint_id: int, note: str) -> Checkpoint:
    """Set the checkpoint's note; an empty note clears it."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    note = (note or "").strip()
    if len(note) > NOTE_MAX_CHARS:
        raise InvalidInput(f"a note is at most {NOTE_MAX_CHARS} characters (got {len(note)})")
    checkpoint.note = note or None
    session.flush()
    return checkpoint


def needed_by(session: Session, checkpoint_id: int) -> list[str]:
    """What in the record still needs this checkpoint, in words (empty: nothing)."""
    cid = int(checkpoint_id)
    children = session.scalars(
        select(Checkpoint.id).where(Checkpoint.parent_id == cid).order_by(Checkpoint.id)
    ).all()
    runs = session.scalars(
        select(TrainingRun.id)
        .where(or_(TrainingRun.base_checkpoint_id == cid, TrainingRun.reward_checkpoint_id == cid))
        .order_by(TrainingRun.id)
    ).all()
    answers = session.scalar(
        select(func.count()).select_from(Response).where(Response.checkpoint_id == cid)
    )
    out = []
    if children:
        out.append(f"checkpoints {_ids(children)} descend from it")
    if runs:
        out.append(f"runs {_ids(runs)} started from it or used it as their reward model")
    if answers:
        out.append(f"{answers} answer{'s' if answers != 1 else ''} it gave (projects, arenas)")
    return out


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def own_directory(checkpoint: Checkpoint) -> Path | None:
    """The checkpoint's directory when it is ours to remove (under checkpoints/), else None."""
    root = load_settings().checkpoints_dir.resolve()
    try:
        directory = resolve_under(load_settings().home, checkpoint.path)
    except ValueError:
        return None
    return directory if directory.parent == root else None


def delete_checkpoint(session: Session, checkpoint_id: int) -> Path | None:
    """Delete the row (refused while anything needs it); returns the directory for the
    caller to remove once the transaction has committed (None: not ours to remove)."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    needs = needed_by(session, checkpoint.id)
    if needs:
        raise Conflict(
            f"checkpoint {checkpoint.id} ({checkpoint.name}) is still needed: "
            + "; ".join(needs)
            + ". Nothing was deleted"
        )
    directory = own_directory(checkpoint)
    session.delete(checkpoint)
    session.flush()
    return directory


@dataclass
class Garbage:
    orphan_dirs: list[Path]  # under checkpoints/, named by no checkpoint row
    resume_points: list[Path]  # runs/run-N/checkpoint-* of succeeded or cancelled runs

    @property
    def paths(self) -> list[Path]:
        return self.orphan_dirs + self.resume_points


def find_garbage(session: Session) -> Garbage:
    settings = load_settings()
    named = set()
    for path in session.scalars(select(Checkpoint.path)):
        try:
            named.add(resolve_under(settings.home, path))
        except ValueError:
            continue
    orphans = []
    if settings.checkpoints_dir.is_dir():
        for entry in sorted(settings.checkpoints_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith(TEMP_PREFIX):
                if entry.resolve() not in named:
                    orphans.append(entry)
    done = set(session.scalars(select(TrainingRun.id).where(TrainingRun.status.in_(NOT_RESUMABLE))))
    points = []
    runs_dir = settings.home / "runs"
    if runs_dir.is_dir():
        for run in sorted(runs_dir.glob("run-*")):
            run_id = run.name.removeprefix("run-")
            if run_id.isdigit() and int(run_id) in done:
                points += sorted(p for p in run.glob("checkpoint-*") if p.is_dir())
    return Garbage(orphans, points)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_dirs(paths: list[Path]) -> dict[Path, int]:
    """Remove the directories (after the transaction that let go of them committed);
    returns the bytes each one freed."""
    freed = {}
    for path in paths:
        if path.is_dir():
            freed[path] = size_of(path)
            shutil.rmtree(path)
    return freed
