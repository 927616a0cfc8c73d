"""Votes become battles for labeling.ratings: choice a/b/tie/both_bad map to model_a / model_b /
tie / "tie (bothbad)", with the prompt's category and the answers' markdown style; the
leaderboards and the rows reward/judge.py judges are built from them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from labeling.arena.contestants import _contestant, contestant_names
from labeling.arena.settings import _check_arena
from labeling.errors import InvalidInput
from labeling.models import Choice, Preference, Project, Prompt, Response, Task, TaskKind
from labeling.ratings import leaderboard as lb

WINNER = {
    Choice.a: "model_a",
    Choice.b: "model_b",
    Choice.tie: "tie",
    Choice.both_bad: "tie (bothbad)",
}


def current_leader(
    session: Session, project: Project, *, exclude: set[int | str] = frozenset()
) -> int | str | None:
    """The top-rated contestant on the project's leaderboard (None before any votes)."""
    data = battles(session, project, with_style=False)
    if len(data.battles) == 0:
        return None
    board = lb.fit(data.battles, bootstrap=0, ci="sandwich")
    for row in board.rows:
        key = data.keys.get(row.model)
        if row.ranked and key is not None and key not in exclude:
            return key
    return None


@dataclass
class ArenaBattles:
    battles: lb.Battles
    keys: dict[str, int | str]  # display name -> contestant key


def battles(session: Session, project: Project, *, with_style: bool = True) -> ArenaBattles:
    """Every vote on the project's arena tasks, as leaderboard battles."""
    ra, rb = aliased(Response), aliased(Response)
    rows = session.execute(
        select(
            Preference.choice, Preference.created_at, Prompt.category,
            ra.author_kind, ra.checkpoint_id, ra.text,
            rb.author_kind, rb.checkpoint_id, rb.text,
        )
        .join(Task, Task.id == Preference.task_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(ra, ra.id == Task.response_a_id)
        .join(rb, rb.id == Task.response_b_id)
        .where(Task.project_id == project.id, Task.kind == TaskKind.arena)
        .order_by(Preference.id)
    ).all()  # fmt: skip

    keys = {_contestant(r[3], r[4]) for r in rows} | {_contestant(r[6], r[7]) for r in rows}
    names = contestant_names(session, keys)
    model_a = [names[_contestant(r[3], r[4])] for r in rows]
    model_b = [names[_contestant(r[6], r[7])] for r in rows]
    style_a = style_b = None
    if with_style:
        style_a = [[lb.style_features(r[5])[f] for f in lb.STYLE_FEATURES] for r in rows]
        style_b = [[lb.style_features(r[8])[f] for f in lb.STYLE_FEATURES] for r in rows]
    data = lb.make_battles(
        model_a, model_b, [WINNER[Choice(r[0])] for r in rows],
        category=[r[2] for r in rows],
        style_a=style_a if rows else None, style_b=style_b if rows else None,
        timestamp=[r[1].timestamp() for r in rows],
    )  # fmt: skip
    return ArenaBattles(data, {names[k]: k for k in keys})


def project_leaderboard(session: Session, project: Project, **fit_kwargs: Any) -> lb.Leaderboard:
    return lb.fit(battles(session, project, with_style=bool(fit_kwargs.get("style"))).battles,
                  **fit_kwargs)  # fmt: skip


def judge_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """Every arena task of the project with its prompt, both answers and the labelers' votes
    (task letters a/b/tie/both_bad): what a reward model judges in reward/judge.py."""
    _check_arena(project)
    ra, rb = aliased(Response), aliased(Response)
    tasks = session.execute(
        select(Task.id, Prompt.messages, ra.text, rb.text, ra.author_kind, ra.checkpoint_id,
               rb.author_kind, rb.checkpoint_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(ra, ra.id == Task.response_a_id)
        .join(rb, rb.id == Task.response_b_id)
        .where(Task.project_id == project.id, Task.kind == TaskKind.arena)
        .order_by(Task.id)
    ).all()  # fmt: skip
    votes: dict[int, list[str]] = defaultdict(list)
    for task_id, choice in session.execute(
        select(Preference.task_id, Preference.choice)
        .join(Task, Task.id == Preference.task_id)
        .where(Task.project_id == project.id)
    ):
        votes[task_id].append(Choice(choice).value)

    names = contestant_names(session)
    return [
        {
            "task_id": tid,
            "messages": list(messages),
            "text_a": ta,
            "text_b": tb,
            "model_a": names.get(_contestant(ak, ac), str(ac)),
            "model_b": names.get(_contestant(bk, bc), str(bc)),
            "votes": votes.get(tid, []),
        }  # fmt: skip
        for tid, messages, ta, tb, ak, ac, bk, bc in tasks
    ]


@dataclass
class LeaderboardView:
    """What the leaderboard page shows for one arena project."""

    board: lb.Leaderboard
    categories: list[str]
    votes_per_day: list[dict[str, Any]]  # [{"day": "2026-11-22", "votes": 14}, ...]


def leaderboard_view(
    session: Session, project_id: int, *, category: str | None = None, **fit_kwargs: Any
) -> LeaderboardView:
    project = session.get(Project, int(project_id))
    if project is None:
        raise InvalidInput(f"no project with id {project_id}")
    _check_arena(project)
    data = battles(session, project, with_style=bool(fit_kwargs.get("style"))).battles
    categories = sorted({c for c in data.category if c}) if data.category is not None else []
    days: dict[str, int] = defaultdict(int)
    if data.timestamp is not None:
        for ts in data.timestamp:
            days[datetime.fromtimestamp(float(ts), tz=UTC).date().isoformat()] += 1
    if category:
        data = only_category(data, category)
    return LeaderboardView(
        board=lb.fit(data, **fit_kwargs),
        categories=categories,
        votes_per_day=[{"day": d, "votes": n} for d, n in sorted(days.items())],
    )


def only_category(data: lb.Battles, category: str) -> lb.Battles:
    """The battles of one category (a clear error when there are none)."""
    if data.category is None:
        raise InvalidInput("these battles have no category")
    keep = data.category == category
    if not keep.any():
        known = sorted({str(c) for c in data.category if c is not None})
        raise InvalidInput(
            f"no votes in category {category!r} (there are: {', '.join(known) or 'none'})"
        )
    return data.select(keep)
