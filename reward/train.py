"""Reward-model training on a preference snapshot, with TRL's RewardTrainer and RewardConfig.

    rlhf train reward --snapshot 3 [--base default|checkpoint:ID|DIR|org/name]
                      [--preset cpu-demo|gpu|FILE.yaml] [--json] [--max_steps 2 --learning_rate 1e-5]
    python -m reward.train --snapshot 3 ...        (the same; RLHF_USER names the engineer)

Flags after the known ones are RewardConfig / trl.ModelConfig fields, as in TRL's own scripts.
Top to bottom:
 1. config: the preset's `reward:` section, then the flags -> RewardConfig + ModelConfig.
 2. the snapshot: a preference snapshot (prompt / chosen / rejected conversations and the
    float `margin` from the labeler's strength) read from its Parquet files; fewer than 2
    training rows fails before any model loads.
 3. the run is recorded (running; config, snapshot id + SHA-256, base checkpoint, host).
 4. the base loads through training/models.py as a sequence classifier with one output
    (default: all-MiniLM-L6-v2; BERT's SEP doubles as EOS). RewardTrainer trains with the
    margin inside the loss: -log sigmoid(r_chosen - r_rejected - margin). Every logging step
    becomes a RunMetric row; NaN/inf in the loss or grad norm fails the run, no checkpoint.
 5. the model (LoRA merged) is saved into the checkpoint's temporary directory and evaluated
    on the snapshot's held-out split (reward/evaluate.py): the accuracy goes into the
    checkpoint's `evaluation` and the run's metrics.
 6. the directory is renamed into place under $RLHF_HOME/checkpoints/ (atomically) and
    registered as a reward checkpoint (parent: the base checkpoint, if the base was one).

Multi-process (`torchrun --nproc_per_node 8 -m reward.train ...`, `accelerate launch ...`,
or `rlhf train reward` under either): every rank trains, rank 0 alone evaluates and writes
the run, its metrics and the checkpoint's registration - one run and one checkpoint per
launch (training/common.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from labeling.errors import RLHFError
from labeling.registry import training_records
from labeling.snapshots import get_snapshot, read_split, snapshot_files
from training import common

COLUMNS = ["prompt", "chosen", "rejected", "margin"]


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
    """Train, evaluate, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from trl import RewardConfig

    from training.models import resolve_model

    sessionmaker = sessionmaker or common.default_sessionmaker()
    timer = common.Timer()
    # 1. config (under torchrun / accelerate launch this also joins the ranks together)
    config, model_config, record = common.parse_config(RewardConfig, preset, "reward", list(flags))
    launch = common.Launch.current()
    base = base or model_config.model_name_or_path or "default"
    # 2. the snapshot, checked before any model loads
    with sessionmaker.begin() as s:
        snapshot = get_snapshot(s, snapshot_id)
        files = snapshot_files(snapshot)
        rows = common.check_snapshot(snapshot, "preference", files)
        heldout = read_split(snapshot, "heldout")
    resolved = launch.share(lambda: resolve_model(base, kind="reward"))
    # 3. the run record: rank 0 writes it, every rank gets its id
    run_id, snapshot_sha = common.start_run(
        launch,
        sessionmaker,
        kind="reward",
        snapshot_id=snapshot_id,
        config={**record, "recipe": "reward/train.py", "preset": preset, "base": base},
        created_by=created_by,
        base_checkpoint_id=resolved.checkpoint_id,
        run_id=run_id,  # a run claimed by a worker or reopened for --resume
        claimed=run_id is not None,
    )
    run_dir = common.run_dir(run_id)  # the trainer's output_dir, the same on every rank
    recorder = None
    try:
        with common.stdout_to_stderr(json_output):
            # 4. model and trainer
            from trl import RewardTrainer

            from reward.evaluate import preference_accuracy
            from training.models import load_reward_model

            model, tokenizer = load_reward_model(resolved.path)
            config.output_dir = str(run_dir)
            dataset = common.load_split(files, "train", COLUMNS, run_dir / "datasets")
            recorder = common.make_recorder(sessionmaker, run_id, launch)
            trainer = RewardTrainer(
                model=model,
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
            # 5. the model (LoRA merged), saved by every rank into the checkpoint's temporary
            # directory, then evaluated on the held-out split by rank 0 (read back if sharded)
            evaluation: dict[str, Any] = {}

            def save(directory):
                final = common.save_model(
                    trainer,
                    tokenizer,
                    directory,
                    launch,
                    merge_lora=model_config.use_peft,
                    load_base=lambda: load_reward_model(resolved.path)[0],
                )
                if launch.is_main:
                    if final is None:
                        final = load_reward_model(str(directory))[0]
                    accuracy = preference_accuracy(final, tokenizer, heldout)
                    evaluation.update({"split": "heldout", **accuracy})

            # 6. rank 0 renames it into place (atomically) and registers it with its lineage
            name = training_records.checkpoint_name("reward", run_id, snapshot_sha)
            directory = common.write_checkpoint(launch, name, save)

        def final_metrics():  # on rank 0, from its recorder
            return {
                "train_loss": output.training_loss,
                "steps": output.global_step,
                "train_rows": rows["train"],
                "heldout_accuracy": evaluation["accuracy"],
                "heldout_n": evaluation["n"],
                "seconds": timer.seconds(),
                **{k: v for k, v in recorder.last.items() if k.startswith("train_")},
            }

        checkpoint_id, metrics = common.register_and_finish(
            launch,
            sessionmaker,
            run_id,
            kind="reward",
            directory=directory,
            resolved=resolved,
            config=record,
            metrics=final_metrics,
            recorder=recorder,
            run_dir=run_dir,
            evaluation=evaluation,
        )
    except BaseException as exc:
        error = common.record_failure(sessionmaker, run_id, exc, recorder, launch)
        if error is exc:
            raise
        raise error from exc
    return {"run_id": run_id, "checkpoint_id": checkpoint_id, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reward.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_arguments(parser, base_help="model to start from (default: all-MiniLM-L6-v2)")
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
