"""Every pair counts: preference rows fitted to the reward model's token budget before the
trainer sees them.

TRL's RewardTrainer drops every pair with a side over `max_length` and says nothing. Here
each side (prompt + answer, through the reward tokenizer's chat template, as RewardTrainer
tokenizes it) is cut by training.scoring.fit_conversation - the oldest context turns first,
then the prompt's oldest words, the answer's end only when the answer alone is over the
budget - the same cut the model's scores get at evaluation and in RL. Each side is fitted on
its own, so each keeps as much context as fits beside its own answer.

    pairs = fit_pairs(tokenizer, rows, max_length=256)
    pairs.rows            # [{"chosen": [...], "rejected": [...], "margin": 0.0}, ...]
    pairs.counts()        # {"train_rows": 600, "truncated_rows": 41, "dropped_rows": 1}

A pair is truncated when either side was cut; it is dropped (and counted) only when it
still cannot be trained on: a side over the budget even with an empty answer (a chat
template longer than max_length), or both sides the same tokens after the cut (nothing
left to prefer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.scoring import fit_conversation


@dataclass
class FittedPairs:
    rows: list[dict[str, Any]] = field(default_factory=list)
    train_rows: int = 0
    truncated_rows: int = 0
    dropped_rows: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "train_rows": self.train_rows,
            "truncated_rows": self.truncated_rows,
            "dropped_rows": self.dropped_rows,
        }


def fit_pairs(tokenizer, rows: list[dict[str, Any]], max_length: int | None) -> FittedPairs:
    """Rows with prompt / chosen / rejected conversations (and margin) -> rows with whole
    chosen / rejected conversations, each within max_length tokens, and the counts."""
    out = FittedPairs(train_rows=len(rows))
    for row in rows:
        prompt = list(row.get("prompt") or [])
        chosen, chosen_ids, cut_chosen = fit_conversation(
            tokenizer, prompt + list(row["chosen"]), max_length
        )
        rejected, rejected_ids, cut_rejected = fit_conversation(
            tokenizer, prompt + list(row["rejected"]), max_length
        )
        too_long = max_length and max(len(chosen_ids), len(rejected_ids)) > max_length
        if too_long or chosen_ids == rejected_ids:
            out.dropped_rows += 1
            continue
        out.truncated_rows += bool(cut_chosen or cut_rejected)
        fitted = {"chosen": chosen, "rejected": rejected}
        if "margin" in row:
            fitted["margin"] = float(row["margin"] or 0.0)
        out.rows.append(fitted)
    return out


def read_rows(path) -> list[dict[str, Any]]:
    """A snapshot split's Parquet file as plain rows (prompt, chosen, rejected, margin)."""
    import pyarrow.parquet as pq

    columns = ["prompt", "chosen", "rejected", "margin"]
    table = pq.read_table(path)
    return table.select([c for c in columns if c in table.column_names]).to_pylist()


def as_dataset(pairs: FittedPairs):
    """The fitted rows as a datasets.Dataset for RewardTrainer (implicit-prompt, conversational:
    RewardTrainer tokenizes each side with the chat template and finds every one within
    max_length)."""
    import datasets

    return datasets.Dataset.from_list(pairs.rows)
