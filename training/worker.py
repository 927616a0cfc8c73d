"""The job worker: claim queued training runs from the database and run them.

    rlhf worker [--once] [--poll-seconds 10] [--kinds sft,reward] [--host NAME]
                [--reap-after SECONDS] [--json]

Top to bottom:
 1. claim: labeling.registry.run_queue.claim_next_run, one atomic UPDATE ... RETURNING (FOR UPDATE
    SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite). Any number of workers on any
    number of hosts can share one PostgreSQL: each queued run is claimed exactly once.
 2. config: the run's config is {"preset": ..., "base": ..., TRL field: value, ...} (the UI's
    "launch training" form, `rlhf train ... --queue`). training.spec.RunSpec.from_run turns
    it into the same preset + flags the CLI passes (`--learning_rate 5e-07 --max_steps 2`),
    so the recipe parses it the same way.
 3. run: the recipe for run.kind (training.sft, reward.train, training.dpo, training.rl -
    which runs our PPO, training/ppo.py, for algo ppo), imported only now, with run_id= the
    claimed run. A kind whose recipe is not installed fails that run with a message that
    says so; the worker goes on with the next one.
 4. heartbeats and cancel: the recipe's recorder beats the heartbeat and checks
    cancel_requested at every logging step (a queued run is cancelled by the UI at once and
    never claimed). SIGTERM / Ctrl-C stop the worker and mark its run failed; a failed run
    continues from its last trainer checkpoint with `rlhf train KIND --resume ID`.
"""

from __future__ import annotations

import importlib
import json
import signal
import socket
import sys
import time
from typing import Any

from labeling.errors import RLHFError
from labeling.models import RunStatus, TrainingRun
from labeling.registry import run_queue, runs, training_records
from training.spec import Call, RunSpec

RECIPES = {
    "sft": "training.sft",
    "reward": "reward.train",
    "dpo": "training.dpo",
    "rl": "training.rl",
}


def recipe_for(kind: str):
    """The recipe's run() for a run kind, imported now (torch loads here, not before)."""
    module_name = RECIPES.get(kind)
    if module_name is None:
        raise RLHFError(f"no recipe for run kind {kind!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise RLHFError(
                f"this worker has no {kind} recipe ({module_name} is not installed here); "
                f"run workers for {kind} runs where it is, or use --kinds to skip them"
            ) from exc
        raise
    return module.run


def run_claimed(
    run: TrainingRun, sessionmaker, *, resume: bool = False, extra_flags=(), json_output=False
):
    """Run one RUNNING run (claimed, or reopened for --resume) through its recipe.

    Returns the recipe's {"run_id", "checkpoint_id", "metrics"}. On failure the run is
    recorded failed (the recipe does that once its run has started; before that, here)."""
    kind = getattr(run.kind, "value", run.kind)
    try:
        recipe = recipe_for(kind)
        spec = RunSpec.from_run(run, extra_flags)  # the run's config, as the CLI would pass it
        call = Call(created_by=run.created_by, sessionmaker=sessionmaker, json_output=json_output,
                    run_id=run.id, resume=resume)  # fmt: skip
        return recipe(spec, call)
    except BaseException as exc:
        _fail_if_running(sessionmaker, run.id, exc)
        raise


def _fail_if_running(sessionmaker, run_id: int, exc: BaseException) -> None:
    """The recipe failed before it recorded its run (bad config, missing recipe, missing
    snapshot): the claimed run must not stay RUNNING forever."""
    if isinstance(exc, KeyboardInterrupt):
        message = "the worker was stopped (SIGTERM / Ctrl-C); resume with --resume"
    elif isinstance(exc, RLHFError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    from training.launch import is_main_process

    if not is_main_process():  # `rlhf train --resume` under torchrun: rank 0 records it
        return
    try:
        with sessionmaker.begin() as s:
            run = runs.get_run(s, run_id)
            if RunStatus(run.status) == RunStatus.running:
                training_records.fail_run(s, run_id, error=message)
    except Exception as record_exc:  # never hide the real error
        print(f"warning: could not record run {run_id} as failed: {record_exc}", file=sys.stderr)


# Runs whose checkpoint is a policy: it can answer prompts and enter arenas.
POLICY_KINDS = ("sft", "dpo", "rl")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def work(
    sessionmaker,
    *,
    once: bool = False,
    poll_seconds: float = 10.0,
    kinds: list[str] | None = None,
    host: str | None = None,
    reap_after: float | None = None,
    json_output: bool = False,
    max_runs: int | None = None,
) -> list[dict[str, Any]]:
    """Claim and run queued runs until none is left (once=True) or forever (polling).
    Returns one summary per run it took: {"run_id", "kind", "status", ...}."""
    host = host or socket.gethostname()
    done: list[dict[str, Any]] = []
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _raise_interrupt)
        except ValueError:  # not the main thread
            pass
    while max_runs is None or len(done) < max_runs:
        with sessionmaker.begin() as s:
            if reap_after is not None:
                for run_id in run_queue.reap_stale_runs(s, stale_after=reap_after):
                    _say({"run_id": run_id, "status": "failed", "error": "stale"}, json_output)
            run = run_queue.claim_next_run(s, host=host, kinds=kinds)
            if run is not None:
                s.expunge(run)
        if run is None:
            if once:
                break
            time.sleep(poll_seconds)
            continue
        kind = getattr(run.kind, "value", run.kind)
        _say({"run_id": run.id, "kind": kind, "status": "running", "host": host}, json_output)
        summary: dict[str, Any] = {"run_id": run.id, "kind": kind}
        try:
            result = run_claimed(run, sessionmaker, json_output=json_output)
            summary.update(status="succeeded", checkpoint_id=result["checkpoint_id"])
            summary["metrics"] = result["metrics"]
            if kind in POLICY_KINDS:
                from training.arena_entry import enter_auto_arenas

                summary["arena"] = enter_auto_arenas(
                    sessionmaker, result["checkpoint_id"], progress=not json_output
                )
        except KeyboardInterrupt:
            _say({**summary, "status": "failed", "error": "worker stopped"}, json_output)
            raise
        except Exception as exc:
            with sessionmaker.begin() as s:
                row = runs.get_run(s, run.id)
                summary.update(status=RunStatus(row.status).value, error=row.error or str(exc))
        done.append(summary)
        _say(summary, json_output)
    return done


def _say(summary: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(json.dumps(summary, default=str), flush=True)
        return
    text = f"run {summary['run_id']}"
    if summary.get("kind"):
        text += f" ({summary['kind']})"
    text += f": {summary['status']}"
    if summary.get("checkpoint_id") is not None:
        text += f", checkpoint {summary['checkpoint_id']}"
    if summary.get("error"):
        text += f": {summary['error']}"
    print(text, flush=True)
