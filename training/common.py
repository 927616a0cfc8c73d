"""The few pieces every recipe shares: config from a preset plus TRL-style flags, the
snapshot guard, the run recorder (a TrainerCallback), and saving a checkpoint.

Config is TRL's own: a recipe names its config class (SFTConfig, RewardConfig) and TRL's
ModelConfig (use_peft, lora_r, ...). A preset is a YAML file in training/presets/ (or any
path) whose keys are those classes' field names, either flat or under a section named for
the recipe (`sft:`, `reward:`). Flags after the known ones pass through the way TRL's own
scripts read them (transformers' HfArgumentParser): `--max_steps 2 --learning_rate 1e-5`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput, RLHFError

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "cpu-demo"
MIN_TRAIN_ROWS = 2
# Settings the platform owns: the run's own directory, no hub or tracker uploads, and NaN
# losses logged as they are (transformers would otherwise hide them behind an average).
FORCED = {"report_to": "none", "push_to_hub": False, "logging_nan_inf_filter": False}


class TrainingFailed(RLHFError):
    """The run failed (recorded as failed, no checkpoint registered)."""


# --- config ------------------------------------------------------------------------------


def load_preset(preset: str, section: str) -> dict[str, Any]:
    """A preset's fields for one recipe: `cpu-demo`, `gpu`, or a path to a YAML file."""
    import yaml

    path = Path(preset).expanduser()
    if not path.is_file():
        path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise InvalidInput(f"no preset {preset!r}: use one of {names} or a path to a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"preset {path} is not a mapping of TRL config fields")
    if section in data and isinstance(data[section], dict):
        return dict(data[section])
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def parse_config(config_cls, preset: str, section: str, flags: list[str]) -> tuple[Any, Any, dict]:
    """(trl config, trl.ModelConfig, the fields set explicitly) from a preset and flags.

    Flags are TRL field names (`--max_steps 2`, `--bf16`, `--learning_rate=1e-5`), converted
    to the field's type; an unknown field is an error that names the config class."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    fields = {f.name for f in dataclasses.fields(config_cls)} | {
        f.name for f in dataclasses.fields(ModelConfig)
    }
    values = load_preset(preset, section)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InvalidInput(
            f"preset {preset}: {', '.join(unknown)} not fields of {config_cls.__name__} "
            "or trl.ModelConfig"
        )
    parser = HfArgumentParser((config_cls, ModelConfig))

    def error(message: str):
        raise InvalidInput(f"config flags: {message}")

    parser.error = error
    parser.set_defaults(**{"output_dir": "unset", **values, **FORCED})
    try:
        config, model_config, rest = parser.parse_args_into_dataclasses(
            args=list(flags), return_remaining_strings=True
        )
    except ValueError as exc:  # the config classes' own checks (__post_init__)
        raise InvalidInput(f"{config_cls.__name__} (preset {preset}): {exc}") from exc
    if rest:
        raise InvalidInput(
            f"unknown config flags {' '.join(rest)}: flags after the known ones are fields of "
            f"{config_cls.__name__} or trl.ModelConfig (e.g. --max_steps 2 --learning_rate 1e-5)"
        )
    explicit = set(values)
    for flag in flags:
        if flag.startswith("--"):
            explicit.add(flag[2:].split("=", 1)[0].replace("-", "_"))
    record = {}
    for name in sorted(explicit):
        obj = config if hasattr(config, name) else model_config
        record[name] = getattr(obj, name)
    return config, model_config, record


def peft_config(model_config):
    """A peft LoraConfig when the preset asks for one (use_peft), else None."""
    if not model_config.use_peft:
        return None
    from trl import get_peft_config

    return get_peft_config(model_config)


# --- snapshot ----------------------------------------------------------------------------


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


# --- the run recorder --------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def make_recorder(sessionmaker, run_id: int):
    """A TrainerCallback that stores each logging step as a RunMetric row, stops the run on
    NaN/inf loss or grad norm (or a cancel request), and keeps the log's tail."""
    from transformers import TrainerCallback

    from labeling import training_records

    class RunRecorder(TrainerCallback):
        def __init__(self):
            self.failure: str | None = None
            self.cancelled = False
            self.last: dict[str, Any] = {}
            self.lines: deque[str] = deque(maxlen=200)

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
            self.last.update(values)
            self.lines.append(f"step {state.global_step}: {values}")
            with sessionmaker.begin() as s:
                training_records.log_metrics(s, run_id, step=state.global_step, values=values)
                self.cancelled = training_records.cancel_requested(s, run_id)
            bad = [k for k in ("loss", "grad_norm", "train_loss") if not _finite(values.get(k))]
            if bad and self.failure is None:
                self.failure = (
                    f"non-finite {', '.join(f'{k}={values[k]}' for k in bad)} at step "
                    f"{state.global_step}: training diverged (lower the learning_rate?); "
                    "no checkpoint was registered"
                )
                self.lines.append(self.failure)
            if self.failure or self.cancelled:
                control.should_training_stop = True

        @property
        def log_tail(self) -> str:
            return "\n".join(self.lines)

    return RunRecorder()


def nonfinite_parameters(model) -> list[str]:
    import torch

    return [n for n, p in model.named_parameters() if not torch.isfinite(p).all()][:5]


@contextmanager
def stdout_to_stderr(enabled: bool):
    """With --json, stdout carries only the final JSON: the trainer's prints go to stderr."""
    import sys
    from contextlib import redirect_stdout

    if not enabled:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


class Timer:
    def __init__(self):
        self.start = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self.start, 3)


