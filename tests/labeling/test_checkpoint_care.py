"""rlhf checkpoints rename / note / delete / gc, on SQLite and PostgreSQL: delete refuses what
lineage, a run or an arena still needs and then changes nothing; gc removes only folders no
record needs."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from labeling import projects
from labeling.models import Checkpoint, Response, RunStatus, Snapshot
from labeling.registry import training_records as tr
from labeling.settings import load_settings
from labeling.tasks import add_prompt


def _write(name: str, size: int = 1000):
    def save(directory):
        (directory / "model.safetensors").write_bytes(b"w" * size)

    return tr.write_checkpoint_dir(name, save)


def _snapshot(s) -> int:
    """A (fake, empty) snapshot row to hang runs on."""
    existing = s.scalar(select(Snapshot.id))
    if existing:
        return existing
    project = projects.create_project(s, name="sft", kind="sft")
    snap = Snapshot(project_id=project.id, kind="sft", sha256="ab" * 32, path="snapshots/x",
                    rows=0, splits={"train": 0, "heldout": 0}, stats={}, filters={})  # fmt: skip
    s.add(snap)
    s.flush()
    return snap.id


def _checkpoint(Session, name: str, *, base=None):  # noqa: N803
    directory = _write(name)
    with Session.begin() as s:
        run = tr.start_run(
            s, kind="sft", snapshot_id=_snapshot(s), config={}, created_by=None,
            base_checkpoint_id=base,
        )  # fmt: skip
        ck = tr.register_checkpoint(
            s, kind="policy", directory=directory, run_id=run.id, base_model="tiny"
        )
        tr.finish_run(s, run.id, metrics={})
        return ck.id, run.id, directory


def test_delete_refuses_what_is_needed_and_removes_the_rest(cli, admin, Session):  # noqa: N803
    parent, _, parent_dir = _checkpoint(Session, "sft-run1")
    child, child_run, child_dir = _checkpoint(Session, "sft-run2", base=parent)
    answered, _, answered_dir = _checkpoint(Session, "sft-run3")
    with Session.begin() as s:
        project = projects.create_project(s, name="arena", kind="pairwise")
        prompt = add_prompt(s, project, "question", source="test")
        s.add(Response(prompt_id=prompt.id, text="an answer", content_hash="h" * 64,
                       author_kind="checkpoint", checkpoint_id=answered))  # fmt: skip

    refused = cli("checkpoints", "delete", str(parent), user=admin)
    assert refused.code == 1
    assert (
        f"runs {child_run} started from it" in refused.err and "Nothing was deleted" in refused.err
    )
    refused = cli("checkpoints", "delete", str(answered), user=admin)
    assert refused.code == 1 and "1 answer it gave (projects, arenas)" in refused.err
    assert parent_dir.is_dir() and answered_dir.is_dir()  # nothing lost

    done = cli("checkpoints", "delete", str(child), "--json", user=admin)
    assert done.code == 0, done.err
    assert done.json()["removed"] == str(child_dir) and done.json()["freed_bytes"] >= 1000
    assert not child_dir.exists()
    with Session() as s:
        assert sorted(s.scalars(select(Checkpoint.id))) == [parent, answered]
    assert cli("checkpoints", "delete", str(child), user=admin).code == 1  # gone: not found


def test_the_model_cache_is_never_removed(cli, admin, Session):  # noqa: N803
    # `checkpoints add --model default` registers the cached default model under models/
    outside = load_settings().home / "models" / "my-model"
    outside.mkdir(parents=True)
    (outside / "model.safetensors").write_bytes(b"w")
    (outside / tr.COMPLETE_MARKER).write_text("{}")
    with Session.begin() as s:
        ck = tr.register_checkpoint(s, kind="policy", directory=outside, run_id=None,
                                    base_model="mine")  # fmt: skip
        ck_id = ck.id
    done = cli("checkpoints", "delete", str(ck_id), user=admin)
    assert done.code == 0, done.err
    assert "left alone" in done.out and (outside / "model.safetensors").is_file()


def test_rename_and_note(cli, admin, Session):  # noqa: N803
    ck, _, _ = _checkpoint(Session, "sft-run1")
    assert cli("checkpoints", "rename", str(ck), "best math model", user=admin).code == 0
    assert cli("checkpoints", "note", str(ck), "beats the base by 20 points", user=admin).code == 0
    shown = cli("checkpoints", "show", str(ck), "--json", user=admin).json()
    assert shown["name"] == "best math model" and shown["note"] == "beats the base by 20 points"
    listed = cli("checkpoints", "list", "--json", user=admin).json()
    assert listed[0]["note"] == "beats the base by 20 points"
    # bad input: a clear error, the name and the note as they were
    bad = cli("checkpoints", "rename", str(ck), "x\u202eevil", user=admin)
    assert bad.code == 1 and bad.err.startswith("error:")
    bad = cli("checkpoints", "note", str(ck), "n" * 5000, user=admin)
    assert bad.code == 1 and "at most 4000" in bad.err
    shown = cli("checkpoints", "show", str(ck), "--json", user=admin).json()
    assert shown["name"] == "best math model" and shown["note"] == "beats the base by 20 points"
    assert cli("checkpoints", "note", str(ck), "", user=admin).code == 0
    assert cli("checkpoints", "show", str(ck), "--json", user=admin).json()["note"] is None
    # labelers may not
    cli("users", "add", "lab", "--role", "labeler", "--password-stdin", user=admin,
        stdin="labeler-password\n")  # fmt: skip
    assert cli("checkpoints", "rename", str(ck), "mine", user="lab").code != 0


def test_gc_removes_only_what_nothing_needs(cli, admin, Session):  # noqa: N803
    home = load_settings().home
    kept, kept_run, kept_dir = _checkpoint(Session, "sft-run1")
    orphan = _write("sft-run-crashed", 5000)  # a folder no row names
    done_points = home / "runs" / f"run-{kept_run}" / "checkpoint-10"
    done_points.mkdir(parents=True)
    (done_points / "optimizer.pt").write_bytes(b"o" * 3000)
    with Session.begin() as s:
        failed = tr.start_run(s, kind="sft", snapshot_id=_snapshot(s), config={}, created_by=None)
        tr.fail_run(s, failed.id, error="oom")
        failed_id = failed.id
        assert s.get(type(failed), failed_id).status == RunStatus.failed
    failed_points = home / "runs" / f"run-{failed_id}" / "checkpoint-4"
    failed_points.mkdir(parents=True)  # a failed run may still --resume: kept

    dry = cli("checkpoints", "gc", "--dry-run", "--json", user=admin)
    assert dry.code == 0, dry.err
    assert dry.json()["orphan_dirs"] == [str(orphan)]
    assert dry.json()["resume_points"] == [str(done_points)]
    assert dry.json()["freed_bytes"] == 0 and orphan.is_dir() and done_points.is_dir()

    real = cli("checkpoints", "gc", user=admin)
    assert real.code == 0, real.err
    assert "removed 2 folders, 8.1 KB" in real.out, real.out  # 5000 + 3000 bytes + markers
    assert not orphan.exists() and not done_points.exists()
    assert kept_dir.is_dir() and failed_points.is_dir()
    with Session() as s:
        assert s.get(Checkpoint, kept) is not None
    again = cli("checkpoints", "gc", "--json", user=admin).json()
    assert again["orphan_dirs"] == [] and again["resume_points"] == []


def _adapter(name: str, base: str):
    """A LoRA checkpoint folder as the trainers leave it (the bytes stand in for weights)."""

    def save(directory):
        (directory / tr.ADAPTER_WEIGHTS).write_bytes(b"a" * 100)
        (directory / tr.ADAPTER_CONFIG).write_text('{"task_type": "CAUSAL_LM"}')
        tr.write_base_pointer(directory, base=base, kind="policy", base_model="tiny")

    return tr.write_checkpoint_dir(name, save)


def test_an_adapters_base_is_kept_by_delete_and_gc(cli, admin, Session):  # noqa: N803
    """The base named by an adapter's pointer, by id or by folder, is needed even where it is
    not the adapter's parent (a base given as a path); gc leaves a folder a pointer names."""
    base, _, base_dir = _checkpoint(Session, "sft-run1")
    loose = _write("hand-made-base", 2000)  # no row: an orphan, unless a pointer names it
    for name, pointer in (("sft-run2", f"checkpoint:{base}"), ("sft-run3", str(base_dir)),
                          ("sft-run4", str(loose))):  # fmt: skip
        with Session.begin() as s:
            tr.register_checkpoint(s, kind="policy", directory=_adapter(name, pointer),
                                   run_id=None, base_model="tiny")  # fmt: skip
    refused = cli("checkpoints", "delete", str(base), user=admin)
    assert refused.code == 1 and "Nothing was deleted" in refused.err
    assert f"adapter checkpoints {base + 1}, {base + 2} are stored on it" in refused.err
    assert base_dir.is_dir()
    gc = cli("checkpoints", "gc", "--dry-run", "--json", user=admin)
    assert gc.code == 0 and gc.json()["orphan_dirs"] == []  # the loose base stays
    listed = {c["id"]: c for c in cli("checkpoints", "list", "--json", user=admin).json()}
    assert listed[base]["storage"] == "full" and listed[base + 1]["storage"] == "adapter"
    assert listed[base + 1]["bytes"] > 100
    assert cli("checkpoints", "list", user=admin).out.count("adapter") == 3


