"""A snapshot's rows for a trainer: row counts from the Parquet footers, the guard that the
snapshot fits the recipe and has enough rows, and one split as a datasets.Dataset.

An sft snapshot of a project with gold answers also holds prompt-only rows (`messages`
without an assistant turn, for verifiable rewards): SFT trains on the rows that end with an
assistant turn (`sft_rows` counts both, `load_split(..., demonstrations_only=True)`), and
`verifiable_problems` gives RL and evaluation the distinct prompts with their gold answers."""

from __future__ import annotations

from pathlib import Path

from labeling.errors import InvalidInput
from training.spec import MIN_TRAIN_ROWS


def snapshot_rows(files: dict[str, Path]) -> dict[str, int]:
    """Row counts of the snapshot's splits, read from the Parquet footers (no model loads)."""
    import pyarrow.parquet as pq

    return {
        split: (pq.ParquetFile(files[split]).metadata.num_rows if files[split].is_file() else 0)
        for split in ("train", "heldout")
    }


def check_snapshot(snapshot, expected_kind: str, files: dict[str, Path]) -> dict[str, int]:
    kind = getattr(snapshot.kind, "value", snapshot.kind)
    if kind != expected_kind:
        raise InvalidInput(
            f"snapshot {snapshot.id} is a {kind} snapshot; this recipe trains on {expected_kind}"
        )
    rows = snapshot_rows(files)
    if rows["train"] < MIN_TRAIN_ROWS:
        raise InvalidInput(
            f"snapshot {snapshot.id} has {rows['train']} training rows: too few to train "
            f"(at least {MIN_TRAIN_ROWS}); label more and take a new snapshot"
        )
    return rows


def ends_with_answer(messages) -> bool:
    """An sft row SFT can learn from: its conversation ends with an assistant turn."""
    return bool(messages) and messages[-1].get("role") == "assistant"


def sft_rows(snapshot, files: dict[str, Path]) -> dict[str, int]:
    """{"train_rows": demonstrations, "skipped_rows": prompt-only rows} of the train split;
    fewer than MIN_TRAIN_ROWS demonstrations fails here, before any model loads."""
    import pyarrow.parquet as pq

    conversations = pq.read_table(files["train"], columns=["messages"]).column(0).to_pylist()
    trainable = sum(1 for m in conversations if ends_with_answer(m))
    skipped = len(conversations) - trainable
    if trainable < MIN_TRAIN_ROWS:
        raise InvalidInput(
            f"snapshot {snapshot.id} has {trainable} training rows with a demonstration "
            f"({skipped} are prompts with only a gold answer): too few for SFT (at least "
            f"{MIN_TRAIN_ROWS}); write demonstrations and take a new snapshot"
        )
    return {"train_rows": trainable, "skipped_rows": skipped}


def load_split(
    files: dict[str, Path],
    split: str,
    columns: list[str],
    cache_dir: Path,
    *,
    demonstrations_only: bool = False,
):
    """One split as a datasets.Dataset with only the columns the trainer needs;
    demonstrations_only keeps the rows whose `messages` end with an assistant turn."""
    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files={split: str(files[split])}, split=split, cache_dir=str(cache_dir)
    )
    if demonstrations_only:
        ds = ds.filter(lambda row: ends_with_answer(row["messages"]))
    return ds.select_columns(columns)


def verifiable_problems(rows: list[dict]) -> tuple[list[dict], int]:
    """The distinct prompts of sft snapshot rows that have a gold answer, as
    [{"prompt": messages without the answer, "answer": gold}], and how many distinct prompts
    had none (left out). The first row of a prompt gives its answer (they all carry the same)."""
    import json

    problems: list[dict] = []
    seen: set[str] = set()
    without = set()
    for row in rows:
        messages = [dict(m) for m in row.get("messages") or []]
        if ends_with_answer(messages):
            messages = messages[:-1]
        if not messages:
            continue
        key = json.dumps(messages, sort_keys=True)
        answer = row.get("answer")
        if answer is None:
            without.add(key)
            continue
        if key not in seen:
            seen.add(key)
            problems.append({"prompt": messages, "answer": str(answer)})
    return problems, len(without - seen)
