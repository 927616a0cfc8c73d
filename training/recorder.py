"""A run's record while it trains: `with recorded_run(...) as run:` around every recipe.

    with recorded_run(launch, sessionmaker, timer=timer, kind="sft", ...) as run:  # running
        trainer = SFTTrainer(..., args=config, callbacks=[run.recorder])  # output_dir: run.dir
        output = run.train(trainer, resume)        # NaN/inf, cancel: no checkpoint
        directory = run.save_model(name, trainer, tokenizer, ...)  # written atomically
        run.finish(output, counts=..., kind="policy", ...)  # registered, run succeeded
    run.result  # {"run_id", "checkpoint_id", "metrics"}

On entry rank 0 records the run as running and every rank gets its id; the recorder (a
TrainerCallback) stores each logging step as a RunMetric row and stops on NaN/inf loss or
grad norm or a cancel request. Any exception inside the block marks the run failed (or
cancelled) with one clear message (other ranks' errors first) and is raised again. Only
global rank 0 writes; see training/launch.py.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labeling.errors import RLHFError
from labeling.settings import load_settings
from training.checkpoint import (
    discard_trainer_checkpoints,
    last_trainer_checkpoint,
    write_checkpoint,
)
from training.cli import stdout_to_stderr
from training.errors import Cancelled, TrainingFailed
from training.launch import Launch, Stopped, release_stop


class RecordedRun:
    """The run inside `with recorded_run(...)`: id, directory, recorder and the steps."""

    def __init__(self, launch: Launch, sessionmaker, run_id: int, snapshot_sha: str | None):
        self.launch, self.sessionmaker = launch, sessionmaker
        self.id, self.snapshot_sha = run_id, snapshot_sha
        self.dir = run_dir(run_id)  # the trainer's output_dir, the same on every rank
        self.recorder = None
        self.timer = None
        self.result: dict[str, Any] | None = None

    def make_recorder(self):
        self.recorder = make_recorder(self.sessionmaker, self.id, self.launch)
        return self.recorder

    def train(self, trainer, resume: bool = False):
        """trainer.train(), from the newest complete trainer checkpoint with --resume, then
        the guards that keep a bad model from becoming a checkpoint."""
        last = None
        if resume:
            last = self.launch.share(lambda: last_trainer_checkpoint(self.dir))
        output = trainer.train(resume_from_checkpoint=last)
        check_result(self.recorder, trainer.model, self.launch)
        return output

    def save(self, name: str, save) -> Path:
        """Every rank calls save(tmp); rank 0 renames it into place (atomically)."""
        return write_checkpoint(self.launch, name, save)

    def save_model(
        self, name: str, trainer, tokenizer, *, merge_lora=False, load_base=None, then=None,
        lora_base=None,
    ):  # fmt: skip
        """The trained model (LoRA: its adapter on lora_base, or merged) as checkpoint NAME,
        written atomically: every rank saves its part; then(model or None, tmp dir) runs on
        rank 0 before the rename."""
        from training.checkpoint import save_model

        def save(directory):
            final = save_model(
                trainer, tokenizer, directory, self.launch, merge_lora=merge_lora,
                load_base=load_base, lora_base=lora_base,
            )  # fmt: skip
            if then is not None and self.launch.is_main:
                then(final, directory)

        return self.save(name, save)

    def finish(self, output, *, counts, keep=("train_",), lead=None, **register):
        """Register the checkpoint (rank 0) and end the run as succeeded. Its metrics, made
        on rank 0: lead (rl: algo), train_loss, steps, counts() (rows, held-out results),
        seconds since the run started, and the last logged values whose names start with
        `keep`."""

        def metrics():
            return {
                **(lead or {}),
                "train_loss": output.training_loss,
                "steps": output.global_step,
                **counts(),
                "seconds": self.timer.seconds(),
                **{k: v for k, v in self.recorder.last.items() if k.startswith(keep)},
            }

        checkpoint_id, values = register_and_finish(
            self.launch,
            self.sessionmaker,
            self.id,
            metrics=metrics,
            recorder=self.recorder,
            run_dir=self.dir,
            **register,
        )
        self.result = {"run_id": self.id, "checkpoint_id": checkpoint_id, "metrics": values}
        return self.result


@contextmanager
def recorded_run(
    launch: Launch,
    sessionmaker,
    *,
    timer,
    trainer_args,
    run_id=None,
    json_output: bool = False,
    **fields,
):
    """Start the run (fields as training_records.start_run takes them; run_id: a run claimed
    by a worker or reopened for --resume), yield a RecordedRun with its recorder, record any
    failure inside the block; see the module docstring. trainer_args (the TRL config)
    gets the run's directory as its output_dir."""
    run_id, sha = start_run(
        launch, sessionmaker, run_id=run_id, claimed=run_id is not None, **fields
    )
    run = RecordedRun(launch, sessionmaker, run_id, sha)
    run.timer = timer
    trainer_args.output_dir = str(run.dir)  # the trainer's resume points live in the run
    beat = Heartbeat(sessionmaker, run_id) if launch.is_main else None
    try:
        with stdout_to_stderr(json_output):
            run.make_recorder()
            yield run
    except BaseException as exc:
        recorder = run.recorder if run.recorder is not None and run.recorder.lines else None
        error = record_failure(sessionmaker, run_id, exc, recorder, launch)
        if error is exc:
            raise
        raise error from exc
    finally:
        if beat is not None:
            beat.stop()
        release_stop()


class Heartbeat:
    """Rank 0 beats the run's heartbeat every HEARTBEAT_SECONDS from a thread, whatever the
    trainer is doing (a PPO step or a generation can take minutes between logging steps), so
    the runs page tells a dead process from a slow one within a few beats (runs.STALE_BEATS)."""

    def __init__(self, sessionmaker, run_id: int):
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(sessionmaker, run_id), name=f"heartbeat-run{run_id}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _loop(self, sessionmaker, run_id: int) -> None:
        from labeling.registry import run_queue

        while not self._stop.wait(run_queue.HEARTBEAT_SECONDS):
            try:
                with sessionmaker.begin() as s:
                    run_queue.heartbeat(s, run_id)
            except Exception:  # a busy or unreachable database: the next beat tries again
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
    resume = f"; `--resume {run_id}` continues from its last trainer checkpoint"
    if isinstance(exc, Stopped) and launch.world_size > 1:
        message = (
            "stopped by the launcher (SIGTERM): torchrun stops every rank when one fails; "
            "no checkpoint was registered"
        )
    elif isinstance(exc, Stopped):
        message = f"stopped by SIGTERM (a kill, a shutdown or a preemption){resume}"
    elif isinstance(exc, KeyboardInterrupt):
        message = f"interrupted (Ctrl-C); no checkpoint was registered{resume}"
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
