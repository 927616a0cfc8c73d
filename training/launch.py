"""This process's place in a multi-process launch (torchrun, accelerate launch).

Every rank runs the whole recipe, but there is one run and one checkpoint per launch: global
rank 0 alone writes (the run record, its metrics, its end, the checkpoint's rename and
registration). The TRL config (transformers' TrainingArguments, built by spec.parse_config)
sets up torch.distributed with its own ddp_backend and ddp_timeout; `Launch.current()` then
reads the ranks from accelerate's PartialState and `Launch.share(fn)` runs fn on rank 0 and
hands its result - or its exception - to every rank (torch.distributed.broadcast_object_list).
So every rank gets rank 0's run id (one run directory: the same trainer output_dir for
--resume), the same stop decision at each logging step (NaN/inf, cancel) and the same
checkpoint directory. A single process is a launch of one: share(fn) is fn().
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading

from training.errors import TrainingFailed


class Stopped(KeyboardInterrupt):
    """SIGTERM: torchrun stopping every rank once one has failed, or - for a single process -
    a kill, a shutdown or a scheduler's preemption. Raised in the main thread so that the
    run is recorded as failed (and resumable) instead of being left RUNNING."""


_installed = threading.Event()  # our SIGTERM handler is (or was, until it fired) in place


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
        # SIGTERM (torchrun stopping every rank once one has failed, a kill, a preemption):
        # rank 0 records the run as failed instead of dying with the run left RUNNING.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _stop)
            _installed.set()
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
        """While rank 0 records a failure, a second SIGTERM must not cut it short."""
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _stop
        ):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def release_stop() -> None:
    """After the run is recorded, SIGTERM goes back to its default (a worker or a test process
    that ran the recipe in-process must not keep our handler)."""
    if _installed.is_set() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _installed.clear()


def _portable(error: BaseException | None) -> BaseException | None:
    """The exception itself if it survives pickling (broadcast_object_list), else its text."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return TrainingFailed(f"{type(error).__name__}: {error}")


def leave_process_group() -> None:
    """At the end of a launch, every rank waits for the others and closes the process group:
    left to interpreter exit, gloo's threads may still be joinable when their destructors run,
    and a rank that finished its work aborts ("terminate called without an active
    exception"), failing the whole launch."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()


def is_main_process() -> bool:
    """Global rank 0 of a torchrun / accelerate launch, or a plain single process."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
