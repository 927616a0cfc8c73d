"""A policy checkpoint enters an arena: it answers the arena's prompts, then it is paired.

    rlhf arena enter --project my-arena --checkpoint 7

After a training run registers a policy checkpoint, `enter_auto_arenas` does this for every
arena project whose settings say `auto_enter` (the default): answers are generated with the
project's sampling settings (labeling/arena DEFAULTS) and the checkpoint is scheduled
against the project's opponents (the current leader, or everyone). A failure here never
fails the training run that triggered it: it is reported and the checkpoint stays registered.

An RL run's gold checks (--gold_check_steps: its policy registered at those steps) enter
first, in --gold_check_arena or else every auto-enter arena: each answers the same prompts
and is scheduled against the run's base alone (`schedule(..., against=base)`), so labelers
judge "step S vs the base" blind; the base first answers the prompts it has not answered.
This runs after training (answers take ~2 min per entry on the CPU), never during it.

On CPU an entry answers at most `cpu_max_prompts` prompts (on CUDA `cuda_max_prompts`; 0 =
all): the first by id, so every contestant answers the same ones; stderr says so when the
cap applies. Progress: one stderr line per batch ("arena demo-arena: answered 4/8 prompts
(50%), 1.1 min, ~1.1 min left") and the same count on the checkpoint's run
(labeling/arena/entries.py), which the runs page shows as "arena entry demo-arena: 4/8".
"""

from __future__ import annotations

import sys
import time
from typing import Any

from sqlalchemy import select

from labeling import arena, generations
from labeling.models import Checkpoint
from labeling.projects import get_project

CAP_SETTING = {"cpu": "cpu_max_prompts", "cuda": "cuda_max_prompts"}