class Cancelled(TrainingFailed):
    """The run stopped because someone asked (recorded as cancelled)."""


def check_result(recorder, model) -> None:
    """After trainer.train(): the guards that keep a bad model from becoming a checkpoint."""
    if recorder.failure:
        raise TrainingFailed(recorder.failure)
    if recorder.cancelled:
        raise Cancelled("the run was cancelled on request; no checkpoint was registered")
    bad = nonfinite_parameters(model)
    if bad:
        raise TrainingFailed(
            f"non-finite weights after training ({', '.join(bad)}): training diverged; "
            "no checkpoint was registered"
        )


def record_failure(sessionmaker, run_id: int, exc: BaseException, recorder=None) -> BaseException:
    """Mark the run failed (or cancelled) with a clear message; returns the exception the
    caller should raise: `exc` itself for our errors and interrupts, else a TrainingFailed."""
    from labeling import training_records

    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted (Ctrl-C); no checkpoint was registered"
    elif isinstance(exc, RLHFError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    tail = recorder.log_tail if recorder is not None else ""
    try:
        with sessionmaker.begin() as s:
            training_records.fail_run(
                s,
                run_id,
                error=message,
                log_tail=tail,
                metrics=dict(recorder.last) if recorder is not None else None,
                cancelled=isinstance(exc, Cancelled),
            )
    except Exception as record_exc:  # never hide the training error behind a DB error
        print(f"warning: could not record run {run_id} as failed: {record_exc}", file=sys.stderr)
    if isinstance(exc, RLHFError | KeyboardInterrupt):
        return exc
    return TrainingFailed(f"run {run_id} failed: {message}")


def default_sessionmaker():
    from labeling.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine())


def engineer_id(name: str | None, sessionmaker=None) -> int:
    """The id of the engineer or admin running a recipe directly (--user or RLHF_USER)."""
    import os

    from labeling.errors import PermissionDenied
    from labeling.models import Role
    from labeling.users import require_role

    name = name or os.environ.get("RLHF_USER")
    if not name:
        raise PermissionDenied("who is running this? set RLHF_USER=NAME or pass --user NAME")
    with (sessionmaker or default_sessionmaker()).begin() as s:
        return require_role(s, name, Role.engineer, Role.admin).id


def add_arguments(parser, *, base_help: str) -> None:
    """The known arguments of `rlhf train sft|reward` (everything after them is TRL config)."""
    parser.add_argument("--snapshot", type=int, required=True, help="snapshot id to train on")
    parser.add_argument("--base", help=f"{base_help}; checkpoint:ID, a directory or a hub id")
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        help="cpu-demo (default), gpu, or a YAML file whose keys are TRL config fields",
    )
    parser.add_argument("--json", action="store_true", help='print {"run_id", ...} at the end')
    if not any(a.dest == "user" for a in parser._actions):
        parser.add_argument("--user", help="the account you act as (default: $RLHF_USER)")


def print_result(result: dict[str, Any], as_json: bool) -> None:
    import json

    if as_json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    metrics = ", ".join(f"{k}={v}" for k, v in result["metrics"].items())
    print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']} ({metrics})")


def last_trainer_checkpoint(run_dir: Path) -> str | None:
    """The newest complete trainer checkpoint (run_dir/checkpoint-N) to resume from, or None.

    Trainer writes trainer_state.json last; a directory whose state is missing, unreadable
    (the process died while writing it) or names another step is incomplete and skipped."""
    import json

    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit():
            continue
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("global_step") == int(step):
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


def discard_trainer_checkpoints(run_dir: Path) -> None:
    """Once the run's checkpoint is registered, its resume points (weights plus optimizer
    state, the largest files a run writes) have served their purpose."""
    import shutil

    for path in Path(run_dir).glob("checkpoint-*"):
        shutil.rmtree(path, ignore_errors=True)
