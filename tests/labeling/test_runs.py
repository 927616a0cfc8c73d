"""Training runs and checkpoints on SQLite and PostgreSQL: queue, validation, cancel, lineage."""

from __future__ import annotations

import pytest

from labeling import importer, projects, snapshots
from labeling.accounts import users
from labeling.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from labeling.models import (
    Checkpoint,
    CheckpointKind,
    RunMetric,
    RunStatus,
    TrainingRun,
    utcnow,
)
from labeling.registry import runs


def seed(Session):
    """An sft and a preference snapshot, a policy and a reward checkpoint, an engineer."""
    with Session.begin() as s:
        eng = users.add_user(s, name="eng", role="engineer", password="long-password").id
        lab = users.add_user(s, name="lab", role="labeler", password="long-password").id
        projects.create_project(s, name="sft", kind="sft")
        projects.create_project(s, name="pairs", kind="pairwise")
        importer.import_rows(
            s, project="sft", rows=[{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
        )
        importer.import_rows(
            s,
            project="pairs",
            rows=[{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)],
        )  # fmt: skip
        sft_snap, _ = snapshots.create_snapshot(s, project="sft", kind="sft", created_by=eng)
        pref_snap, _ = snapshots.create_snapshot(s, project="pairs", kind="preference")
        policy = Checkpoint(kind=CheckpointKind.policy, name="base", path="checkpoints/base",
                            base_model="tiny-gpt2")  # fmt: skip
        s.add(policy)
        s.flush()
        reward = Checkpoint(kind=CheckpointKind.reward, name="rm", path="checkpoints/rm",
                            parent_id=policy.id, snapshot_id=pref_snap.id,
                            snapshot_sha256=pref_snap.sha256,
                            evaluation={"split": "heldout", "accuracy": 0.75, "n": 4})  # fmt: skip
        s.add(reward)
        s.flush()
        return {
            "eng": eng, "lab": lab, "sft": sft_snap.id, "pref": pref_snap.id,
            "pref_sha": pref_snap.sha256, "policy": policy.id, "reward": reward.id,
        }  # fmt: skip


def queue_run(Session, **kw):
    with Session.begin() as s:
        return runs.queue_training_run(s, **kw).id


def test_queue_validates_inputs(Session):
    ids = seed(Session)
    ok = dict(config={"learning_rate": 1e-5, "max_steps": 10}, created_by=ids["eng"])
    sft = queue_run(Session, kind="sft", snapshot_id=ids["sft"], **ok)
    dpo = queue_run(Session, kind="dpo", snapshot_id=ids["pref"],
                    base_checkpoint_id=ids["policy"], **ok)  # fmt: skip
    rl = queue_run(Session, kind="rl", snapshot_id=ids["pref"], base_checkpoint_id=ids["policy"],
                   reward_checkpoint_id=ids["reward"], **ok)  # fmt: skip
    reward = queue_run(Session, kind="reward", snapshot_id=ids["pref"], **ok)
    with Session() as s:
        run = runs.get_run(s, dpo)
        assert run.status == RunStatus.queued and run.snapshot_sha256 == ids["pref_sha"]
        assert run.config == {"learning_rate": 1e-5, "max_steps": 10}
        assert run.created_by == ids["eng"]
        assert [r.id for r in runs.list_runs(s)] == [reward, rl, dpo, sft]
        assert [r.id for r in runs.list_runs(s, status="queued")] == [reward, rl, dpo, sft]
        rows = runs.describe_runs(s, runs.list_runs(s))
        assert rows[0]["project"] == "pairs" and rows[0]["created_by"] == "eng"

    bad = [
        (InvalidInput, dict(kind="ppo", snapshot_id=ids["pref"])),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["pref"])),  # wrong snapshot kind
        (InvalidInput, dict(kind="reward", snapshot_id=ids["sft"])),
        (NotFound, dict(kind="sft", snapshot_id=999)),
        (InvalidInput, dict(kind="dpo", snapshot_id=ids["pref"])),  # no base
        (InvalidInput, dict(kind="rl", snapshot_id=ids["pref"], base_checkpoint_id=ids["policy"])),
        (InvalidInput, dict(kind="dpo", snapshot_id=ids["pref"], base_checkpoint_id=ids["reward"])),
        (InvalidInput, dict(kind="rl", snapshot_id=ids["pref"], base_checkpoint_id=ids["policy"],
                            reward_checkpoint_id=ids["policy"])),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["sft"], reward_checkpoint_id=ids["reward"])),
        (NotFound, dict(kind="sft", snapshot_id=ids["sft"], base_checkpoint_id=999)),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["sft"], config={"lr": [1, 2]})),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["sft"], config={"lr": float("nan")})),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["sft"], config={"bad key": 1})),
        (InvalidInput, dict(kind="sft", snapshot_id=ids["sft"], config={"nested": {"a": 1}})),
    ]  # fmt: skip
    for error, kw in bad:
        kw = {"config": {}, "created_by": ids["eng"], **kw}
        with pytest.raises(error), Session.begin() as s:
            runs.queue_training_run(s, **kw)
    with pytest.raises(PermissionDenied), Session.begin() as s:
        runs.queue_training_run(s, kind="sft", snapshot_id=ids["sft"], config={},
                                created_by=ids["lab"])  # fmt: skip
    with Session() as s:
        assert len(runs.list_runs(s)) == 4  # nothing bad was written


