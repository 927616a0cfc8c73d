"""Reward-model training on a preference snapshot, with TRL's RewardTrainer and RewardConfig.

    rlhf train reward --snapshot 3 [--base default|minilm|policy:default|checkpoint:ID|DIR]
                      [--preset cpu-demo|gpu|FILE.yaml] [--json] [--max_steps 2 --learning_rate 1e-5]
    python -m reward.train --snapshot 3 ...        (the same; RLHF_USER names the engineer)

Flags after the known ones are RewardConfig / trl.ModelConfig fields, as in TRL's own scripts.
The default base is all-MiniLM-L6-v2 scoring its last token, its new head fitted as a linear
probe on the frozen features; the cpu-demo preset stops there (0 epochs: measured by
bench/reward.py on the HH harmless sample the probe beat 3 epochs of fine-tuning, 0.643
against 0.595-0.611 on the same held-out pairs, in a fifth of the time), the gpu preset
fine-tunes from it (LP-FT). More epochs on a CPU: --num_train_epochs 3. SmolLM2 as the
backbone (a step costs 6-10 MiniLM steps; its frozen features knew no more), on a GPU:
    rlhf train reward --snapshot 3 --base policy:default --use_peft true [--bf16 true --use_cpu true]
Top to bottom:
 1. config: the preset's `reward:` section, then the flags -> RewardConfig + ModelConfig.
 2. the snapshot: a preference snapshot (prompt / chosen / rejected conversations and the
    float `margin` from the labeler's strength) read from its Parquet files; fewer than 2
    training rows fails before any model loads.
 3. the run is recorded (running; config, snapshot id + SHA-256, base checkpoint, host).
 4. the base loads through training/models.py as a sequence classifier with one output
    (`default`: models.REWARD_DEFAULT; `minilm`: all-MiniLM-L6-v2 scoring its last token,
    BERT's SEP doubling as EOS (training/last_token_classifier.py); `policy:default`:
    SmolLM2-135M-Instruct with a new score head). A new head (not a reward checkpoint's, not
    on --resume) starts as a linear probe fitted on the frozen model's features of the
    training pairs (reward/head_init.py, LP-FT); the run records probe_rows, probe_strength,
    probe_cv_accuracy and probe_seconds. Every pair counts:
    each side is cut to max_length tokens (reward/truncation.py: oldest context turns first,
    never the answer unless it alone is over the budget) instead of being dropped by
    RewardTrainer; the run records train_rows, truncated_rows and dropped_rows (pairs that
    still cannot be trained on). With use_peft, LoRA is a sequence-classification adapter:
    the new score head trains in full (peft's modules_to_save). RewardTrainer trains with the
    margin inside the loss: -log sigmoid(r_chosen - r_rejected - margin). Every logging step
    becomes a RunMetric row; NaN/inf in the loss or grad norm fails the run, no checkpoint.
 5. the model (LoRA: the adapter and the score head, on the base) is saved into the checkpoint's temporary directory and evaluated
    on the snapshot's held-out split (reward/evaluate.py: accuracy with its 95% interval,
    ties, by strength, calibration, "longer wins", score mean / std - the train split when
    there is no held-out one): all of it goes into the checkpoint's `evaluation`, the
    accuracy into the run's metrics.
 6. the directory is renamed into place under $RLHF_HOME/checkpoints/ (atomically) and
    registered as a reward checkpoint (parent: the base checkpoint, if the base was one).

Multi-process (`torchrun --nproc_per_node 8 -m reward.train ...`, `accelerate launch ...`,
or `rlhf train reward` under either): every rank trains, rank 0 alone evaluates and writes
the run, its metrics and the checkpoint's registration - one run and one checkpoint per
launch (training/launch.py).
"""

from __future__ import annotations

import sys
from typing import Any

from labeling.errors import InvalidInput
from training import cli
from training.spec import MIN_TRAIN_ROWS, Call, RunSpec

# Scores for score_mean / score_std when a snapshot has no held-out rows: this many train rows.
STATS_ROWS = 256


HELP = "a reward model on a preference snapshot (TRL RewardTrainer)"
BASE_HELP = (
    "model to start from: default, minilm (all-MiniLM-L6-v2), policy:default (SmolLM2-135M "
    "as a classifier), checkpoint:ID, a directory"
)
# `python -m reward.train` standalone, or `rlhf train reward`: make_parser(subparsers)
make_parser = cli.parser_maker("reward", "reward.train", __doc__, help=HELP, base_help=BASE_HELP)


