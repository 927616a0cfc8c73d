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
 5. LoRA adapters are merged; the model and tokenizer are written atomically under
    $RLHF_HOME/checkpoints/ and registered as a policy checkpoint whose parent is the base.

Multi-process: `torchrun --nproc_per_node 8 -m training.dpo ...` or `accelerate launch
--config_file training/accelerate/multi_gpu.yaml -m training.dpo ...` (or `rlhf train dpo`
under either): every rank trains, rank 0 alone writes the run, its metrics and the
checkpoint's registration - one run and one checkpoint per launch (training/common.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labeling.errors import RLHFError
from labeling.registry import training_records
from labeling.snapshots import get_snapshot, snapshot_files
from training import common

COLUMNS = ["prompt", "chosen", "rejected"]


def run(
    *,
    snapshot_id: int,
    created_by: int | None,
    base: str | None = None,
    preset: str = common.DEFAULT_PRESET,
    flags: list[str] | tuple[str, ...] = (),
    sessionmaker=None,
    json_output: bool = False,
    run_id: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from trl import DPOConfig

    from training.models import resolve_model

    sessionmaker = sessionmaker or common.default_sessionmaker()
    timer = common.Timer()
    # 1. config (under torchrun / accelerate launch this also joins the ranks together)
    config, model_config, record = common.parse_config(DPOConfig, preset, "dpo", list(flags))
    launch = common.Launch.current()
    base = base or model_config.model_name_or_path or "default"
    # 2. the snapshot and the base (a policy), checked before any model loads
    with sessionmaker.begin() as s:
        snapshot = get_snapshot(s, snapshot_id)
        files = snapshot_files(snapshot)
        rows = common.check_snapshot(snapshot, "preference", files)
    # a reward checkpoint is refused here; rank 0 resolves first (it caches the default)
    resolved = launch.share(lambda: resolve_model(base, kind="policy"))
    # 3. the run record: rank 0 writes it, every rank gets its id
    run_id, snapshot_sha = common.start_run(
        launch,
        sessionmaker,
        kind="dpo",
        snapshot_id=snapshot_id,
        config={**record, "recipe": "training/dpo.py", "preset": preset, "base": base},
        created_by=created_by,
        base_checkpoint_id=resolved.checkpoint_id,
        run_id=run_id,  # a run claimed by a worker or reopened for --resume
        claimed=run_id is not None,
    )
    run_dir = common.run_dir(run_id)  # the trainer's output_dir, the same on every rank
    recorder = None
    try:
        with common.stdout_to_stderr(json_output):
            # 4. model, reference and trainer
            import copy

            from trl import DPOTrainer

            from training.models import load_policy

            model, tokenizer = load_policy(resolved.path)
            ref_model = None
            if not model_config.use_peft and not config.precompute_ref_log_probs:
                ref_model = copy.deepcopy(model).eval().requires_grad_(False)
            config.output_dir = str(run_dir)
            dataset = common.load_split(files, "train", COLUMNS, run_dir / "datasets")
            recorder = common.make_recorder(sessionmaker, run_id, launch)
            trainer = DPOTrainer(
                model=model,
                ref_model=ref_model,
                args=config,
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=common.peft_config(model_config),
                callbacks=[recorder],
            )
            # --resume: continue from the newest complete trainer checkpoint in run_dir
            last = launch.share(lambda: common.last_trainer_checkpoint(run_dir)) if resume else None
            output = trainer.train(resume_from_checkpoint=last)
            common.check_result(recorder, trainer.model, launch)

            # 5. the checkpoint (LoRA merged), written atomically: every rank saves its part,
            # rank 0 renames it into place and registers it with its lineage
            def save(directory):
                common.save_model(
                    trainer,
                    tokenizer,
                    directory,
                    launch,
                    merge_lora=model_config.use_peft,
                    load_base=lambda: load_policy(resolved.path)[0],
                )

            name = training_records.checkpoint_name("dpo", run_id, snapshot_sha)
            directory = common.write_checkpoint(launch, name, save)

        def final_metrics():  # on rank 0, from its recorder
            return {
                "train_loss": output.training_loss,
                "steps": output.global_step,
                "train_rows": rows["train"],
                "seconds": timer.seconds(),
                **{
                    k: v
                    for k, v in recorder.last.items()
                    if k.startswith(("train_", "rewards/", "logps/"))
                },
            }

        checkpoint_id, metrics = common.register_and_finish(
            launch,
            sessionmaker,
            run_id,
            kind="policy",
            directory=directory,
            resolved=resolved,
            config=record,
            metrics=final_metrics,
            recorder=recorder,
            run_dir=run_dir,
        )
    except BaseException as exc:
        error = common.record_failure(sessionmaker, run_id, exc, recorder, launch)
        if error is exc:
            raise
        raise error from exc
    return {"run_id": run_id, "checkpoint_id": checkpoint_id, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.dpo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_arguments(parser, base_help="policy to start from (default: SmolLM2-135M-Instruct)")
    args, flags = parser.parse_known_args(argv)
    try:
        user = common.engineer_id(args.user)
        result = run(
            snapshot_id=args.snapshot,
            created_by=user,
            base=args.base,
            preset=args.preset,
            flags=flags,
            json_output=args.json,
        )
    except RLHFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    common.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