def _say(text: str, progress: bool) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def enter_arena(
    sessionmaker, *, checkpoint_id: int, project: str, opponents: str | None = None,
    progress: bool = True, against: int | None = None, pair: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Answer the arena's prompts (at most the device's cap of them: the first by id, the
    same for every contestant), then schedule (with `against`: paired with that checkpoint
    alone; pair=False: answers only, no tasks). Progress: one stderr line per batch (with
    `progress`) and, on the run that made the checkpoint, arena.record_entry after each."""
    from training.generate import answer_project, device_and_dtype

    with sessionmaker.begin() as s:
        generations.policy_checkpoint(s, checkpoint_id)  # refused before anything is recorded
        row = get_project(s, project)
        name, conf = row.name, arena.settings(row)
        total = generations.count_prompts(s, row.id, split="all")
    device, _dtype = device_and_dtype()
    setting = CAP_SETTING.get(device.type, "cpu_max_prompts")
    cap = int(conf.get(setting) or 0) or None
    if cap is not None and cap < total:
        _say(f"arena {name}: on {device.type.upper()} this entry answers the first {cap} of "
             f"{total} prompts (the same ones for every contestant); `rlhf arena config "
             f"--project {name} --{setting.replace('_', '-')} 0` answers all", progress)  # fmt: skip
        total = cap
    else:
        cap = None  # no cap, or one the arena does not reach
    started = time.perf_counter()

    def record(**values: Any) -> None:
        with sessionmaker.begin() as s:
            arena.record_entry(s, checkpoint_id=checkpoint_id, project=name, **values)

    def batch_done(done: int, work: int, _elapsed: float) -> None:
        # `work` excludes prompts answered before (a re-entry): they count as answered.
        record(answered=total - work + done, seconds=time.perf_counter() - started)

    record(answered=0, total=total, status="answering", seconds=0.0, cap=cap,
           tasks_created=None, error=None)  # fmt: skip
    try:
        generated = answer_project(
            sessionmaker, checkpoint_id=checkpoint_id, project=name, split="all",
            max_new_tokens=int(conf["max_new_tokens"]), temperature=float(conf["temperature"]),
            top_p=float(conf["top_p"]), seed=int(conf["seed"]), progress=progress, limit=cap,
            label=f"arena {name}", on_progress=batch_done,
        )  # fmt: skip
        if generated["truncated"]:
            _say(f"arena {name}: {generated['truncated']} of {generated['responses']} answers "
                 f"were cut at max_new_tokens {conf['max_new_tokens']} (marked for labelers)",
                 progress)  # fmt: skip
        scheduled = {"created": 0, "pairs": 0}
        if pair:
            with sessionmaker.begin() as s:
                scheduled = arena.schedule(
                    s, get_project(s, name), checkpoint_id=checkpoint_id, opponents=opponents,
                    against=against,
                )  # fmt: skip
    except Exception as exc:
        try:
            record(status="failed", error=str(exc), seconds=time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    record(answered=total, status="entered", tasks_created=scheduled["created"],
           seconds=time.perf_counter() - started)  # fmt: skip
    return {
        "project": project,
        "checkpoint_id": checkpoint_id,
        "answers": generated["responses"],
        "answers_skipped": generated["skipped"],
        "tasks_created": scheduled["created"],
        "pairs": scheduled["pairs"],
    }


def enter_gold_checks(sessionmaker, run_id: int, *, progress: bool = True) -> list[dict]:
    """The gold checks of an RL run (--gold_check_steps; labeling/arena/gold_checks.py): each
    checkpoint answers the arena's prompts (--gold_check_arena, else every auto-enter arena)
    and is paired with the base alone; the base first answers the prompts it has not
    answered there (answers only: it is not scheduled against anyone for this). One result
    per check and arena with `gold_check_step` (and `error` where it failed); errors are
    reported, not raised. A run without gold checks: []."""
    with sessionmaker.begin() as s:
        checks = arena.run_gold_checks(s, run_id)
        if not checks:
            return []
        named = arena.gold_check_arena(s, run_id)
        names = [named] if named else [p.name for p in arena.auto_enter_projects(s)]
        base = checks[0]["base_checkpoint_id"]
    results = []
    for name in names:
        try:
            if base is None:
                raise ValueError("the run's base is no checkpoint to judge against")
            # the base's answers (nothing is generated for prompts it answered before)
            enter_arena(sessionmaker, checkpoint_id=base, project=name, progress=progress,
                        pair=False)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the run succeeded; say why entry did not
            print(f"arena {name!r}: the base did not enter: {exc}", file=sys.stderr)
            results.extend(
                {"project": name, "checkpoint_id": c["checkpoint_id"],
                 "gold_check_step": c["step"], "error": str(exc)}
                for c in checks
            )  # fmt: skip
            continue
        for check in checks:
            try:
                out = enter_arena(
                    sessionmaker, checkpoint_id=check["checkpoint_id"], project=name,
                    progress=progress, against=base,
                )  # fmt: skip
                results.append({**out, "gold_check_step": check["step"], "against": base})
            except Exception as exc:  # noqa: BLE001
                print(f"arena {name!r}: gold check at step {check['step']} (checkpoint "
                      f"{check['checkpoint_id']}) did not enter: {exc}",
                      file=sys.stderr)  # fmt: skip
                results.append({"project": name, "checkpoint_id": check["checkpoint_id"],
                                "gold_check_step": check["step"], "error": str(exc)})  # fmt: skip
    return results


def gold_check_summary(results: list[dict]) -> list[dict]:
    """--json's gold_checks: [{"step", "checkpoint_id", "arena", "tasks"}] from the entry
    results (tasks: the new tasks against the base; None where the entry failed)."""
    return [
        {"step": r["gold_check_step"], "checkpoint_id": r["checkpoint_id"],
         "arena": r["project"], "tasks": r.get("tasks_created")}
        for r in results if "gold_check_step" in r
    ]  # fmt: skip


def enter_auto_arenas(sessionmaker, checkpoint_id: int, *, progress: bool = True) -> list[dict]:
    """Enter a new policy checkpoint in every auto-enter arena; errors are reported, not
    raised. When the checkpoint's run made gold checks (an RL run with --gold_check_steps),
    they enter first (enter_gold_checks; their results carry `gold_check_step`)."""
    results = []
    with sessionmaker.begin() as s:
        names = [p.name for p in arena.auto_enter_projects(s)]
        run_id = s.scalar(select(Checkpoint.run_id).where(Checkpoint.id == int(checkpoint_id)))
    if run_id is not None:
        results.extend(enter_gold_checks(sessionmaker, run_id, progress=progress))
    for name in names:
        try:
            results.append(
                enter_arena(
                    sessionmaker, checkpoint_id=checkpoint_id, project=name, progress=progress
                )  # fmt: skip
            )
        except Exception as exc:  # noqa: BLE001 - the run succeeded; say why entry did not
            print(f"arena {name!r}: checkpoint {checkpoint_id} did not enter: {exc}",
                  file=sys.stderr)  # fmt: skip
            results.append({"project": name, "checkpoint_id": checkpoint_id, "error": str(exc)})
    return results


def report(results: list[dict]) -> None:
    """One line per arena on stderr (stdout stays the command's own output, e.g. --json)."""
    for r in results:
        if "error" not in r:
            what = (f"gold check at step {r['gold_check_step']} (checkpoint {r['checkpoint_id']}"
                    f", against the base {r['against']})" if "gold_check_step" in r
                    else f"checkpoint {r['checkpoint_id']}")  # fmt: skip
            print(f"arena {r['project']!r}: {what} entered with {r['answers']} new answers, "
                  f"{r['tasks_created']} new tasks", file=sys.stderr)  # fmt: skip
