"""Scheduling: the contestants' answers on each prompt paired into arena tasks."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.arena.contestants import HUMAN, Entry, _entries, _pair, add_human_answers
from labeling.arena.gold_checks import gold_check_bases
from labeling.arena.matchmaking import rebalance
from labeling.arena.settings import _OPPONENTS, _check_arena, settings
from labeling.arena.votes import current_leader
from labeling.errors import InvalidInput
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Project,
    Prompt,
    Response,
    Task,
    TaskKind,
    utcnow,
)
from labeling.tasks import add_compare_task


def schedule(
    session: Session,
    project: Project,
    *,
    checkpoint_id: int | None = None,
    opponents: str | None = None,
    seed: int | None = None,
    against: int | None = None,
) -> dict[str, Any]:
    """Create arena tasks. With `checkpoint_id`: that checkpoint against its opponents (the
    project's `opponents` setting: the current leader, or everyone), or, with `against`,
    against that one checkpoint alone (a gold check against its base:
    labeling/arena/gold_checks.py); without: every pair of contestants. A gold check is only
    ever paired with its base: it is left out of everyone else's opponents. One task per
    prompt both answered, up to `max_prompts` per pair; which answer is "A" is random.
    Existing tasks are kept (tasks are unique by content)."""
    _check_arena(project)
    conf = settings(project)
    opponents = opponents or conf["opponents"]
    if opponents not in _OPPONENTS:
        raise InvalidInput("opponents must be 'best' or 'all'")
    if conf["include_human"]:
        add_human_answers(session, project)
    entries = _entries(session, project)
    everyone = {key for per_prompt in entries.values() for key in per_prompt}
    # an RL run's gold checks are judged against their base alone (gold_checks.py)
    gold = gold_check_bases(session, {k for k in everyone if isinstance(k, int)})
    if checkpoint_id is not None and against is None and checkpoint_id in gold:
        against = gold[checkpoint_id]
    if checkpoint_id is not None:
        if checkpoint_id not in everyone:
            raise InvalidInput(
                f"checkpoint {checkpoint_id} has no answers in arena {project.name!r}: "
                f"run `rlhf generate --checkpoint {checkpoint_id} --project {project.name}` first"
            )
        rivals = everyone - {checkpoint_id} - set(gold)
        if against is not None:
            if against == checkpoint_id:
                raise InvalidInput(f"checkpoint {checkpoint_id} cannot be paired with itself")
            if against not in everyone:
                raise InvalidInput(
                    f"checkpoint {against} has no answers in arena {project.name!r} to pair "
                    f"with checkpoint {checkpoint_id}: enter it first (`rlhf arena enter "
                    f"--project {project.name} --checkpoint {against}`)"
                )
            rivals = {against}
        elif opponents == "best":
            leader = current_leader(session, project, exclude={checkpoint_id, *gold})
            rivals = {leader} if leader is not None else rivals
        pairs = {_pair(checkpoint_id, r) for r in rivals}
    elif against is not None:
        raise InvalidInput("`against` pairs one checkpoint (checkpoint_id) with another")
    else:
        others = sorted(everyone - set(gold), key=str)
        pairs = {_pair(a, b) for a, b in itertools.combinations(others, 2)}
        pairs |= {_pair(ck, base) for ck, base in gold.items() if base in everyone}
    rng = random.Random(conf["seed"] if seed is None else seed)
    prompts = {p.id: p for p in session.scalars(
        select(Prompt).where(Prompt.id.in_(list(entries)))
    )}  # fmt: skip
    existing = {
        frozenset(ids)
        for ids in session.execute(
            select(Task.response_a_id, Task.response_b_id).where(
                Task.project_id == project.id, Task.kind == TaskKind.arena
            )
        ).all()
    }
    created = 0
    per_pair: dict[tuple, int] = defaultdict(int)
    for prompt_id in sorted(entries):
        answers = entries[prompt_id]
        for a, b in sorted(pairs, key=str):
            if a not in answers or b not in answers:
                continue
            if conf["max_prompts"] is not None and per_pair[(a, b)] >= int(conf["max_prompts"]):
                continue
            if answers[a].text_hash == answers[b].text_hash:
                continue  # the same words: a tie by construction, not worth a labeler's time
            per_pair[(a, b)] += 1
            ids = frozenset((answers[a].response_id, answers[b].response_id))
            if ids in existing:  # either order: the pair is already a task
                continue
            first, second = answers[a], answers[b]
            if rng.random() < 0.5:
                first, second = second, first
            task = add_compare_task(
                session, project, prompts[prompt_id],
                session.get(Response, first.response_id), session.get(Response, second.response_id),
                kind=TaskKind.arena,
            )  # fmt: skip
            existing.add(ids)
            if frozenset((task.response_a_id, task.response_b_id)) != ids:
                continue  # another contestant gave the same answer: that task stands for both
            created += 1
            _keep_authors_away(session, task, first, second)
    balance = rebalance(session, project)
    return {"project": project.name, "pairs": len(pairs), "created": created, **balance}


def _keep_authors_away(session: Session, task: Task, *entries: Entry) -> None:
    """A labeler never judges their own answer: the task is pre-skipped for its author (a
    skipped lease means the claim never offers it to them)."""
    now = utcnow()
    for entry in entries:
        if entry.key == HUMAN and entry.author_user_id is not None:
            session.add(Assignment(
                task_id=task.id, user_id=entry.author_user_id, project_id=task.project_id,
                status=AssignmentStatus.skipped, expires_at=now, finished_at=now,
            ))  # fmt: skip
    session.flush()
