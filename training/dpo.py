"""Direct preference optimisation (DPO) of a policy on a preference snapshot, with TRL's
DPOTrainer and DPOConfig.

    rlhf train dpo --snapshot 3 --base checkpoint:7 [--preset cpu-demo|gpu|FILE.yaml] [--json]
                   [--use_peft true|false] [--precompute_ref_log_probs true|false]
                   [--max_steps 2 --beta 0.1 --learning_rate 5e-5]
    python -m training.dpo --snapshot 3 --base checkpoint:7 ...   (RLHF_USER names the engineer)

Flags after the known ones are DPOConfig / trl.ModelConfig fields, as in TRL's own scripts.
Top to bottom:
 1. config: the preset's `dpo:` section, then the flags -> DPOConfig + ModelConfig.
 2. the snapshot: a preference snapshot (prompt / chosen / rejected conversations) read from
    its Parquet files; fewer than 2 training rows fails before any model loads. The base must
    be a policy: a policy checkpoint (checkpoint:ID), `default` (SmolLM2-135M-Instruct), a
    directory or a hub id; a reward checkpoint is refused before the run is recorded.
 3. the run is recorded (running; config, snapshot id + SHA-256, base checkpoint, host).
 4. the base loads through training/models.py. The reference policy is the base itself:
      - LoRA (use_peft, the cpu-demo default): the base with its adapters disabled (TRL's
        ref_model=None with peft) - no second copy in memory;
      - precompute_ref_log_probs: the reference log-probabilities of every training row are
        computed once, before the first step, by the untouched base (ref_model=None);
      - otherwise (full fine-tune): an explicit frozen copy of the base is passed as
        ref_model (TRL 1.x would otherwise reload the reference by the model's name).
    Every logging step becomes a RunMetric row; NaN/inf in the loss or grad norm fails the
    run, no checkpoint.
 5. the policy (LoRA: the adapter and a pointer to the base; loading merges it) and
    tokenizer are written atomically under $RLHF_HOME/checkpoints/ and registered as a
    policy checkpoint whose parent is the base.

Multi-process: `torchrun --nproc_per_node 8 -m training.dpo ...` or `accelerate launch
--config_file training/accelerate/multi_gpu.yaml -m training.dpo ...` (or `rlhf train dpo`
under either): every rank trains, rank 0 alone writes the run, its metrics and the
checkpoint's registration - one run and one checkpoint per launch (training/launch.py).
"""

from __future__ import annotations

import sys
from typing import Any

from training import cli
from training.spec import Call, RunSpec

COLUMNS = ["prompt", "chosen", "rejected"]


HELP = "DPO of a policy on a preference snapshot (TRL DPOTrainer)"
BASE_HELP = "policy to start from (default: SmolLM2-135M-Instruct)"
# `python -m training.dpo` standalone, or `rlhf train dpo`: make_parser(subparsers)
make_parser = cli.parser_maker("dpo", "training.dpo", __doc__, help=HELP, base_help=BASE_HELP)


def run(spec: RunSpec, call: Call) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from labeling.registry import training_records
    from training import data
    from training.prepare import prepare
    from training.spec import peft_config

    spec.require("dpo")
    # config, then the snapshot and the base (a policy: a reward checkpoint is refused), checked before any model loads
    inputs = prepare(
        spec, snapshot_kind="preference", model_kind="policy", sessionmaker=call.sessionmaker
    )
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    files, rows, resolved = inputs.files, inputs.rows, inputs.resolved
    # the run record: rank 0 writes it, every rank gets its id; a failure inside is recorded
    with inputs.recorded_run(call, recipe="training/dpo.py") as run:
        # 4. model, reference and trainer
        import copy

        from trl import DPOTrainer

        from training.models import load_policy

        model, tokenizer = load_policy(resolved.path)
        ref_model = None
        if not model_config.use_peft and not config.precompute_ref_log_probs:
            ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model,
            args=config,
            train_dataset=data.load_split(files, "train", COLUMNS, run.dir / "datasets"),
            processing_class=tokenizer,
            peft_config=peft_config(model_config),
            callbacks=[run.recorder],
        )
        output = run.train(trainer, call.resume)
        # 5. the policy (LoRA: its adapter on the base) as a checkpoint: atomically, then
        # registered
        directory = run.save_model(
            training_records.checkpoint_name("dpo", run.id, run.snapshot_sha),
            trainer, tokenizer, lora_base=resolved if model_config.use_peft else None,
        )  # fmt: skip
        return run.finish(
            output, counts=lambda: {"train_rows": rows["train"]},
            keep=("train_", "rewards/", "logps/"),
            kind="policy", directory=directory, resolved=resolved, config=record,
        )  # fmt: skip


if __name__ == "__main__":
    sys.exit(cli.recipe_main("dpo", make_parser(), run, sys.argv[1:]))
