"""Matchmaking: the claim priority of open arena tasks (see labeling/arena/__init__.py)."""

from __future__ import annotations

import itertools
from collections import defaultdict

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from labeling.arena.contestants import _contestant, _pair
from labeling.arena.settings import settings
from labeling.arena.votes import battles
from labeling.models import Preference, Project, ProjectKind, Response, Task, TaskKind, TaskStatus
from labeling.ratings import leaderboard as lb

REBALANCE_EVERY = 10
PHASE_ONE = 2_000_000  # priorities above this: pairs still short of min_pair_votes
PHASE_TWO_SCALE = 1_000_000


def rebalance(session: Session, project: Project) -> dict[str, int]:
    """Set the claim priority of the project's open arena tasks (see the module docstring)."""
    ra, rb = aliased(Response), aliased(Response)
    tasks = session.execute(
        select(Task.id, Task.labels_count, ra.author_kind, ra.checkpoint_id,
               rb.author_kind, rb.checkpoint_id)
        .join(ra, ra.id == Task.response_a_id)
        .join(rb, rb.id == Task.response_b_id)
        .where(Task.project_id == project.id, Task.kind == TaskKind.arena)
    ).all()  # fmt: skip
    if not tasks:
        return {"open_tasks": 0}

    open_ids = set(
        session.scalars(
            select(Task.id).where(
                Task.project_id == project.id,
                Task.kind == TaskKind.arena,
                Task.status == TaskStatus.open,
            )
        )
    )
    votes: dict[tuple, int] = defaultdict(int)
    by_pair: dict[tuple, list[int]] = defaultdict(list)
    for tid, labels, ak, ac, bk, bc in tasks:
        pair = _pair(_contestant(ak, ac), _contestant(bk, bc))
        votes[pair] += labels
        if tid in open_ids:
            by_pair[pair].append(tid)
    information = _pair_information(session, project)
    floor = int(settings(project)["min_pair_votes"])
    top = max(information.values(), default=0.0) or 1.0
    priorities: dict[int, list[int]] = defaultdict(list)
    for pair, ids in by_pair.items():
        if votes[pair] < floor:
            priority = PHASE_ONE + (floor - votes[pair])  # fewest votes first
        else:
            # Unknown information (e.g. a contestant not yet rated): treat as most uncertain.
            share = information.get(pair, top) / top
            priority = int(round(PHASE_TWO_SCALE * min(1.0, max(0.0, share))))
        priorities[priority].extend(ids)
    for priority, ids in priorities.items():
        for start in range(0, len(ids), 500):
            session.execute(
                update(Task).where(Task.id.in_(ids[start : start + 500])).values(priority=priority)
            )
    return {"open_tasks": sum(len(v) for v in by_pair.values())}


def _pair_information(session: Session, project: Project) -> dict[tuple, float]:
    data = battles(session, project, with_style=False)
    if len(data.battles) == 0:
        return {}
    board = lb.fit(data.battles, bootstrap=0, ci="sandwich")
    if len(board.models) < 2 or board.covariance is None:
        return {}
    info = lb.expected_information(board)
    out = {}
    for i, j in itertools.combinations(range(len(board.models)), 2):
        a, b = data.keys.get(board.models[i]), data.keys.get(board.models[j])
        if a is not None and b is not None:
            out[_pair(a, b)] = float(info[i, j])
    return out


def after_vote(session: Session, project_id: int) -> None:
    """Called after an arena vote is recorded: rebalance every REBALANCE_EVERY votes."""
    project = session.get(Project, project_id)
    if project is None or project.kind != ProjectKind.arena:
        return
    count = session.scalar(
        select(func.count())
        .select_from(Preference)
        .join(Task, Task.id == Preference.task_id)
        .where(Task.project_id == project_id)
    )
    if count and count % REBALANCE_EVERY == 0:
        rebalance(session, project)
