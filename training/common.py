"""The few pieces every recipe shares: config from a preset plus TRL-style flags, the
snapshot guard, the run recorder (a TrainerCallback), and saving a checkpoint.

Config is TRL's own: a recipe names its config class (SFTConfig, RewardConfig) and TRL's
ModelConfig (use_peft, lora_r, ...). A preset is a YAML file in training/presets/ (or any
path) whose keys are those classes' field names, either flat or under a section named for
the recipe (`sft:`, `reward:`). Flags after the known ones pass through the way TRL's own
scripts read them (transformers' HfArgumentParser): `--max_steps 2 --learning_rate 1e-5`.

Multi-process launches (`torchrun --nproc_per_node N -m training.dpo ...`, `accelerate
launch`): every rank runs the whole recipe, but there is one run and one checkpoint per
launch. Global rank 0 alone writes: the run record, its metrics, its end (succeeded or
failed) and the checkpoint's rename, marker and registration. The TRL config (transformers'
TrainingArguments, built by parse_config) sets up torch.distributed with its own ddp_backend
and ddp_timeout; `Launch.current()` then reads the ranks from accelerate's PartialState and
`Launch.share(fn)` runs fn on rank 0 and hands its result - or its exception - to every rank
(torch.distributed.broadcast_object_list). So every rank gets rank 0's run id (one run
directory: the same trainer output_dir for --resume), the same stop decision at each logging
step (NaN/inf, cancel) and the same checkpoint directory. A single process is a launch of
one: share(fn) is fn().
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import shutil
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput, RLHFError
from labeling.settings import load_settings

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


# --- multi-process launches --------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM on a rank of a multi-process launch: torchrun stops every rank when one fails."""


def _stop(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # once: rank 0 must still record the failure
    raise Stopped(f"signal {signum}")


class Launch:
    """This process's place in a launch. `Launch()` is a plain single process;
    `Launch.current()`, called after parse_config, reads the ranks of a torchrun /
    accelerate launch (see the module docstring). Only rank 0 writes; `share` hands its
    results to the other ranks, which must call the same methods in the same order."""

    rank, world_size, is_main = 0, 1, True

    @classmethod
    def current(cls) -> Launch:
        from accelerate import PartialState

        launch = cls()
        state = PartialState()  # set up by TrainingArguments already: this only reads it
        launch.rank, launch.world_size = state.process_index, state.num_processes
        launch.is_main = state.is_main_process
        if launch.world_size > 1:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise TrainingFailed(
                    f"{launch.world_size} processes but no torch.distributed process group: "
                    "launch with torchrun or accelerate launch"
                )
            # torchrun sends SIGTERM to every rank once one has failed: rank 0 then records
            # the run as failed instead of dying silently with the run left RUNNING.
            if (
                threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
            ):
                signal.signal(signal.SIGTERM, _stop)
        return launch

    def share(self, fn):
        """fn() on rank 0 only; every rank returns its result or raises its exception."""
        result = error = None
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:
                error = exc
        if self.world_size > 1:
            import torch.distributed as dist

            box = [result, _portable(error)] if self.is_main else [None, None]
            try:
                dist.broadcast_object_list(box, src=0)
            except BaseException:
                if error is None:
                    raise
            if not self.is_main:
                result, error = box
        if error is not None:
            raise error
        return result

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value) -> list:
        """Every rank's value, in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def ignore_stop(self) -> None:
        """While rank 0 records a failure, torchrun's SIGTERM must not cut it short."""
        if (
            self.world_size > 1
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _stop
        ):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _portable(error: BaseException | None) -> BaseException | None:
    """The exception itself if it survives pickling (broadcast_object_list), else its text."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return TrainingFailed(f"{type(error).__name__}: {error}")


def is_main_process() -> bool:
    """Global rank 0 of a torchrun / accelerate launch, or a plain single process."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def run_dir(run_id: int) -> Path:
    """The run's own directory under $RLHF_HOME/runs/: the trainer's output_dir (its resume
    points) on every rank, since every rank gets the run id from rank 0."""
    return load_settings().home / "runs" / f"run-{int(run_id)}"


def start_run(launch: Launch, sessionmaker, **fields) -> tuple[int, str | None]:
    """Record the run as running (rank 0; fields as training_records.start_run takes them);
    every rank gets (run id, snapshot SHA-256)."""
    from labeling.registry import training_records

    started: list[int] = []

    def start():
        with sessionmaker.begin() as s:
            run = training_records.start_run(s, **fields)
            run_id, sha = run.id, run.snapshot_sha256
        started.append(run_id)
        for stale in run_dir(run_id).glob("rank*.error"):  # from an earlier attempt (--resume)
            stale.unlink(missing_ok=True)
        return run_id, sha

    try:
        return launch.share(start)
    except BaseException as exc:
        if started:  # recorded, but another rank is gone before it got the id: not RUNNING
            record_failure(sessionmaker, started[0], exc, launch=launch)
        raise