def run(spec: RunSpec, call: Call) -> dict[str, Any]:
    """Train, evaluate, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from labeling.registry import training_records
    from labeling.snapshots import read_split
    from training.prepare import prepare

    spec.require("reward")
    # config, then the snapshot (and its held-out rows) and the base, checked before any model loads
    inputs = prepare(
        spec,
        snapshot_kind="preference",
        model_kind="reward",
        sessionmaker=call.sessionmaker,
        read=lambda snapshot: read_split(snapshot, "heldout"),
    )
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    files, resolved = inputs.files, inputs.resolved
    heldout = inputs.extra
    # the run record: rank 0 writes it, every rank gets its id; a failure inside is recorded
    with inputs.recorded_run(call, recipe="reward/train.py") as run:
        # 4. model, every pair fitted to the budget, trainer
        from trl import RewardTrainer

        from reward import head_init, truncation
        from reward.evaluate import preference_accuracy
        from training.models import has_new_head, load_reward_model

        model, tokenizer = load_reward_model(resolved.path)
        train = truncation.read_rows(files["train"])
        pairs = truncation.fit_pairs(tokenizer, train, config.max_length)
        if len(pairs.rows) < MIN_TRAIN_ROWS:
            raise InvalidInput(
                f"only {len(pairs.rows)} of {pairs.train_rows} pairs fit max_length "
                f"{config.max_length} (even with their answers cut): raise --max_length"
            )
        # the new head starts as a linear probe on the frozen features (LP-FT); a resumed run
        # or a trained reward model goes on from its own
        probe: dict[str, Any] = {}
        if has_new_head(resolved) and not call.resume:
            probe = head_init.fit_head(model, tokenizer, pairs.rows, seed=config.seed)
        trainer = RewardTrainer(
            model=model,
            processing_class=tokenizer,  # BERT's: SEP doubles as EOS
            args=config,
            callbacks=[run.recorder],
            peft_config=reward_peft_config(model_config, model),
            train_dataset=truncation.as_dataset(pairs),
        )
        output = run.train(trainer, call.resume)
        # 5. the model (LoRA: its adapter), saved by every rank into the checkpoint's temporary
        # directory, then evaluated on the held-out split by rank 0 (read back if sharded);
        # without held-out rows, on train rows (score_mean / score_std for RL)
        evaluation: dict[str, Any] = {}
        split, scored = ("heldout", heldout) if heldout else ("train", train[:STATS_ROWS])

        def evaluate(final, directory):
            if final is None:
                final = load_reward_model(str(directory))[0]
            result = preference_accuracy(final, tokenizer, scored, max_length=config.max_length)
            evaluation.update({"split": split, "max_length": config.max_length, **result})

        # 6. rank 0 renames it into place (atomically) and registers it with its lineage
        # (LoRA: the adapter with the score head, on the base, merged when loaded)
        directory = run.save_model(
            training_records.checkpoint_name("reward", run.id, run.snapshot_sha), trainer,
            tokenizer, then=evaluate, lora_base=resolved if model_config.use_peft else None,
        )  # fmt: skip
        return run.finish(
            output, kind="reward", directory=directory, resolved=resolved, config=record,
            evaluation=evaluation,
            counts=lambda: {
                **pairs.counts(),
                **probe,
                "heldout_accuracy": evaluation["accuracy"] if split == "heldout" else None,
                "heldout_n": evaluation["n"] if split == "heldout" else 0,
            },
        )  # fmt: skip


def reward_peft_config(model_config, model=None):
    """LoRA for a reward model: a sequence-classification adapter, so peft trains the new
    score head (`score`, BERT's `classifier`) in full beside the adapters; None without
    use_peft. The last-token encoder classifier's model type is ours, which peft's table of
    default target modules does not know: it gets BERT's (query, value)."""
    from training.last_token_classifier import LastTokenBertForSequenceClassification
    from training.spec import peft_config

    peft = peft_config(model_config)
    if peft is not None:
        peft.task_type = "SEQ_CLS"
        peft.modules_to_save = sorted({*(peft.modules_to_save or []), "score"})
        ours = isinstance(model, LastTokenBertForSequenceClassification)
        if ours and not peft.target_modules:
            peft.target_modules = ["query", "value"]
    return peft


if __name__ == "__main__":
    sys.exit(cli.recipe_main("reward", make_parser(), run, sys.argv[1:]))
