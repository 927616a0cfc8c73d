"""A policy checkpoint enters an arena: it answers the arena's prompts, then it is paired.

    rlhf arena enter --project my-arena --checkpoint 7

After a training run registers a policy checkpoint, `enter_auto_arenas` does this for every
arena project whose settings say `auto_enter` (the default): answers are generated with the
project's sampling settings (labeling/arena DEFAULTS) and the checkpoint is scheduled
against the project's opponents (the current leader, or everyone). A failure here never
fails the training run that triggered it: it is reported and the checkpoint stays registered.
"""

from __future__ import annotations

import sys
from typing import Any

from labeling import arena
from labeling.projects import get_project


def enter_arena(
    sessionmaker, *, checkpoint_id: int, project: str, opponents: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    from training.generate import answer_project

    with sessionmaker.begin() as s:
        conf = arena.settings(get_project(s, project))
    generated = answer_project(
        sessionmaker, checkpoint_id=checkpoint_id, project=project, split="all",
        max_new_tokens=int(conf["max_new_tokens"]), temperature=float(conf["temperature"]),
        top_p=float(conf["top_p"]), seed=int(conf["seed"]), progress=progress,
    )  # fmt: skip
    with sessionmaker.begin() as s:
        scheduled = arena.schedule(
            s, get_project(s, project), checkpoint_id=checkpoint_id, opponents=opponents
        )
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