def _report_failure(run_id: int, rank: int, message: str) -> None:
    """A rank other than 0 leaves its error where rank 0 reads it when it records the run."""
    try:
        directory = run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"rank{rank}.error").write_text(message)
    except OSError:
        pass


def _reported_failures(run_id: int, own: str) -> list[str]:
    """Other ranks' errors (rank{N}.error in the run directory) that differ from rank 0's."""
    out = []
    paths = run_dir(run_id).glob("rank*.error")
    for path in sorted(paths, key=lambda p: p.stem.removeprefix("rank").zfill(8)):
        try:
            message = path.read_text()
        except OSError:
            continue
        if message and message != own:
            out.append(f"rank {path.stem.removeprefix('rank')}: {message}")
    return out


# --- the checkpoint ----------------------------------------------------------------------


def save_model(
    trainer, tokenizer, directory: Path, launch: Launch, *, merge_lora: bool, load_base=None
):
    """Save the trained model into `directory` (the same path on every rank: every rank calls
    this). Returns the model as saved on rank 0 when it is whole in memory there, else None.

    - LoRA, whole model on each rank (one process, DDP): rank 0 merges the adapters in memory
      and saves model and tokenizer.
    - otherwise every rank calls trainer.save_model(directory): FSDP gathers a full state
      dict (switched from SHARDED_STATE_DICT for this save), DeepSpeed ZeRO-3 its 16-bit
      weights; rank 0 writes. LoRA under FSDP / DeepSpeed: that saved the adapter, and rank
      0 merges it into a fresh copy of the base, load_base().
    The pickled training_args.bin the trainer adds is removed: safetensors only.
    """
    directory = Path(directory)
    sharded = bool(
        getattr(trainer, "is_fsdp_enabled", False)
        or getattr(trainer, "is_deepspeed_enabled", False)
    )
    if merge_lora and not sharded:
        if not launch.is_main:
            return None
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return merged
    if getattr(trainer, "is_fsdp_enabled", False):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(directory))
    if not launch.is_main:
        return None
    (directory / "training_args.bin").unlink(missing_ok=True)
    saved = None if sharded else trainer.model
    if merge_lora:
        from peft import PeftModel

        saved = PeftModel.from_pretrained(load_base(), str(directory)).merge_and_unload()
        for name in ("adapter_model.safetensors", "adapter_config.json", "README.md"):
            (directory / name).unlink(missing_ok=True)
        saved.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    if not any(directory.glob("*.safetensors")):
        raise TrainingFailed(
            "the trainer saved no safetensors weights (DeepSpeed ZeRO-3 needs "
            "zero3_save_16bit_model: true); no checkpoint was registered"
        )
    return saved


def write_checkpoint(launch: Launch, name: str, save) -> Path:
    """Write $RLHF_HOME/checkpoints/NAME atomically with every rank taking part: rank 0 makes
    the temp dir, every rank calls save(tmp), all wait for each other, then rank 0 fsyncs,
    renames it into place and writes the COMPLETE marker (labeling.registry.training_records). Every
    rank gets the final path; on a failure rank 0 removes the temp dir."""
    from labeling.registry import training_records

    tmp = launch.share(lambda: training_records.prepare_checkpoint_dir(name))
    try:
        save(tmp)
        launch.barrier()
        return launch.share(lambda: training_records.finish_checkpoint_dir(tmp, name))
    except BaseException:
        if launch.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- the run recorder --------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def make_recorder(sessionmaker, run_id: int, launch: Launch | None = None):
    """A TrainerCallback that stores each logging step as a RunMetric row, stops the run on
    NaN/inf loss or grad norm (or a cancel request), and keeps the log's tail. Under a
    multi-process launch every rank logs the same (all-reduced) numbers at the same steps;
    rank 0 stores them and decides, and every rank stops together."""
    from transformers import TrainerCallback

    from labeling.registry import training_records

    launch = launch or Launch()

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

            def decide() -> tuple[str | None, bool]:  # rank 0
                with sessionmaker.begin() as s:
                    training_records.log_metrics(s, run_id, step=state.global_step, values=values)
                    cancelled = training_records.cancel_requested(s, run_id)
                bad = [k for k in ("loss", "grad_norm", "train_loss") if not _finite(values.get(k))]
                if not bad or self.failure is not None:
                    return self.failure, cancelled
                failure = (
                    f"non-finite {', '.join(f'{k}={values[k]}' for k in bad)} at step "
                    f"{state.global_step}: training diverged (lower the learning_rate?); "
                    "no checkpoint was registered"
                )
                return failure, cancelled

            failure, self.cancelled = launch.share(decide)
            if failure is not None and self.failure is None:
                self.failure = failure
                self.lines.append(failure)
            if self.failure or self.cancelled:
                control.should_training_stop = True

        @property
        def log_tail(self) -> str:
            return "\n".join(self.lines)

    return RunRecorder()


