"""`rlhf train sft --resume RUN_ID` after the training process was killed with SIGKILL.

The run trains a tiny in-process policy in a subprocess with trainer checkpoints every 3
steps under $RLHF_HOME/runs/run-<id>/; once a complete one exists the process is killed
(no cleanup runs). The run row still says RUNNING; `--resume` refuses it while its
heartbeat is fresh, the stale-run reaper marks it failed, and `--resume` continues the same
run from the newest complete trainer checkpoint: the global step goes on from there (not
from 0), the run ends SUCCEEDED and exactly one checkpoint is registered.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from test_train_sft_reward import snaps, tiny_models  # noqa: F401  (fixtures)

from labeling.models import Checkpoint, RunMetric, RunStatus, TrainingRun
from labeling.registry import run_queue
from labeling.settings import load_settings
from training.checkpoint import last_trainer_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def start_sft(snaps, tiny_models, *flags: str) -> subprocess.Popen:  # noqa: F811
    """A long SFT run of the tiny policy in its own process, saving resume points."""
    command = [
        sys.executable, "-m", "app.cli.main", "train", "sft",
        "--snapshot", str(snaps["sft"]), "--base", tiny_models["policy"],
        "--max_steps", "100000", "--per_device_train_batch_size", "2",
        "--save_strategy", "steps", *flags,
    ]  # fmt: skip
    env = {**os.environ, "RLHF_USER": "eng", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def wait_for_resume_point(proc: subprocess.Popen, *, at_least: int) -> Path:
    """The run's directory once it holds a complete resume point of step >= at_least."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        runs = sorted((load_settings().home / "runs").glob("run-*"))
        if runs and (last := last_trainer_checkpoint(runs[0])):
            if int(last.rsplit("-", 1)[1]) >= at_least:
                return runs[0]
        time.sleep(0.05)
    raise AssertionError(proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_killed_run_resumes_from_its_last_checkpoint(cli, snaps, tiny_models, Session):  # noqa: F811, N803
    proc = start_sft(snaps, tiny_models, "--save_steps", "3", "--save_total_limit", "2",
                     "--learning_rate", "1e-3")  # fmt: skip
    try:
        run_dir = wait_for_resume_point(proc, at_least=6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id = int(run_dir.name.removeprefix("run-"))
    resumed_from = int(last_trainer_checkpoint(run_dir).rsplit("-", 1)[1])

    with Session.begin() as s:  # no cleanup ran: the row still says running
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.running and run.finished_at is None
        killed_at = max(s.scalars(select(RunMetric.step).where(RunMetric.run_id == run_id)))
        assert killed_at >= resumed_from

    # While its heartbeat is fresh the run might be alive elsewhere: not resumable yet.
    busy = cli("train", "sft", "--resume", str(run_id), user="eng")
    assert busy.code == 1 and "is running on" in busy.err
    wrong = cli("train", "reward", "--resume", str(run_id), user="eng")
    assert wrong.code == 1 and "is a sft run" in wrong.err
    with Session.begin() as s:  # what `rlhf worker --reap-after N` does for dead runs
        assert run_queue.reap_stale_runs(s, stale_after=0) == [run_id]

    # The newest complete trainer checkpoint is the one to resume from; a half-written newer
    # one (the process died while saving it) is skipped.
    half = run_dir / f"checkpoint-{killed_at + 100}"
    half.mkdir()
    (half / "trainer_state.json").write_text('{"global_step": ')
    assert last_trainer_checkpoint(run_dir).endswith(f"checkpoint-{resumed_from}")
    half.rename(run_dir / "not-a-checkpoint")

    total = resumed_from + 4
    res = cli("train", "sft", "--resume", str(run_id), "--max_steps", str(total), "--json",
              user="eng")  # fmt: skip
    assert res.code == 0, res.err
    result = res.json()
    assert result["run_id"] == run_id and result["metrics"]["steps"] == total
    with Session.begin() as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.succeeded and run.error is None and run.finished_at
        # This process logged only the steps after the checkpoint: the step count went on.
        steps = [int(m) for m in re.findall(r"^step (\d+):", run.log_tail, re.M)]
        assert steps and min(steps) == resumed_from + 1 and max(steps) == total
        cks = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
        assert len(cks) == 1 and cks[0].id == result["checkpoint_id"]
    assert not list(run_dir.glob("checkpoint-*"))  # resume points go once the run is done
    assert cli("train", "sft", "--resume", str(run_id), user="eng").code == 1  # succeeded


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_records_the_run_failed_and_resumable(cli, snaps, tiny_models, Session):  # noqa: F811, N803
    """A kill / shutdown / preemption (SIGTERM) of a single-process run: the run is recorded
    failed with a note at once (not left RUNNING until the reaper), and `--resume` takes it."""
    proc = start_sft(snaps, tiny_models, "--save_steps", "2", "--save_total_limit", "1")
    try:
        run_dir = wait_for_resume_point(proc, at_least=1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code != 0 and "Traceback" not in err, err[-3000:]
    run_id = int(run_dir.name.removeprefix("run-"))
    with Session.begin() as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.failed and run.finished_at is not None
        assert "stopped by SIGTERM" in run.error and f"--resume {run_id}" in run.error
        assert s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all() == []
        steps = max(s.scalars(select(RunMetric.step).where(RunMetric.run_id == run_id)))
    res = cli("train", "sft", "--resume", str(run_id), "--max_steps", str(steps + 2), "--json",
              user="eng")  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["run_id"] == run_id
