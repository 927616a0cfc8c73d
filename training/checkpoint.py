"""Saving the trained model as a checkpoint, atomically, and the trainer's resume points.

LoRA runs store their adapter and a pointer to the base (save_model's lora_base);
merge_into writes an adapter checkpoint's full model for `rlhf checkpoints merge`.

write_checkpoint: rank 0 makes a temporary directory under $RLHF_HOME/checkpoints/, every
rank saves its part into it (save_model), then rank 0 fsyncs, renames it into place and
writes the COMPLETE marker (labeling.registry.training_records). last_trainer_checkpoint
finds where --resume continues; discard_trainer_checkpoints drops them once registered.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from training.errors import TrainingFailed
from training.launch import Launch


def save_model(
    trainer, tokenizer, directory: Path, launch: Launch, *, merge_lora: bool = False,
    load_base=None, lora_base=None,
):  # fmt: skip
    """Save the trained model into `directory` (the same path on every rank: every rank calls
    this). Returns the model as saved on rank 0 when it is whole in memory there (LoRA: with
    the adapter merged in memory, for evaluation), else None.

    - LoRA with `lora_base` (the ResolvedModel the run started from): the adapter is stored,
      not merged (a few MB instead of the whole model), with the tokenizer and
      training_records.BASE_POINTER naming the base by its spec (lora_base.spec: default,
      checkpoint:ID, a directory or hub id), which training/models.py loads and merges.
      Whole model on each rank (one process, DDP): rank 0 saves; FSDP / DeepSpeed: every
      rank calls trainer.save_model, which saves the adapter there.
    - LoRA with merge_lora (no lora_base), whole model on each rank: rank 0 merges the
      adapters in memory and saves model and tokenizer (`rlhf checkpoints merge` does this
      to a stored adapter later).
    - otherwise every rank calls trainer.save_model(directory): FSDP gathers a full state
      dict (switched from SHARDED_STATE_DICT for this save), DeepSpeed ZeRO-3 its 16-bit
      weights; rank 0 writes. LoRA merged under FSDP / DeepSpeed: that saved the adapter,
      and rank 0 merges it into a fresh copy of the base, load_base().
    The pickled training_args.bin the trainer adds is removed: safetensors only.
    """
    directory = Path(directory)
    sharded = bool(
        getattr(trainer, "is_fsdp_enabled", False)
        or getattr(trainer, "is_deepspeed_enabled", False)
    )
    adapter = lora_base is not None
    if adapter and not sharded:
        if not launch.is_main:
            return None
        trainer.model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        _point_at_base(directory, lora_base)
        return trainer.model.merge_and_unload()
    if merge_lora and not sharded:
        if not launch.is_main:
            return None
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return merged
    if getattr(trainer, "is_fsdp_enabled", False):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(directory))
    if not launch.is_main:
        return None
    (directory / "training_args.bin").unlink(missing_ok=True)
    saved = None if sharded else trainer.model
    if adapter:
        tokenizer.save_pretrained(directory)
        _point_at_base(directory, lora_base)
    elif merge_lora:
        from peft import PeftModel

        saved = PeftModel.from_pretrained(load_base(), str(directory)).merge_and_unload()
        for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):
            (directory / name).unlink(missing_ok=True)
        saved.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    if not any(directory.glob("*.safetensors")):
        raise TrainingFailed(
            "the trainer saved no safetensors weights (DeepSpeed ZeRO-3 needs "
            "zero3_save_16bit_model: true); no checkpoint was registered"
        )
    return saved


def save_policy_state(model, tokenizer, directory: Path, *, lora_base=None) -> None:
    """A policy as it is now, into `directory` (one process writes): with `lora_base` its
    adapter and the pointer to the base (as save_model's LoRA case), else the whole model;
    safetensors only. The gold checks of an RL run (training/watch.py) save this way."""
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    if lora_base is not None:
        _point_at_base(directory, lora_base)


def _point_at_base(directory: Path, base) -> None:
    """Beside a saved adapter: the base it applies to, by spec (never the absolute path of
    $RLHF_HOME's cache or a checkpoint folder), and the kind to load it as (peft's task:
    SEQ_CLS is a reward model's). peft's model card README goes: it only names the path."""
    import json

    from labeling.registry import training_records

    if not (directory / training_records.ADAPTER_WEIGHTS).is_file():
        raise TrainingFailed(
            f"the trainer saved no {training_records.ADAPTER_WEIGHTS} for the LoRA run; "
            "no checkpoint was registered"
        )
    config = json.loads((directory / training_records.ADAPTER_CONFIG).read_text())
    kind = "reward" if config.get("task_type") == "SEQ_CLS" else "policy"
    training_records.write_base_pointer(
        directory, base=base.spec or base.path, kind=kind, base_model=base.base_model
    )
    (directory / "README.md").unlink(missing_ok=True)


def write_checkpoint(launch: Launch, name: str, save) -> Path:
    """Write $RLHF_HOME/checkpoints/NAME atomically with every rank taking part: rank 0 makes
    the temp dir, every rank calls save(tmp), all wait for each other, then rank 0 fsyncs,
    renames it into place and writes the COMPLETE marker (labeling.registry.training_records). Every
    rank gets the final path; on a failure rank 0 removes the temp dir."""
    from labeling.registry import training_records

    tmp = launch.share(lambda: training_records.prepare_checkpoint_dir(name))
    try:
        save(tmp)
        launch.barrier()
        return launch.share(lambda: training_records.finish_checkpoint_dir(tmp, name))
    except BaseException:
        if launch.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def last_trainer_checkpoint(run_dir: Path) -> str | None:
    """The newest complete trainer checkpoint (run_dir/checkpoint-N) to resume from, or None.

    Trainer writes trainer_state.json last; a directory whose state is missing, unreadable
    (the process died while writing it) or names another step is incomplete and skipped."""
    import json

    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit():
            continue
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("global_step") == int(step):
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


def discard_trainer_checkpoints(run_dir: Path) -> None:
    """Once the run's checkpoint is registered, its resume points (weights plus optimizer
    state, the largest files a run writes) have served their purpose."""
    import shutil

    for path in Path(run_dir).glob("checkpoint-*"):
        shutil.rmtree(path, ignore_errors=True)


def merge_into(source: Path, target: Path, *, kind: str) -> None:
    """Write the full model of the adapter checkpoint in `source` (its base loaded, the
    adapter merged: training/models.py) into the empty directory `target`, with the
    tokenizer: safetensors only, no adapter files. `rlhf checkpoints merge` calls this."""
    from training.models import load_policy, load_reward_model

    loader = load_reward_model if kind == "reward" else load_policy
    model, tokenizer = loader(str(source))
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
