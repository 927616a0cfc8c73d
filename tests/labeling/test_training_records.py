"""What a running trainer writes: run records, metrics, atomic checkpoint directories.

No torch here: labeling.registry.training_records takes plain values (a test keeps labeling free of
torch). Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from labeling.errors import Conflict, InvalidInput
from labeling.hashing import prompt_hash
from labeling.models import (
    Checkpoint,
    Project,
    ProjectKind,
    Prompt,
    Role,
    RunMetric,
    RunStatus,
    Snapshot,
    TrainingRun,
    User,
)
from labeling.registry import runs
from labeling.registry import training_records as tr
from labeling.settings import load_settings


@pytest.fixture
def seeded(Session):  # noqa: N803
    """An engineer and a (fake, empty) snapshot row to hang runs on."""
    with Session.begin() as s:
        eng = User(name="eng", role=Role.engineer)
        project = Project(name="p", kind=ProjectKind.sft)
        s.add_all([eng, project])
        s.flush()
        messages = [{"role": "user", "content": "hi"}]
        s.add(Prompt(project_id=project.id, messages=messages, content_hash=prompt_hash(messages)))
        snap = Snapshot(
            project_id=project.id,
            kind="sft",
            sha256="ab" * 32,
            path="snapshots/x",
            rows=0,
            splits={"train": 0, "heldout": 0},
            stats={},
            filters={},
        )
        s.add(snap)
        s.flush()
        return {"user": eng.id, "snapshot": snap.id}


def _save(files: dict[str, str]):
    def save(directory):
        for name, text in files.items():
            (directory / name).write_text(text)

    return save


def test_run_lifecycle_metrics_and_checkpoint_lineage(Session, seeded):  # noqa: N803
    with Session.begin() as s:
        run = tr.start_run(
            s,
            kind="sft",
            snapshot_id=seeded["snapshot"],
            config={"learning_rate": 1e-5, "max_steps": 2},
            created_by=seeded["user"],
        )
        run_id = run.id
        assert run.status == RunStatus.running and run.host and run.started_at
        assert run.snapshot_sha256 == "ab" * 32
    with Session.begin() as s:
        tr.log_metrics(s, run_id, step=1, values={"loss": 1.5, "grad_norm": 2.0, "note": "x"})
        tr.log_metrics(s, run_id, step=2, values={"loss": float("nan")})
        tr.log_metrics(s, run_id, step=2, values={"train_runtime": 3.0})  # merged into step 2
    with Session.begin() as s:
        rows = {m.step: m.values for m in s.scalars(select(RunMetric).order_by(RunMetric.step))}
        assert rows == {
            1: {"loss": 1.5, "grad_norm": 2.0},
            2: {"loss": "nan", "train_runtime": 3.0},
        }

    directory = tr.write_checkpoint_dir("sft-run1", _save({"model.safetensors": "w"}))
    assert directory.parent == load_settings().checkpoints_dir
    assert tr.is_complete(directory) and (directory / "model.safetensors").is_file()
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".tmp")]
    with Session.begin() as s:
        parent = tr.register_checkpoint(
            s, kind="policy", directory=directory, run_id=run_id, base_model="tiny"
        )
        tr.finish_run(s, run_id, metrics={"train_loss": 1.0, "bad": float("inf")})
        parent_id = parent.id
    with Session.begin() as s:
        ck = s.get(Checkpoint, parent_id)
        assert (ck.run_id, ck.snapshot_id, ck.snapshot_sha256) == (
            run_id,
            seeded["snapshot"],
            "ab" * 32,
        )
        assert ck.path == "checkpoints/sft-run1"
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.succeeded and run.finished_at is not None
        assert run.metrics == {"train_loss": 1.0, "bad": "inf"}
        with pytest.raises(Conflict):  # a finished run stays finished
            tr.fail_run(s, run_id, error="late")

    # A second run from that checkpoint: the checkpoint's parent is the run's base.
    with Session.begin() as s:
        run2 = tr.start_run(
            s,
            kind="reward",
            snapshot_id=seeded["snapshot"],
            config={},
            created_by=seeded["user"],
            base_checkpoint_id=parent_id,
        )
        run2_id = run2.id
    child_dir = tr.write_checkpoint_dir("reward-run2", _save({"model.safetensors": "w"}))
    with Session.begin() as s:
        child = tr.register_checkpoint(
            s,
            kind="reward",
            directory=child_dir,
            run_id=run2_id,
            base_model="tiny",
            evaluation={"accuracy": 0.5, "n": 2},
        )
        described = tr.describe_checkpoint(s, child)
        assert described["parent_id"] == parent_id
        assert described["parents"] == runs.lineage(s, child.id)[1:]
        assert [p["id"] for p in described["parents"]] == [parent_id]
        assert described["parents"][0]["run_id"] == run_id
        assert described["complete"] and described["evaluation"]["accuracy"] == 0.5
        listed = runs.list_checkpoints(s)  # the one listing (UI and `rlhf checkpoints list`)
        assert [r["id"] for r in listed] == [child.id, parent_id]
        assert listed[0]["evaluation"] == {"accuracy": 0.5, "n": 2}
        assert listed[0]["parent"] == "sft-run1" and listed[1]["evaluation"] == {}
        assert [r["id"] for r in runs.list_checkpoints(s, kind="policy")] == [parent_id]


def test_failed_and_cancelled_runs(Session, seeded):  # noqa: N803
    with Session.begin() as s:
        a = tr.start_run(s, kind="sft", snapshot_id=seeded["snapshot"], config={}, created_by=None)
        b = tr.start_run(s, kind="sft", snapshot_id=seeded["snapshot"], config={}, created_by=None)
        ids = a.id, b.id
    with Session.begin() as s:
        s.get(TrainingRun, ids[1]).cancel_requested = True
    with Session.begin() as s:
        assert not tr.cancel_requested(s, ids[0]) and tr.cancel_requested(s, ids[1])
        tr.fail_run(s, ids[0], error="non-finite loss=nan at step 2", log_tail="x" * 30_000)
        tr.fail_run(s, ids[1], error="cancelled", cancelled=True)
    with Session.begin() as s:
        a, b = s.get(TrainingRun, ids[0]), s.get(TrainingRun, ids[1])
        assert (a.status, b.status) == (RunStatus.failed, RunStatus.cancelled)
        assert "nan" in a.error and len(a.log_tail) == tr.LOG_TAIL_CHARS
        assert s.scalar(select(Checkpoint.id)) is None


def test_checkpoint_directory_is_atomic_and_register_needs_the_marker(Session, seeded):  # noqa: N803
    def broken(directory):
        (directory / "model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        tr.write_checkpoint_dir("sft-run9", broken)
    root = load_settings().checkpoints_dir
    assert list(root.iterdir()) == []  # neither the target nor the temp dir is left
    with pytest.raises(InvalidInput):
        tr.write_checkpoint_dir("../escape", _save({"a": "b"}))

    incomplete = root / "by-hand"
    incomplete.mkdir()
    (incomplete / "model.safetensors").write_text("w")
    with Session.begin() as s, pytest.raises(InvalidInput, match="COMPLETE"):
        tr.register_checkpoint(s, kind="policy", directory=incomplete, run_id=None, base_model=None)
    done = tr.write_checkpoint_dir("sft-run10", _save({"model.safetensors": "w"}))
    with pytest.raises(Conflict):
        tr.write_checkpoint_dir("sft-run10", _save({"model.safetensors": "w"}))
    assert tr.is_complete(done)


def test_checkpoint_directory_in_two_steps_for_multi_process_launches(Session, seeded):  # noqa: N803
    """prepare_checkpoint_dir (rank 0), every rank saves into it, finish_checkpoint_dir
    (rank 0): the same guarantees as write_checkpoint_dir."""
    root = load_settings().checkpoints_dir
    tmp = tr.prepare_checkpoint_dir("dpo-run3")
    assert tmp.parent == root and tmp.name.startswith(".tmp-dpo-run3-") and not any(tmp.iterdir())
    for rank in (0, 1):  # e.g. the shards of a sharded save
        (tmp / f"model-0000{rank + 1}-of-00002.safetensors").write_text(f"rank {rank}")
    final = tr.finish_checkpoint_dir(tmp, "dpo-run3")
    assert final == root / "dpo-run3" and tr.is_complete(final) and not tmp.exists()
    assert sorted(p.name for p in final.iterdir()) == [
        "COMPLETE",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    with pytest.raises(Conflict):
        tr.prepare_checkpoint_dir("dpo-run3")

    empty = tr.prepare_checkpoint_dir("dpo-run4")
    with pytest.raises(InvalidInput, match="saved nothing"):
        tr.finish_checkpoint_dir(empty, "dpo-run4")
    assert not empty.exists() and not (root / "dpo-run4").exists()
    late = tr.prepare_checkpoint_dir("dpo-run5")  # someone else took the name meanwhile
    (late / "model.safetensors").write_text("w")
    (root / "dpo-run5").mkdir()
    with pytest.raises(Conflict):
        tr.finish_checkpoint_dir(late, "dpo-run5")
    assert not late.exists()
    with pytest.raises(InvalidInput, match="not a temporary directory"):
        tr.finish_checkpoint_dir(final, "dpo-run6")  # only a directory prepare_ made
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp")]
