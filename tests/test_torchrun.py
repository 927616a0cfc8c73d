"""Two DPO steps under `torchrun --nproc_per_node 2` on the CPU (gloo), tiny model.

Not marked slow: it runs in CI (about 15-25 s on 2 cores). The script is
tests/torchrun_dpo.py (TRL's DPOTrainer on a tiny in-process Llama); the platform's recipes
run the same trainer, launched the same way with `torchrun` or `accelerate launch
--config_file training/accelerate/multi_gpu.yaml`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_dpo_steps_under_torchrun_on_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.fail("torchrun is not installed next to this Python (it ships with torch)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["RLHF_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()),
         str(ROOT / "tests" / "torchrun_dpo.py"), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["global_step"] == 2 and len(result["losses"]) == 2
    assert all(math.isfinite(x) for x in result["losses"])
    assert result["weights_agree"] and result["weights_changed"]


def test_shipped_accelerate_configs_parse():
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in
               (ROOT / "training" / "accelerate").glob("*.yaml")}  # fmt: skip
    assert set(configs) == {"deepspeed_zero2", "deepspeed_zero3", "fsdp", "multi_gpu"}
    assert configs["deepspeed_zero2"]["deepspeed_config"]["zero_stage"] == 2
    assert configs["deepspeed_zero3"]["deepspeed_config"]["zero_stage"] == 3
    assert configs["fsdp"]["distributed_type"] == "FSDP"
    assert configs["multi_gpu"]["distributed_type"] == "MULTI_GPU"
