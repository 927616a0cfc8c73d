"""A running recipe beats its heartbeat from a thread, and the runs page calls a run stale
once it missed a few beats: a dead process shows within minutes, not after the reaper's
10-minute timeout. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

from app.ui.pages.engineer_runs import default_metrics, status_text
from labeling import projects
from labeling.models import Snapshot, TrainingRun
from labeling.registry import run_queue, runs
from labeling.registry import training_records as tr
from training.recorder import Heartbeat


def _running(Session) -> int:  # noqa: N803
    with Session.begin() as s:
        project = projects.create_project(s, name="p", kind="sft")
        snap = Snapshot(project_id=project.id, kind="sft", sha256="ab" * 32, path="snapshots/x",
                        rows=0, splits={}, stats={}, filters={})  # fmt: skip
        s.add(snap)
        s.flush()
        return tr.start_run(s, kind="sft", snapshot_id=snap.id, config={}, created_by=None).id


def test_the_heartbeat_thread_beats_while_the_trainer_is_busy(Session, monkeypatch):  # noqa: N803
    run_id = _running(Session)
    with Session() as s:
        first = s.get(TrainingRun, run_id).heartbeat_at
    monkeypatch.setattr(run_queue, "HEARTBEAT_SECONDS", 0.05)
    beat = Heartbeat(Session, run_id)
    try:
        time.sleep(0.5)  # the main thread is "training": no logging step, no metrics
    finally:
        beat.stop()
    with Session() as s:
        assert s.get(TrainingRun, run_id).heartbeat_at > first
    assert not beat._thread.is_alive()


def test_a_run_that_missed_its_beats_is_stale(Session):  # noqa: N803
    run_id = _running(Session)
    with Session() as s:
        run = s.get(TrainingRun, run_id)
        beat = run.heartbeat_at
        fresh = runs.describe_runs(s, [run], now=beat + timedelta(seconds=30))[0]
        late = beat + timedelta(seconds=run_queue.STALE_BEATS * run_queue.HEARTBEAT_SECONDS + 60)
        dead = runs.describe_runs(s, [run], now=late)[0]
    assert fresh["stale"] is False and fresh["heartbeat_age_s"] == 30
    assert dead["stale"] is True and "has most likely died" in status_text(dead)
    assert status_text(fresh) == "running"
    with Session.begin() as s:
        tr.finish_run(s, run_id, metrics={})
    with Session() as s:
        done = runs.describe_runs(s, [s.get(TrainingRun, run_id)], now=late)[0]
    assert done["stale"] is False and done["heartbeat_age_s"] is None


def test_rl_runs_chart_reward_and_kl_first():
    numeric = ["loss", "value_loss", "reward", "kl", "entropy", "clip_fraction"]
    assert default_metrics("rl", numeric) == ["reward", "kl"]
    trl = ["loss", "reward", "reward_std", "kl", "grad_norm"]
    assert default_metrics("rl", trl) == ["reward", "reward_std", "kl"]
    assert default_metrics("sft", ["loss", "grad_norm", "mean_token_accuracy"]) == ["loss"]
