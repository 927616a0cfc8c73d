"""Supervised fine-tuning (SFT) on an sft snapshot, with TRL's SFTTrainer and SFTConfig.

    rlhf train sft --snapshot 3 [--base default|checkpoint:ID|DIR|org/name]
                   [--preset cpu-demo|gpu|FILE.yaml] [--json] [--max_steps 2 --learning_rate 1e-5]
    python -m training.sft --snapshot 3 ...        (the same; RLHF_USER names the engineer)

Flags after the known ones are SFTConfig / trl.ModelConfig fields, as in TRL's own scripts.
Top to bottom:
 1. config: the preset's `sft:` section, then the flags -> SFTConfig + ModelConfig (LoRA when
    use_peft). A bad field fails here, before anything else.
 2. the snapshot: an sft snapshot (`messages` conversations) read from its Parquet files,
    never from the labeling tables. Rows without an assistant turn (prompts that carry only a
    gold answer, for verifiable rewards) are skipped and counted (`skipped_rows`); fewer than
    2 training rows with a demonstration fails before any model loads.
 3. the run is recorded (running; config, snapshot id + SHA-256, base checkpoint, host).
 4. the base policy loads through training/models.py (safetensors only) and SFTTrainer trains
    with the tokenizer's chat template. Every logging step becomes a RunMetric row; NaN/inf
    in the loss or grad norm stops the run: failed, no checkpoint.
 5. the model (LoRA: the adapter, a few MB, and a pointer to the base; loading merges it)
    and tokenizer are written atomically under $RLHF_HOME/checkpoints/ and registered as a
    policy checkpoint whose parent is the base (`rlhf checkpoints merge` stores it whole).

Multi-process: `torchrun --nproc_per_node 8 -m training.sft ...` or `accelerate launch
--config_file training/accelerate/fsdp.yaml -m training.sft ...` (or `rlhf train sft` under
either): every rank trains, rank 0 alone writes the run, its metrics and the checkpoint's
registration - one run and one checkpoint per launch (training/launch.py).
"""

from __future__ import annotations

import sys
from typing import Any

from training import cli
from training.spec import Call, RunSpec

HELP = "supervised fine-tuning on an sft snapshot (TRL SFTTrainer)"
BASE_HELP = "policy to start from (default: SmolLM2-135M-Instruct)"
# `python -m training.sft` standalone, or `rlhf train sft`: make_parser(subparsers)
make_parser = cli.parser_maker("sft", "training.sft", __doc__, help=HELP, base_help=BASE_HELP)


def run(spec: RunSpec, call: Call) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from labeling.registry import training_records
    from labeling.snapshots import snapshot_files
    from training import data
    from training.prepare import prepare
    from training.spec import peft_config

    spec.require("sft")
    # config, then the snapshot and the base (a policy), checked before any model loads
    inputs = prepare(
        spec, snapshot_kind="sft", model_kind="policy", sessionmaker=call.sessionmaker,
        read=lambda snapshot: data.sft_rows(snapshot, snapshot_files(snapshot)),
    )  # fmt: skip
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    files, counts, resolved = inputs.files, inputs.extra, inputs.resolved
    # the run record: rank 0 writes it, every rank gets its id; a failure inside is recorded
    with inputs.recorded_run(call, recipe="training/sft.py") as run:
        # 4. model and trainer
        from trl import SFTTrainer

        from training.models import load_policy

        model, tokenizer = load_policy(resolved.path)
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=data.load_split(
                files, "train", ["messages"], run.dir / "datasets", demonstrations_only=True
            ),
            processing_class=tokenizer,
            peft_config=peft_config(model_config),
            callbacks=[run.recorder],
        )
        output = run.train(trainer, call.resume)
        # 5. the model (LoRA: its adapter on the base), written atomically, registered as a
        # policy with its lineage
        name = training_records.checkpoint_name("sft", run.id, run.snapshot_sha)
        directory = run.save_model(
            name, trainer, tokenizer, lora_base=resolved if model_config.use_peft else None
        )
        return run.finish(
            output, counts=lambda: dict(counts), kind="policy",
            directory=directory, resolved=resolved, config=record,
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.recipe_main("sft", make_parser(), run, sys.argv[1:]))
