"""labeling/atomic.py: a directory appears whole, with its marker, or not at all."""

from __future__ import annotations

import pytest

from labeling import atomic
from labeling.errors import Conflict


def test_publish_renames_into_place_then_writes_the_marker(tmp_path):
    final = tmp_path / "out" / "thing"
    tmp = atomic.temp_dir_beside(final)
    assert tmp.parent == final.parent and tmp.name.startswith(".tmp-thing-")
    (tmp / "a.txt").write_text("a")
    assert atomic.publish(tmp, final, marker="COMPLETE", marker_text="{}")
    assert (final / "a.txt").read_text() == "a" and (final / "COMPLETE").read_text() == "{}"
    assert not tmp.exists()


def test_an_existing_target_is_refused_or_kept_and_the_temp_dir_goes(tmp_path):
    final = tmp_path / "thing"
    final.mkdir()
    (final / "old").write_text("old")
    tmp = atomic.temp_dir_beside(final)
    (tmp / "new").write_text("new")
    with pytest.raises(Conflict, match="already exists"):
        atomic.publish(tmp, final)
    assert not tmp.exists() and sorted(p.name for p in final.iterdir()) == ["old"]

    tmp = atomic.temp_dir_beside(final)
    assert atomic.publish(tmp, final, if_exists="keep") is False
    assert not tmp.exists() and sorted(p.name for p in final.iterdir()) == ["old"]


def test_a_failed_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    final = tmp_path / "thing"
    tmp = atomic.temp_dir_beside(final)
    (tmp / "a").write_text("a")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "rename", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic.publish(tmp, final, marker="COMPLETE")
    assert not tmp.exists() and not final.exists()
