"""The pieces of training/ (launch, checkpoint, recorder) that multi-process launches rely on, in one process.

tests/training/test_torchrun.py runs a real recipe on two ranks. Here: what cannot run on this
machine's CPU ranks - the save path of sharded strategies (FSDP, DeepSpeed ZeRO-3), where the
trainer gathers and saves only the LoRA adapter and rank 0 merges it into a fresh copy of the
base - and a launch of one (a plain process), where every rank method is a plain call. The
"sharded trainer" below is a stand-in for transformers' Trainer under DeepSpeed: its
save_model writes what Trainer.save_model writes there (the adapter, the tokenizer and the
pickled training_args.bin).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from test_training_models import save_tiny_policy

from labeling.errors import InvalidInput
from labeling.registry import training_records
from labeling.settings import load_settings
from training import checkpoint, recorder
from training.errors import TrainingFailed
from training.launch import Launch, _portable, is_main_process
from training.models import load_policy


class ShardedTrainer:
    """What checkpoint.save_model sees of a Trainer under DeepSpeed (or FSDP): save_model is the
    collective save, and with LoRA it writes the adapter only."""

    is_fsdp_enabled, is_deepspeed_enabled = False, True

    def __init__(self, model, tokenizer, write_weights=True):
        self.model, self.processing_class, self.write_weights = model, tokenizer, write_weights

    def save_model(self, output_dir):
        if self.write_weights:
            self.model.save_pretrained(output_dir)
        else:  # DeepSpeed ZeRO-3 without zero3_save_16bit_model: no usable weights
            (Path(output_dir) / "pytorch_model.bin").write_bytes(b"zero shards")
        self.processing_class.save_pretrained(output_dir)
        (Path(output_dir) / "training_args.bin").write_bytes(pickle.dumps({"args": 1}))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_sharded_lora_is_merged_into_the_base_from_the_saved_adapter(tmp_path, home):
    from peft import LoraConfig, get_peft_model

    base_dir = save_tiny_policy(tmp_path / "base")
    model, tokenizer = load_policy(str(base_dir))
    torch.manual_seed(0)  # init_lora_weights=False: adapters that change the weights
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, lora)
    trainer = ShardedTrainer(peft_model, tokenizer)
    launch = Launch()  # rank 0 of one

    def save(directory):
        saved = checkpoint.save_model(
            trainer, tokenizer, directory, launch, merge_lora=True,
            load_base=lambda: load_policy(str(base_dir))[0],
        )  # fmt: skip
        assert saved is not None and not hasattr(saved, "peft_config")  # merged, whole

    directory = checkpoint.write_checkpoint(launch, "sft-run1", save)
    assert directory == load_settings().checkpoints_dir / "sft-run1"
    files = set(os.listdir(directory))
    assert {"model.safetensors", "config.json", "tokenizer.json", "COMPLETE"} <= files
    assert not files & {"adapter_model.safetensors", "adapter_config.json", "training_args.bin"}
    expected = peft_model.merge_and_unload().state_dict()
    reloaded = load_policy(str(directory))[0].state_dict()
    assert set(reloaded) == set(expected)
    assert all(torch.equal(reloaded[k], expected[k]) for k in expected)
    base = load_policy(str(base_dir))[0].state_dict()
    name = next(k for k in expected if "q_proj" in k)
    assert not torch.equal(reloaded[name], base[name])  # the adapter is in the weights


def test_a_sharded_save_without_safetensors_leaves_no_checkpoint(tmp_path, home):
    model, tokenizer = load_policy(str(save_tiny_policy(tmp_path / "base")))
    trainer = ShardedTrainer(model, tokenizer, write_weights=False)
    launch = Launch()
    with pytest.raises(TrainingFailed, match="no safetensors weights"):
        checkpoint.write_checkpoint(
            launch,
            "dpo-run2",
            lambda d: checkpoint.save_model(trainer, tokenizer, d, launch, merge_lora=False),
        )
    assert list(load_settings().checkpoints_dir.iterdir()) == []  # no temp dir left either


class TwoPartError(Exception):
    def __init__(self, what, why):
        super().__init__(f"{what}: {why}")


def test_a_launch_of_one_is_plain_calls(home):
    launch = Launch()
    assert (launch.rank, launch.world_size, launch.is_main) == (0, 1, True)
    assert launch.share(lambda: (7, "sha")) == (7, "sha")
    assert launch.gather(["w"]) == [["w"]]
    launch.barrier()
    with pytest.raises(InvalidInput, match="bad"):
        launch.share(lambda: (_ for _ in ()).throw(InvalidInput("bad")))
    # What rank 0 broadcasts when its exception does not survive pickling: its text.
    portable = _portable(TwoPartError("disk", "full"))
    assert isinstance(portable, TrainingFailed)
    assert str(portable) == "TwoPartError: disk: full"
    assert _portable(InvalidInput("x")).__class__ is InvalidInput
    assert is_main_process()
    # Another rank's error reaches rank 0's record of the run; its own twin does not.
    recorder._report_failure(5, 1, "RuntimeError: out of memory")
    recorder._report_failure(5, 2, "the same error")
    assert recorder._reported_failures(5, "the same error") == [
        "rank 1: RuntimeError: out of memory"
    ]
    assert training_records.checkpoint_name("dpo", 5, None) == "dpo-run5"
