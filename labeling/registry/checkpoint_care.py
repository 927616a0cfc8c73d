"""Looking after registered checkpoints: rename, note, delete, merge, and collect what nothing
uses.

    rlhf checkpoints rename 7 "sft, 3 epochs"     rlhf checkpoints note 7 "best on math"
    rlhf checkpoints delete 7                     rlhf checkpoints gc [--dry-run]
    rlhf checkpoints merge 7

Delete refuses a checkpoint that the record still needs: a child checkpoint (lineage), an
adapter checkpoint stored on it (its base pointer names it), a run that started from it or
used it as its reward model, or answers it gave (arenas, generated responses, the
leaderboard's battles). The row goes in the caller's transaction; its
directory is removed only after that commits (`remove_dirs`), and only when it lies under
$RLHF_HOME/checkpoints/ (the default model's cache under models/, registered by
`rlhf checkpoints add --model default`, stays).

gc frees disk that no record points at: directories under checkpoints/ that no checkpoint
row names (a crash between rename and registration, rows deleted by hand), and the trainer's
resume points (runs/run-N/checkpoint-*) of runs that can never resume: succeeded or
cancelled ones (a failed run keeps its resume points: `--resume` reopens it). A folder an
adapter's base pointer names by path is no orphan. Temporary `.tmp-*` directories belong to
labeling/tempdirs.py (removed by age at the start of every writing command).

Merge replaces a LoRA checkpoint's adapter folder by its full model, in place: the same row,
the same path. The weights are written by the caller's `write(source, tmp)` (torch lives in
training/checkpoint.py, not here) into a temporary folder beside it, which is fsynced, given
its COMPLETE marker (saying it was merged) and swapped with the adapter folder in one step
(renameat2 RENAME_EXCHANGE), so the checkpoint is the adapter or the full model at every
moment; then the adapter is removed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labeling import atomic
from labeling.bounds import check_name
from labeling.errors import Conflict, InvalidInput
from labeling.kinds import CheckpointKind, RunStatus
from labeling.models import Checkpoint, Response, TrainingRun, utcnow
from labeling.registry import training_records
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
    stored_on = [i for i in adapters_on(session, cid) if i not in children]
    out = []
    if children:
        out.append(f"checkpoints {_ids(children)} descend from it")
    if stored_on:
        out.append(
            f"adapter checkpoints {_ids(stored_on)} are stored on it as their base "
            "(rlhf checkpoints merge ID stores one whole)"
        )
    if runs:
        out.append(f"runs {_ids(runs)} started from it or used it as their reward model")
    if answers:
        out.append(f"{answers} answer{'s' if answers != 1 else ''} it gave (projects, arenas)")
    return out


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _pointed_at(spec: str) -> tuple[int | None, Path | None]:
    """What an adapter's base spec names: a checkpoint id, or a local directory."""
    spec = spec.removeprefix("policy:")
    raw = spec.removeprefix("checkpoint:")
    if raw.isdigit() and (raw != spec or spec.isdigit()):
        return int(raw), None
    path = Path(spec).expanduser()
    return (None, path.resolve()) if path.is_absolute() or spec.startswith(".") else (None, None)


def _base_pointers(session: Session):
    """(checkpoint, what its adapter's base pointer names) for every adapter checkpoint."""
    home = load_settings().home
    for ck in session.scalars(select(Checkpoint).order_by(Checkpoint.id)):
        try:
            pointer = training_records.read_base_pointer(resolve_under(home, ck.path))
        except (ValueError, OSError, InvalidInput):
            continue
        if pointer is not None:
            yield ck, _pointed_at(pointer["base"])


def adapters_on(session: Session, checkpoint_id: int) -> list[int]:
    """Adapter checkpoints whose base pointer names this checkpoint (by id or by its folder):
    loading them needs it. Usually its children already; this also covers a base given as
    a folder path."""
    target = get_checkpoint(session, checkpoint_id)
    try:
        folder = training_records.checkpoint_dir(target)
    except ValueError:
        folder = None
    return [
        ck.id
        for ck, (ref_id, ref_path) in _base_pointers(session)
        if ck.id != target.id and (ref_id == target.id or (folder and ref_path == folder))
    ]


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
    # an adapter whose base was given as a folder path needs that folder, row or not
    named |= {ref_path for _, (_, ref_path) in _base_pointers(session) if ref_path is not None}
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
    return training_records.size_of(path)


