"""`rlhf train dpo` under `torchrun --nproc_per_node 2` on the CPU (gloo): one run, one
checkpoint per launch, not one per rank.

Not marked slow: it runs in CI on 2 cores. The recipe is the real one (training/dpo.py
through `python -m app.cli.main`), on the seeded SQLite database file and data root of
test_train_sft_reward.py (RLHF_DATABASE_URL, RLHF_HOME), with the tiny in-process Llama
saved as safetensors and registered as the base checkpoint (test_train_dpo_rl.py). Every
rank trains; rank 0 alone writes the run, its metrics and the checkpoint (training/launch.py).
`accelerate launch --config_file training/accelerate/multi_gpu.yaml` starts the same ranks.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import test_train_dpo_rl as dpo_rl
from sqlalchemy import select

from labeling.models import Checkpoint, RunMetric, RunStatus, TrainingRun
from labeling.registry import training_records
from labeling.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
# SQLite only (the recipes' database work is plain services); the seeded snapshots, the tiny
# models and the base checkpoint of the DPO/RL tests.
db_url, Session, snaps, tiny_models, checkpoints = (
    dpo_rl.db_url,
    dpo_rl.Session,
    dpo_rl.snaps,
    dpo_rl.tiny_models,
    dpo_rl.checkpoints,
)
# Two steps of a full fine-tune (trainer.save_model on every rank: the path FSDP and
# DeepSpeed take) with an explicit frozen reference, on the CPU even where a GPU is.
DPO = [
    "--use_peft", "false", "--precompute_ref_log_probs", "false", "--max_steps", "2",
    "--per_device_train_batch_size", "1", "--logging_steps", "1", "--use_cpu", "true",
    "--ddp_backend", "gloo", "--dataloader_num_workers", "0",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 ARGS` against the test's database and data root."""
    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if launcher is None:
        pytest.fail("torchrun is not installed next to this Python (it ships with torch)")
    env = {
        **os.environ,  # RLHF_DATABASE_URL and RLHF_HOME: the test's SQLite file and data root
        "RLHF_USER": "eng",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    command = [launcher, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *args]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_dpo_under_torchrun_records_one_run_and_one_checkpoint(snaps, checkpoints, Session):  # noqa: N803
    base = checkpoints["base"]
    proc = torchrun(
        "-m", "app.cli.main", "train", "dpo", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{base}", *DPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    with Session.begin() as s:
        run = s.scalars(select(TrainingRun)).one()  # one run for the launch, not one per rank
        assert run.status == RunStatus.succeeded and run.error is None, run.error
        assert run.kind == "dpo" and run.base_checkpoint_id == base and run.finished_at
        assert run.metrics["steps"] == 2 and run.config["use_peft"] is False
        metrics = {m.step: m.values for m in s.scalars(select(RunMetric))}
        assert sorted(metrics) == [1, 2]
        # 4 training rows, 1 per rank and step: 2 ranks make an epoch in 2 steps (1 rank: 4)
        assert metrics[2]["epoch"] == 1.0
        ck = s.scalars(select(Checkpoint).where(Checkpoint.run_id.is_not(None))).one()
        assert (ck.kind, ck.parent_id, ck.run_id) == ("policy", base, run.id)
        assert ck.snapshot_id == snaps["preference"] and ck.snapshot_sha256 == run.snapshot_sha256
        directory = training_records.checkpoint_dir(ck)
    assert training_records.is_complete(directory)
    files = set(os.listdir(directory))
    assert {"model.safetensors", "config.json", "COMPLETE"} <= files
    assert "training_args.bin" not in files  # the trainer's pickle is not kept
    home = load_settings().home
    assert sorted(p.name for p in (home / "checkpoints").iterdir()) == sorted(
        ["tiny-base", "tiny-reward", ck.name]
    )  # no temp dir left, no second checkpoint
    assert [p.name for p in (home / "runs").iterdir()] == [f"run-{run.id}"]  # one output_dir
    assert not list((home / "runs" / f"run-{run.id}").glob("rank*.error"))


def test_a_failure_on_another_rank_fails_the_run_once(snaps, checkpoints, Session):  # noqa: N803
    proc = torchrun(
        str(Path(__file__).with_name("torchrun_dpo.py")), "--fail-rank", "1", "train", "dpo",
        "--snapshot", str(snaps["preference"]), "--base", f"checkpoint:{checkpoints['base']}",
        *DPO,
    )  # fmt: skip
    assert proc.returncode != 0
    with Session.begin() as s:
        run = s.scalars(select(TrainingRun)).one()
        assert run.status == RunStatus.failed, (run.status, proc.stderr[-6000:])
        # rank 0 recorded it, naming the rank that failed first
        assert run.error.startswith("rank 1: RuntimeError: injected failure on rank 1"), run.error
        assert sorted(s.scalars(select(Checkpoint.id))) == sorted(checkpoints.values())
    root = load_settings().checkpoints_dir
    assert sorted(p.name for p in root.iterdir()) == ["tiny-base", "tiny-reward"]


def test_nan_loss_under_torchrun_stops_every_rank_and_registers_nothing(
    snaps,
    checkpoints,
    Session,  # noqa: N803
):
    proc = torchrun(
        "-m", "app.cli.main", "train", "dpo", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}", *DPO, "--max_steps", "4",
        "--learning_rate", "1e30", "--max_grad_norm", "0",
    )  # fmt: skip
    assert proc.returncode != 0
    with Session.begin() as s:
        run = s.scalars(select(TrainingRun)).one()
        assert run.status == RunStatus.failed and "non-finite" in run.error, run.error
        assert not run.error.startswith("rank ")  # every rank stopped on rank 0's decision
        assert sorted(s.scalars(select(Checkpoint.id))) == sorted(checkpoints.values())


def test_shipped_accelerate_configs_parse():
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in
               (ROOT / "training" / "accelerate").glob("*.yaml")}  # fmt: skip
    assert set(configs) == {"deepspeed_zero2", "deepspeed_zero3", "fsdp", "multi_gpu"}
    assert configs["deepspeed_zero2"]["deepspeed_config"]["zero_stage"] == 2
    assert configs["deepspeed_zero3"]["deepspeed_config"]["zero_stage"] == 3
    assert configs["fsdp"]["distributed_type"] == "FSDP"
    assert configs["multi_gpu"]["distributed_type"] == "MULTI_GPU"