def test_cancel_queued_running_and_finished(Session):
    ids = seed(Session)
    first = queue_run(Session, kind="sft", snapshot_id=ids["sft"], config={}, created_by=ids["eng"])
    second = queue_run(
        Session, kind="sft", snapshot_id=ids["sft"], config={}, created_by=ids["eng"]
    )
    with Session.begin() as s:
        run = runs.cancel_run(s, first)
        assert run.status == RunStatus.cancelled and run.finished_at is not None
        running = s.get(TrainingRun, second)
        running.status, running.started_at = RunStatus.running, utcnow()
    with Session.begin() as s:
        run = runs.cancel_run(s, second)
        assert run.status == RunStatus.running and run.cancel_requested
    for run_id in (first, 999):
        with pytest.raises(Conflict if run_id == first else NotFound), Session.begin() as s:
            runs.cancel_run(s, run_id)


def test_checkpoints_lineage_and_metrics(Session):
    ids = seed(Session)
    run_id = queue_run(Session, kind="dpo", snapshot_id=ids["pref"], config={},
                       base_checkpoint_id=ids["policy"], created_by=ids["eng"])  # fmt: skip
    with Session.begin() as s:
        s.add_all(RunMetric(run_id=run_id, step=step, values={"loss": 1.0 / step})
                  for step in (2, 1, 3))  # fmt: skip
        s.add(Checkpoint(kind=CheckpointKind.policy, name="dpo-1", path="checkpoints/dpo-1",
                         parent_id=ids["policy"], run_id=run_id, snapshot_id=ids["pref"],
                         snapshot_sha256=ids["pref_sha"]))  # fmt: skip
    with Session() as s:
        assert [m["step"] for m in runs.run_metrics(s, run_id)] == [1, 2, 3]
        assert runs.run_metrics(s, run_id)[1]["loss"] == 0.5
        rows = runs.list_checkpoints(s)
        assert [r["name"] for r in rows] == ["dpo-1", "rm", "base"]
        dpo = rows[0]
        assert dpo["parent"] == "base" and dpo["run_kind"] == "dpo"
        assert dpo["snapshot_kind"] == "preference" and dpo["project"] == "pairs"
        assert rows[2]["parent"] is None and rows[2]["run_id"] is None
        assert rows[1]["evaluation"] == {"split": "heldout", "accuracy": 0.75, "n": 4}
        assert rows[0]["evaluation"] == {} and rows[1]["path"] == "checkpoints/rm"
        assert [r["name"] for r in runs.list_checkpoints(s, kind="reward")] == ["rm"]
        assert [c["name"] for c in runs.lineage(s, dpo["id"])] == ["dpo-1", "base"]
        with pytest.raises(NotFound):
            runs.lineage(s, 999)
