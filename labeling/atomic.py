"""Directories that appear whole or not at all: snapshots, checkpoints, the model cache.

Files are written into a temporary directory beside the target (`.tmp-NAME-*`, which
labeling/tempdirs.py removes if a killed writer leaves one), every file and the directory
are fsynced, the directory is renamed into place and the parent fsynced; an optional marker
file is written (and fsynced) only after the rename, so a directory with its marker is
complete even across a power loss.

    tmp = temp_dir_beside(final)
    try:
        write_files(tmp)
    except BaseException:
        discard(tmp)
        raise
    publish(tmp, final, marker="COMPLETE", marker_text="{}")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from labeling.errors import Conflict


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's entry list: needed after a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def temp_dir_beside(final: Path) -> Path:
    """An empty temporary directory in final's parent (created if need be)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))


def discard(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def publish(
    tmp: Path, final: Path, *, marker: str | None = None, marker_text: str = "",
    if_exists: str = "refuse",
) -> bool:  # fmt: skip
    """fsync `tmp`, rename it to `final`, fsync the parent, then write `marker` (if any).

    If `final` exists: if_exists="refuse" raises Conflict, "keep" returns False (another
    writer got there first with the same content). Either way, and on any failure, `tmp` is
    removed; True when `final` is now ours."""
    try:
        if final.exists():
            if if_exists == "keep":
                discard(tmp)
                return False
            raise Conflict(f"{final} already exists")
        fsync_tree(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if if_exists == "keep" and final.is_dir():  # lost a race to an equal writer
                discard(tmp)
                return False
            raise
        fsync_path(final.parent)
    except BaseException:
        discard(tmp)
        raise
    if marker is not None:
        (final / marker).write_text(marker_text, encoding="utf-8")
        fsync_path(final / marker)
        fsync_path(final)
    return True