def nonfinite_parameters(model) -> list[str]:
    """Parameters holding NaN/inf: this rank's shard of them under FSDP (check_result gathers
    every rank's findings)."""
    import torch

    bad = []
    for name, param in model.named_parameters():
        local = param.to_local() if hasattr(param, "to_local") else param  # FSDP2: a DTensor
        if not torch.isfinite(local).all():
            bad.append(name)
    return bad[:5]


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


def check_result(recorder, model, launch: Launch | None = None) -> None:
    """After trainer.train(): the guards that keep a bad model from becoming a checkpoint.
    Every rank raises together: the recorder's decisions are rank 0's, and the weights
    (sharded under FSDP / DeepSpeed) are checked on every rank and the findings gathered."""
    launch = launch or Launch()
    if recorder.failure:
        raise TrainingFailed(recorder.failure)
    if recorder.cancelled:
        raise Cancelled("the run was cancelled on request; no checkpoint was registered")
    bad = nonfinite_parameters(model)
    if launch.world_size > 1:
        bad = sorted({name for names in launch.gather(bad) for name in names})[:5]
    if bad:
        raise TrainingFailed(
            f"non-finite weights after training ({', '.join(bad)}): training diverged; "
            "no checkpoint was registered"
        )


def register_and_finish(
    launch: Launch,
    sessionmaker,
    run_id: int,
    *,
    kind: str,
    directory: Path,
    resolved,
    config: dict[str, Any],
    metrics: Any,
    recorder,
    run_dir: Path,
    evaluation: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Rank 0 registers the checkpoint with its lineage (parent = the base it started from),
    marks the run succeeded with `metrics()` and drops the trainer's resume checkpoints; every
    rank gets (checkpoint_id, metrics)."""
    from labeling.registry import training_records

    def register():
        values = metrics()
        with sessionmaker.begin() as s:
            checkpoint = training_records.register_checkpoint(
                s, kind=kind, directory=directory, run_id=run_id,
                base_model=resolved.base_model, parent_id=resolved.checkpoint_id,
                config=config, evaluation=evaluation,
            )  # fmt: skip
            training_records.finish_run(s, run_id, metrics=values, log_tail=recorder.log_tail)
            checkpoint_id = checkpoint.id
        discard_trainer_checkpoints(run_dir)
        return checkpoint_id, values

    return launch.share(register)


def record_failure(
    sessionmaker, run_id: int, exc: BaseException, recorder=None, launch: Launch | None = None
) -> BaseException:
    """Mark the run failed (or cancelled) with a clear message; returns the exception the
    caller should raise: `exc` itself for our errors and interrupts, else a TrainingFailed.

    Only rank 0 writes. Another rank leaves its error in the run directory, and rank 0 puts
    the other ranks' errors first in the run's error: when one rank fails, rank 0 often only
    sees the consequence (a broken collective, or torchrun's SIGTERM)."""
    from labeling.registry import training_records

    launch = launch or Launch()
    if isinstance(exc, Stopped):
        message = (
            "stopped by the launcher (SIGTERM): torchrun stops every rank when one fails; "
            "no checkpoint was registered"
        )
    elif isinstance(exc, KeyboardInterrupt):
        message = "interrupted (Ctrl-C); no checkpoint was registered"
    elif isinstance(exc, RLHFError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if not launch.is_main:
        if not isinstance(exc, Stopped):
            _report_failure(run_id, launch.rank, message)
    else:
        launch.ignore_stop()
        error = message
        if launch.world_size > 1:
            others = _reported_failures(run_id, message)
            error = "; ".join([*others, f"rank 0: {message}"]) if others else message
        tail = recorder.log_tail if recorder is not None else ""
        try:
            with sessionmaker.begin() as s:
                training_records.fail_run(
                    s,
                    run_id,
                    error=error,
                    log_tail=tail,
                    metrics=dict(recorder.last) if recorder is not None else None,
                    cancelled=isinstance(exc, Cancelled),
                )
        except Exception as record_exc:  # never hide the training error behind a DB error
            print(
                f"warning: could not record run {run_id} as failed: {record_exc}", file=sys.stderr
            )
    if isinstance(exc, RLHFError | KeyboardInterrupt):
        return exc
    return TrainingFailed(f"run {run_id} failed: {message}")


def default_sessionmaker():
    from labeling.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine())


def engineer_id(name: str | None, sessionmaker=None) -> int:
    """The id of the engineer or admin running a recipe directly (--user or RLHF_USER)."""
    import os

    from labeling.accounts.users import require_role
    from labeling.errors import PermissionDenied
    from labeling.models import Role

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
    """Rank 0 prints (the other ranks of a multi-process launch return the same result)."""
    import json

    if not is_main_process():
        return
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
