"""Reward-model evaluation: does the model score the chosen answer above the rejected one?

    rlhf eval reward --checkpoint 4 --snapshot 3 --split heldout --json
    -> {"accuracy": 0.75, "n": 8, "ties": 0, "mean_margin": 0.41, ...}

Each preference row (prompt, chosen, rejected) is scored the way RewardTrainer sees it:
prompt + answer through the tokenizer's chat template, one scalar per conversation.
accuracy = share of rows with reward(chosen) > reward(rejected) (a tie counts as wrong);
n = rows scored. Rows are read from the snapshot's Parquet file, never the labeling tables.
"""

from __future__ import annotations

from typing import Any

from labeling.errors import InvalidInput
from training.scoring import score

__all__ = ["score", "preference_accuracy", "evaluate_checkpoint"]


def preference_accuracy(
    model, tokenizer, rows: list[dict[str, Any]], *, batch_size: int = 16
) -> dict[str, Any]:
    """{"accuracy", "n", "ties", "mean_margin", "mean_chosen", "mean_rejected"}; accuracy is
    None when there are no rows."""
    for row in rows[:1]:
        if not {"chosen", "rejected"} <= set(row):
            raise InvalidInput("reward evaluation needs a preference snapshot (chosen/rejected)")
    if not rows:
        return {
            "accuracy": None,
            "n": 0,
            "ties": 0,
            "mean_margin": None,
            "mean_chosen": None,
            "mean_rejected": None,
        }
    prompts = [list(r.get("prompt") or []) for r in rows]
    chosen = score(
        model,
        tokenizer,
        [p + list(r["chosen"]) for p, r in zip(prompts, rows, strict=True)],
        batch_size=batch_size,
    )
    rejected = score(
        model,
        tokenizer,
        [p + list(r["rejected"]) for p, r in zip(prompts, rows, strict=True)],
        batch_size=batch_size,
    )
    n = len(rows)
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "accuracy": sum(d > 0 for d in diffs) / n,
        "n": n,
        "ties": sum(d == 0 for d in diffs),
        "mean_margin": sum(diffs) / n,
        "mean_chosen": sum(chosen) / n,
        "mean_rejected": sum(rejected) / n,
    }


def evaluate_checkpoint(
    session, *, checkpoint_id: int, snapshot_id: int, split: str = "heldout"
) -> dict[str, Any]:
    """Score a registered reward checkpoint on one split of a preference snapshot."""
    from labeling.snapshots import get_snapshot, read_split
    from training.models import load_reward_model

    snapshot = get_snapshot(session, snapshot_id)
    kind = getattr(snapshot.kind, "value", snapshot.kind)
    if kind != "preference":
        raise InvalidInput(f"snapshot {snapshot_id} is a {kind} snapshot, not a preference one")
    rows = read_split(snapshot, split)
    model, tokenizer = load_reward_model(f"checkpoint:{int(checkpoint_id)}", session=session)
    result = preference_accuracy(model, tokenizer, rows)
    return {
        **result,
        "checkpoint_id": int(checkpoint_id),
        "snapshot_id": snapshot.id,
        "snapshot_sha256": snapshot.sha256,
        "split": split,
    }
