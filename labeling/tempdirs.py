"""Stale temp directories left by killed writers, removed at start-up.

Snapshots, checkpoints and the default model's safetensors cache are written into a `.tmp-*`
directory beside their final place and renamed into it (labeling/snapshots.py,
labeling/registry/training_records.py, training/models.py). A writer killed half-way (kill -9, power
loss) cannot clean up; the commands that write these call `clean_stale_temp_dirs` when they
start. A temp directory is stale when nothing in it changed for `max_age` seconds: a live
writer touches its files as it writes them, and none of them spends an hour between files.
The writers hold no lock or pid file we could check, so age is the test.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

STALE_AFTER_S = 3600
TEMP_PREFIX = ".tmp-"
# Relative to $RLHF_HOME: the folders whose writers use TEMP_PREFIX temp directories.
WRITER_DIRS = ("snapshots", "checkpoints", "models")


def _newest_mtime(root: Path) -> float:
    newest = root.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:  # the writer is renaming or removing it right now
                continue
    return newest


def clean_stale_temp_dirs(
    home: str | os.PathLike[str],
    *,
    max_age: float = STALE_AFTER_S,
    now: float | None = None,
    dirs: tuple[str, ...] = WRITER_DIRS,
) -> list[Path]:
    """Remove `.tmp-*` directories under home/{snapshots,checkpoints,models} (or `dirs`)
    untouched for `max_age` seconds; returns what was removed. Never raises: a cleanup that
    fails (a file it may not delete) must not stop the command that asked for it."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    for sub in dirs:
        parent = Path(home) / sub
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith(TEMP_PREFIX) or entry.is_symlink() or not entry.is_dir():
                continue
            try:
                if now - _newest_mtime(entry) < max_age:
                    continue
                # Snapshot files are made read-only (0o444); rmtree needs their folder writable.
                for dirpath, _dirs, _files in os.walk(entry):
                    os.chmod(dirpath, 0o755)
                shutil.rmtree(entry)
            except OSError:
                continue
            removed.append(entry)
    return removed
