"""Reward-model evaluation: does the model score the chosen answer above the rejected one,
and is that more than "the longer answer wins"?

    rlhf eval reward --checkpoint 4 --snapshot 3 --split heldout --json
    -> {"accuracy": 0.75, "ci_low": 0.62, "ci_high": 0.85, "n": 48, "ties": 0,
        "longer_wins_accuracy": 0.58, "ece": 0.07, "accuracy_by_strength": {...}, ...}

Each preference row (prompt, chosen, rejected) is scored the way RewardTrainer sees it:
prompt + answer through the tokenizer's chat template, one scalar per conversation, cut to
the budget as training cuts it (training/scoring.py). Rows are read from the snapshot's
Parquet file, never the labeling tables. With d = reward(chosen) - reward(rejected):
  accuracy         share of rows with d > 0; a tie (d == 0) counts half; `ties` counts them.
  ci_low, ci_high  the 95% Wilson score interval of accuracy over n rows.
  accuracy_by_strength   {"1"|"2"|"3"|"none": {"accuracy", "n"}}: the labeler's strength,
                   read back from the snapshot's `margin` column (labeling/snapshots.py).
  ece              calibration of sigmoid(d) as P(chosen preferred): 10 equal-width bins of
                   probability over [0, 1], each pair counted in both orders (as when A/B is
                   shown at random; Bai et al. 2022): sum over bins of the bin's share times
                   |observed share preferred - mean probability|. The same as binning the
                   confidence max(p, 1 - p) against accuracy.
  longer_wins_accuracy   the baseline "the longer answer (in characters) wins" on the same
                   rows, equal lengths counting half: a model near it may only have learned
                   length.
  score_mean, score_std  over all 2n scores (chosen and rejected answers): RL normalises the
                   reward model's scores with them (training/ppo.py).
  truncated        conversations cut to the budget before scoring.
mean_margin, mean_chosen, mean_rejected as before; every value is None when there are no rows.
"""

from __future__ import annotations

import math
from typing import Any

from labeling.errors import InvalidInput
from training.scoring import fit_ids, score, score_ids

__all__ = [
    "score",
    "preference_accuracy",
    "preference_metrics",
    "wilson_interval",
    "evaluate_checkpoint",
]

Z95 = 1.959963984540054
ECE_BINS = 10
MAX_LENGTH = 512  # the scoring budget when a checkpoint does not record its own


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (successes may be fractional: ties count
    half); (0.0, 1.0) with no observations."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def expected_calibration_error(diffs: list[float], bins: int = ECE_BINS) -> float | None:
    """ECE of sigmoid(d) as the probability that the chosen answer is preferred, each pair in
    both orders (p, preferred) and (1 - p, not preferred); None with no pairs."""
    if not diffs:
        return None
    counts, probs, hits = [0] * bins, [0.0] * bins, [0.0] * bins
    for d in diffs:
        p = _sigmoid(d)
        for prob, outcome in ((p, 1.0), (1 - p, 0.0)):
            b = min(int(prob * bins), bins - 1)
            counts[b] += 1
            probs[b] += prob
            hits[b] += outcome
    total = 2 * len(diffs)
    return sum(abs(hits[b] - probs[b]) / total for b in range(bins) if counts[b])


def _answer_chars(conversation) -> int:
    return sum(len(m.get("content") or "") for m in conversation)


def _strength(margin: Any) -> str:
    """The labeler's strength back from the snapshot's margin (labeling.snapshots.MARGINS)."""
    from labeling.snapshots import MARGINS

    for strength, value in MARGINS.items():
        if margin is not None and abs(float(margin) - value) < 1e-9:
            return str(strength)
    return "none"


def _share(wins: float, n: int) -> float | None:
    return wins / n if n else None


def preference_metrics(
    rows: list[dict[str, Any]], chosen: list[float], rejected: list[float]
) -> dict[str, Any]:
    """Every metric of the module docstring from the rows and their two scores (no model)."""
    n = len(rows)
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    wins = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs]
    longer = []
    for row in rows:
        a, b = _answer_chars(row["chosen"]), _answer_chars(row["rejected"])
        longer.append(1.0 if a > b else 0.5 if a == b else 0.0)
    by_strength: dict[str, list[float]] = {}
    for row, win in zip(rows, wins, strict=True):
        by_strength.setdefault(_strength(row.get("margin")), []).append(win)
    scores = [*chosen, *rejected]
    mean = sum(scores) / len(scores) if scores else None
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) if scores else None
    low, high = wilson_interval(sum(wins), n) if n else (None, None)
    return {
        "accuracy": _share(sum(wins), n),
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "ties": sum(d == 0 for d in diffs),
        "accuracy_by_strength": {
            k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_strength.items())
        },
        "ece": expected_calibration_error(diffs),
        "longer_wins_accuracy": _share(sum(longer), n),
        "mean_margin": _share(sum(diffs), n),
        "mean_chosen": _share(sum(chosen), n),
        "mean_rejected": _share(sum(rejected), n),
        "score_mean": mean,
        "score_std": std,
    }


def preference_accuracy(
    model,
    tokenizer,
    rows: list[dict[str, Any]],
    *,
    batch_size: int = 16,
    max_length: int | None = MAX_LENGTH,
) -> dict[str, Any]:
    """Score both sides of every row and compute the metrics (the module docstring)."""
    for row in rows[:1]:
        if not {"chosen", "rejected"} <= set(row):
            raise InvalidInput("reward evaluation needs a preference snapshot (chosen/rejected)")
    prompts = [list(r.get("prompt") or []) for r in rows]
    conversations = [
        p + list(r[side])
        for side in ("chosen", "rejected")
        for p, r in zip(prompts, rows, strict=True)
    ]
    ids, truncated = fit_ids(tokenizer, conversations, max_length)
    scores = score_ids(model, tokenizer.pad_token_id, ids, batch_size=batch_size) if ids else []
    chosen, rejected = scores[: len(rows)], scores[len(rows) :]
    return {**preference_metrics(rows, chosen, rejected), "truncated": truncated}


def checkpoint_max_length(checkpoint) -> int:
    """The budget the checkpoint was trained with (its evaluation or config), else MAX_LENGTH."""
    value = (checkpoint.evaluation or {}).get("max_length") or (checkpoint.config or {}).get(
        "max_length"
    )
    return int(value) if isinstance(value, int) and value > 0 else MAX_LENGTH


def evaluate_checkpoint(
    session, *, checkpoint_id: int, snapshot_id: int, split: str = "heldout"
) -> dict[str, Any]:
    """Score a registered reward checkpoint on one split of a preference snapshot."""
    from labeling.registry import training_records
    from labeling.snapshots import get_snapshot, read_split
    from training.models import load_reward_model

    snapshot = get_snapshot(session, snapshot_id)
    kind = getattr(snapshot.kind, "value", snapshot.kind)
    if kind != "preference":
        raise InvalidInput(f"snapshot {snapshot_id} is a {kind} snapshot, not a preference one")
    rows = read_split(snapshot, split)
    checkpoint = training_records.get_checkpoint(session, int(checkpoint_id))
    model, tokenizer = load_reward_model(f"checkpoint:{int(checkpoint_id)}", session=session)
    result = preference_accuracy(
        model, tokenizer, rows, max_length=checkpoint_max_length(checkpoint)
    )
    return {
        **result,
        "checkpoint_id": int(checkpoint_id),
        "snapshot_id": snapshot.id,
        "snapshot_sha256": snapshot.sha256,
        "split": split,
    }
