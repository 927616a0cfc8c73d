"""What every recipe does before its trainer: parse the run's config, check the snapshot,
resolve the base model, then open the recorded run. One function, so the recipes keep
only what differs (their trainer and their checkpoint).

    inputs = prepare(spec, snapshot_kind="sft", model_kind="policy", sessionmaker=None)
    with inputs.recorded_run(call, recipe="training/sft.py") as run:
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from training import cli
from training.spec import Call, RunSpec


@dataclass
class Inputs:
    spec: RunSpec
    config: Any  # the TRL config (SFTConfig, DPOConfig, ...)
    model_config: Any  # TRL's ModelConfig (LoRA settings, model name)
    record: dict[str, Any]  # the config as the run records it
    launch: Any  # training.launch.Launch
    base: str
    files: dict[str, Any]  # the snapshot's files
    rows: dict[str, int] | None  # rows per split (None: the recipe counts its own)
    extra: Any  # what `read` returned from the snapshot (held-out rows, prompts, ...)
    resolved: Any  # training.models.ResolvedModel of the base
    sessionmaker: Any
    timer: cli.Timer

    def recorded_run(
        self, call: Call, *, recipe: str, config: dict[str, Any] | None = None, **fields: Any
    ):
        """training.recorder.recorded_run with what every recipe records."""
        from training.recorder import recorded_run

        return recorded_run(
            self.launch,
            self.sessionmaker,
            timer=self.timer,
            trainer_args=self.config,
            run_id=call.run_id,
            json_output=call.json_output,
            kind=self.spec.kind,
            snapshot_id=self.spec.snapshot_id,
            config={
                **self.record,
                **(config or {}),
                "recipe": recipe,
                "preset": self.spec.preset,
                "base": self.base,
            },  # fmt: skip
            created_by=call.created_by,
            base_checkpoint_id=self.resolved.checkpoint_id,
            **fields,
        )


def prepare(
    spec: RunSpec,
    *,
    snapshot_kind: str | None,
    model_kind: str,
    sessionmaker=None,
    read: Callable[[Any], Any] | None = None,
) -> Inputs:
    """Config first (under torchrun / accelerate launch this also joins the ranks), then the
    snapshot (checked against `snapshot_kind` unless None; `read(snapshot)` may take more from
    it inside the same transaction), then the base model: all before any model loads. Rank 0
    resolves the model first (it caches the default)."""
    from labeling.snapshots import get_snapshot, snapshot_files
    from training import data
    from training.launch import Launch
    from training.models import resolve_model

    sessionmaker = sessionmaker or cli.default_sessionmaker()
    timer = cli.Timer()
    config, model_config, record = spec.parse()
    launch = Launch.current()
    base = spec.base or model_config.model_name_or_path or "default"
    with sessionmaker.begin() as s:
        snapshot = get_snapshot(s, spec.snapshot_id)
        files = snapshot_files(snapshot)
        rows = data.check_snapshot(snapshot, snapshot_kind, files) if snapshot_kind else None
        extra = read(snapshot) if read else None
    resolved = launch.share(lambda: resolve_model(base, kind=model_kind))
    return Inputs(
        spec, config, model_config, record, launch, base, files, rows, extra, resolved,
        sessionmaker, timer,
    )  # fmt: skip