def test_merge_swaps_the_folder_in_place_or_changes_nothing(Session):  # noqa: N803
    from labeling.errors import InvalidInput
    from labeling.registry import checkpoint_care as care

    full, _, full_dir = _checkpoint(Session, "sft-run1")
    adapter_dir = _adapter("sft-run2", f"checkpoint:{full}")
    with Session.begin() as s:
        adapter = tr.register_checkpoint(s, kind="policy", directory=adapter_dir, run_id=None,
                                         base_model="tiny", parent_id=full).id  # fmt: skip
        plan = care.merge_plan(s, full)
    assert care.replace_with_merged(plan, None)["merged"] is False  # a full model: no-op

    def broken(source, tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    def adapter_again(source, tmp):  # a writer that wrote no full model
        (tmp / tr.ADAPTER_CONFIG).write_text("{}")
        (tmp / "x.safetensors").write_bytes(b"x")

    with Session.begin() as s:
        plan = care.merge_plan(s, adapter)
    assert plan.storage == "adapter" and plan.base == f"checkpoint:{full}"
    before = sorted(p.name for p in adapter_dir.iterdir())
    for write, error in ((broken, OSError), (adapter_again, InvalidInput)):
        with pytest.raises(error):
            care.replace_with_merged(plan, write)
        assert sorted(p.name for p in adapter_dir.iterdir()) == before  # nothing lost
        assert not list(adapter_dir.parent.glob(".tmp-*"))

    def merge(source, tmp):
        assert (source / tr.ADAPTER_WEIGHTS).is_file()  # it reads the adapter it replaces
        (tmp / "model.safetensors").write_bytes(b"m" * 5000)
        (tmp / "tokenizer.json").write_text("{}")

    out = care.replace_with_merged(plan, merge)
    assert out["merged"] is True and out["bytes_after"] > out["bytes_before"]
    assert sorted(p.name for p in adapter_dir.iterdir()) == [
        tr.COMPLETE_MARKER,
        "model.safetensors",
        "tokenizer.json",
    ]
    assert tr.storage_of(adapter_dir) == "merged" and tr.is_complete(adapter_dir)
    assert not list(adapter_dir.parent.glob(".tmp-*"))
    with Session() as s:
        assert s.get(Checkpoint, adapter).path == f"checkpoints/{adapter_dir.name}"
    with Session.begin() as s:
        assert care.merge_plan(s, adapter).storage == "merged"  # a second merge: nothing to do
    (full_dir / tr.COMPLETE_MARKER).unlink()
    with Session.begin() as s, pytest.raises(InvalidInput, match="incomplete"):
        care.merge_plan(s, full)
