"""A policy checkpoint enters an arena: it answers the arena's prompts, then it is paired.

    rlhf arena enter --project my-arena --checkpoint 7

After a training run registers a policy checkpoint, `enter_auto_arenas` does this for every
arena project whose settings say `auto_enter` (the default): answers are generated with the
project's sampling settings (labeling/arena DEFAULTS) and the checkpoint is scheduled
against the project's opponents (the current leader, or everyone). A failure here never
fails the training run that triggered it: it is reported and the checkpoint stays registered.

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

from labeling import arena, generations
from labeling.projects import get_project

CAP_SETTING = {"cpu": "cpu_max_prompts", "cuda": "cuda_max_prompts"}


def _say(text: str, progress: bool) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def enter_arena(
    sessionmaker, *, checkpoint_id: int, project: str, opponents: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Answer the arena's prompts (at most the device's cap of them: the first by id, the
    same for every contestant), then schedule. Progress: one stderr line per batch (with
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
        with sessionmaker.begin() as s:
            scheduled = arena.schedule(
                s, get_project(s, name), checkpoint_id=checkpoint_id, opponents=opponents
            )
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


def enter_auto_arenas(sessionmaker, checkpoint_id: int, *, progress: bool = True) -> list[dict]:
    """Enter a new policy checkpoint in every auto-enter arena; errors are reported, not raised."""
    with sessionmaker.begin() as s:
        names = [p.name for p in arena.auto_enter_projects(s)]
    results = []
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
            print(f"arena {r['project']!r}: checkpoint {r['checkpoint_id']} entered with "
                  f"{r['answers']} new answers, {r['tasks_created']} new tasks",
                  file=sys.stderr)  # fmt: skip