def remove_dirs(paths: list[Path]) -> dict[Path, int]:
    """Remove the directories (after the transaction that let go of them committed);
    returns the bytes each one freed."""
    freed = {}
    for path in paths:
        if path.is_dir():
            freed[path] = size_of(path)
            shutil.rmtree(path)
    return freed


# --- merge: an adapter checkpoint stored whole --------------------------------------------


@dataclass
class MergePlan:
    checkpoint_id: int
    name: str
    kind: str  # policy or reward: how the caller loads it
    directory: Path
    storage: str | None  # "adapter": there is work to do; "full" / "merged": none
    base: str | None  # the adapter's base spec


def merge_plan(session: Session, checkpoint_id: int) -> MergePlan:
    """What `rlhf checkpoints merge` will do, checked inside the caller's transaction; the
    weights are written after it (replace_with_merged) so no transaction waits on them."""
    checkpoint = get_checkpoint(session, checkpoint_id)
    directory = training_records.checkpoint_dir(checkpoint)
    if not training_records.is_complete(directory):
        raise InvalidInput(
            f"checkpoint {checkpoint.id}'s directory {directory} is missing or incomplete "
            f"(no {training_records.COMPLETE_MARKER} marker): nothing to merge"
        )
    storage = training_records.storage_of(directory)
    base = None
    if storage == "adapter":
        if own_directory(checkpoint) is None:
            raise InvalidInput(
                f"checkpoint {checkpoint.id}'s files are not under $RLHF_HOME/checkpoints: "
                "they are left as they are"
            )
        base = training_records.read_base_pointer(directory)["base"]
    return MergePlan(
        checkpoint.id, checkpoint.name, CheckpointKind(checkpoint.kind).value, directory,
        storage, base,
    )  # fmt: skip


def replace_with_merged(plan: MergePlan, write: Callable[[Path, Path], None]) -> dict[str, Any]:
    """Swap the adapter folder for its full model: write(adapter dir, empty tmp dir) saves
    the full model (safetensors) and tokenizer into tmp. Returns what happened; a full
    checkpoint is left alone (merged: False). On any failure the adapter stays as it was."""
    directory = plan.directory
    out: dict[str, Any] = {
        "checkpoint_id": plan.checkpoint_id, "merged": False, "storage": plan.storage,
        "path": str(directory), "bytes_before": training_records.size_of(directory),
    }  # fmt: skip
    if plan.storage != "adapter":
        return {**out, "bytes_after": out["bytes_before"]}
    tmp = atomic.temp_dir_beside(directory)
    try:
        write(directory, tmp)
        weights = sorted(p.name for p in tmp.glob("*.safetensors"))
        if training_records.is_adapter(tmp) or not weights:
            raise InvalidInput("the merge wrote no full safetensors model: nothing was changed")
        if not training_records.is_adapter(directory):  # merged by someone else meanwhile
            atomic.discard(tmp)
            return {**out, "storage": training_records.storage_of(directory),
                    "bytes_after": training_records.size_of(directory)}  # fmt: skip
        marker = {
            "name": directory.name,
            "files": sorted(p.name for p in tmp.iterdir()),
            "merged": {"from": "adapter", "base": plan.base, "at": utcnow().isoformat()},
        }
        (tmp / training_records.COMPLETE_MARKER).write_text(json.dumps(marker), encoding="utf-8")
        atomic.fsync_tree(tmp)
        exchange_dirs(tmp, directory)
        atomic.fsync_path(directory.parent)
    except BaseException:
        atomic.discard(tmp)
        raise
    atomic.discard(tmp)  # it holds the adapter now
    return {**out, "merged": True, "storage": "merged",
            "bytes_after": training_records.size_of(directory)}  # fmt: skip


AT_FDCWD, RENAME_EXCHANGE = -100, 2  # Linux <fcntl.h>, <linux/fs.h>


def exchange_dirs(a: Path, b: Path) -> None:
    """Swap two directories' names in one step (Linux renameat2 with RENAME_EXCHANGE): each
    path names a whole directory at every moment. Where that call is missing (not Linux,
    an old kernel or file system), two renames: a crash between them leaves `b` missing and
    its old content at a `.tmp-` name beside it."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                              ctypes.c_uint]  # fmt: skip
        renameat2.restype = ctypes.c_int
        if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(b))
    aside = b.with_name(f"{TEMP_PREFIX}{b.name}-old-{os.getpid()}")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
