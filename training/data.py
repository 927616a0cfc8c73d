"""A snapshot's rows for a trainer: row counts from the Parquet footers, the guard that the
snapshot fits the recipe and has enough rows, and one split as a datasets.Dataset."""

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


def load_split(files: dict[str, Path], split: str, columns: list[str], cache_dir: Path):
    """One split as a datasets.Dataset with only the columns the trainer needs."""
    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files={split: str(files[split])}, split=split, cache_dir=str(cache_dir)
    )
    return ds.select_columns(columns)
