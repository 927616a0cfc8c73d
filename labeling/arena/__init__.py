"""The arena: answers from different checkpoints to the same prompt, judged blind.

An arena project holds prompts (copied from another project's held-out split, or imported).
Checkpoints answer them (`rlhf generate`, or automatically after a training run: see
training/arena_entry.py); a labeler's demonstration can enter too, as the contestant "human".
`schedule` pairs the contestants' answers on each prompt into arena tasks; labelers judge
them on the ordinary compare page, which shows "A" and "B" only: the task stores which
answer is A, the lease stores which side it is shown on, and no page reads the author.

Matchmaking runs through the claim order (Task.priority, higher first), set by `rebalance`:
1. spread votes evenly: a pair of contestants with fewer than `min_pair_votes` votes comes
   first, the fewest votes first;
2. then favour the pairs whose outcome is most uncertain: priority follows
   leaderboard.expected_information (p(1-p) Var(r_i - r_j)): the vote that shrinks the
   confidence intervals most is served next.
It runs after every `REBALANCE_EVERY`-th vote of a project, after `schedule`, and on demand.

Votes become battles (`battles`) for labeling.ratings.leaderboard: choice a/b/tie/both_bad map to
model_a / model_b / tie / "tie (bothbad)"; the prompt's category and the answers' markdown
style come along for the per-category and style-controlled views.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from labeling import bounds
from labeling.errors import InvalidInput
from labeling.generations import MAX_NEW_TOKENS, MAX_SEED
from labeling.models import (
    Assignment,
    AssignmentStatus,
    AuthorKind,
    Checkpoint,
    CheckpointKind,
    Choice,
    Demonstration,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Split,
    Task,
    TaskKind,
    TaskStatus,
    utcnow,
)
from labeling.ratings import leaderboard as lb
from labeling.tasks import add_compare_task, add_prompt, add_response

HUMAN = "human"
REBALANCE_EVERY = 10
PHASE_ONE = 2_000_000  # priorities above this: pairs still short of min_pair_votes
PHASE_TWO_SCALE = 1_000_000
WINNER = {
    Choice.a: "model_a",
    Choice.b: "model_b",
    Choice.tie: "tie",
    Choice.both_bad: "tie (bothbad)",
}

# Per-project arena settings (Project.settings["arena"]), with their defaults.
DEFAULTS: dict[str, Any] = {
    "auto_enter": True,  # new policy checkpoints answer the prompts and enter automatically
    "opponents": "best",  # "best": the current leader (all others until there is one); "all"
    "include_human": False,  # labelers' demonstrations of the same prompts enter as "human"
    "max_prompts": None,  # at most this many prompts per pair of contestants
    "min_pair_votes": 5,  # matchmaking phase 1: every pair gets this many votes first
    "max_new_tokens": 128,
    "temperature": 0.7,
    "top_p": 0.95,
    "seed": 0,
}
_OPPONENTS = ("best", "all")


def _check_arena(project: Project) -> None:
    if project.kind != ProjectKind.arena:
        raise InvalidInput(
            f"project {project.name!r} is a {project.kind.value} project, not an arena"
        )


def settings(project: Project) -> dict[str, Any]:
    return {**DEFAULTS, **dict((project.settings or {}).get("arena") or {})}


def configure(session: Session, project: Project, **values: Any) -> dict[str, Any]:
    """Change arena settings; unknown keys and bad values are refused with a clear message."""
    _check_arena(project)
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise InvalidInput(
            f"unknown arena settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})"
        )
    values = {k: v for k, v in values.items() if v is not None}
    if "opponents" in values and values["opponents"] not in _OPPONENTS:
        raise InvalidInput("opponents must be 'best' or 'all'")
    # Upper bounds too: a huge max_new_tokens or seed would only fail later, mid-generation.
    limits = {"max_prompts": (1, 10**6), "min_pair_votes": (0, 10**4),
              "max_new_tokens": (1, MAX_NEW_TOKENS), "seed": (0, MAX_SEED)}  # fmt: skip
    for key, (low, high) in limits.items():
        if key in values:
            values[key] = bounds.whole_number(values[key], key, low, high)
    if "temperature" in values:
        values["temperature"] = bounds.fraction(values["temperature"], "temperature", 0.0, 5.0)
    if "top_p" in values:
        values["top_p"] = bounds.fraction(values["top_p"], "top_p", 0.0, 1.0)
        if values["top_p"] == 0:
            raise InvalidInput("top_p must be in (0, 1]")
    merged = {**settings(project), **values}
    # A new dict, so that SQLAlchemy sees the JSON column change.
    project.settings = {**dict(project.settings or {}), "arena": merged}
    session.flush()
    return merged


def auto_enter_projects(session: Session) -> list[Project]:
    """Arena projects that want every new policy checkpoint."""
    projects = session.scalars(
        select(Project).where(Project.kind == ProjectKind.arena).order_by(Project.id)
    ).all()
    return [p for p in projects if settings(p)["auto_enter"]]


def copy_prompts(
    session: Session,
    arena: Project,
    source: Project,
    *,
    split: str = "heldout",
    limit: int | None = None,
) -> dict[str, int]:
    """Copy a project's prompts (by default its held-out split: prompts no checkpoint trained
    on) into the arena, keeping category and tags. Already-copied prompts are skipped."""
    _check_arena(arena)
    if arena.id == source.id:
        raise InvalidInput("copy prompts from another project, not the arena itself")
    query = select(Prompt).where(Prompt.project_id == source.id).order_by(Prompt.id)
    if split != "all":
        query = query.where(Prompt.split == Split(split))
    if limit is not None:
        query = query.limit(int(limit))
    before = session.scalar(select(func.count()).where(Prompt.project_id == arena.id))
    seen = 0
    for prompt in session.scalars(query).all():
        copied = add_prompt(
            session, arena, prompt.messages, source=f"project:{source.name}",
            category=prompt.category,
        )  # fmt: skip
        # Arena prompts are all for evaluation: nothing trains on an arena project.
        copied.split = Split.heldout
        seen += 1
    session.flush()
    after = session.scalar(select(func.count()).where(Prompt.project_id == arena.id))
    return {"copied": int(after - before), "already_there": seen - int(after - before)}


def add_human_answers(session: Session, arena: Project) -> int:
    """Labelers' demonstrations of the arena's prompts (same content, any project) enter as
    the contestant "human". Returns how many answers were added."""
    _check_arena(arena)
    source = aliased(Prompt)
    rows = session.execute(
        select(Prompt, Response)
        .join(source, source.content_hash == Prompt.content_hash)
        .join(Response, Response.prompt_id == source.id)
        .join(Demonstration, Demonstration.response_id == Response.id)
        .where(Prompt.project_id == arena.id, source.project_id != arena.id)
        .order_by(Response.id)
    ).all()
    have = set(
        session.scalars(
            select(Response.source).where(
                Response.prompt_id.in_(select(Prompt.id).where(Prompt.project_id == arena.id)),
                Response.author_kind == AuthorKind.labeler,
            )
        )
    )
    added = 0
    for prompt, demo in rows:
        tag = f"demonstration:{demo.id}"
        if tag in have:
            continue
        add_response(
            session, prompt, demo.text, author_kind=AuthorKind.labeler,
            author_user_id=demo.author_user_id, source=tag,
        )  # fmt: skip
        have.add(tag)
        added += 1
    return added


# --- contestants --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One contestant's answer to one prompt: key is a checkpoint id or HUMAN."""

    key: int | str
    response_id: int
    author_user_id: int | None
    text_hash: str


def _entries(session: Session, project: Project) -> dict[int, dict[int | str, Entry]]:
    """prompt id -> contestant -> its answer (the first one, when a checkpoint sampled several)."""
    rows = session.execute(
        select(Response.id, Response.prompt_id, Response.author_kind, Response.checkpoint_id,
               Response.author_user_id, Response.content_hash)
        .join(Prompt, Prompt.id == Response.prompt_id)
        .where(
            Prompt.project_id == project.id,
            Response.author_kind.in_((AuthorKind.checkpoint, AuthorKind.labeler)),
        )
        .order_by(Response.id)
    ).all()  # fmt: skip
    out: dict[int, dict[int | str, Entry]] = defaultdict(dict)
    for rid, prompt_id, author_kind, checkpoint_id, user_id, text_hash in rows:
        key = _contestant(author_kind, checkpoint_id)
        out[prompt_id].setdefault(key, Entry(key, rid, user_id, text_hash))
    return out


def contestant_names(session: Session, keys: set[int | str] | None = None) -> dict[int | str, str]:
    """Display names: a checkpoint's name (with its id when two share a name), or "human"."""
    query = select(Checkpoint.id, Checkpoint.name).where(Checkpoint.kind == CheckpointKind.policy)
    ids = None if keys is None else [k for k in keys if isinstance(k, int)]
    if ids is not None:
        query = query.where(Checkpoint.id.in_(ids))
    rows = session.execute(query).all()
    counts: dict[str, int] = defaultdict(int)
    for _, name in rows:
        counts[name] += 1
    names: dict[int | str, str] = {
        cid: (name if counts[name] == 1 and name != HUMAN else f"{name} (#{cid})")
        for cid, name in rows
    }
    names[HUMAN] = HUMAN
    return names


def _contestant(author_kind: AuthorKind, checkpoint_id: int | None) -> int | str:
    """A response's contestant: its checkpoint id, or HUMAN for a labeler's answer."""
    return checkpoint_id if author_kind == AuthorKind.checkpoint else HUMAN


def _pair(a: int | str, b: int | str) -> tuple[int | str, int | str]:
    return tuple(sorted((a, b), key=lambda k: (isinstance(k, str), str(k))))  # type: ignore[return-value]


# --- scheduling ---------------------------------------------------------------------------


def schedule(
    session: Session,
    project: Project,
    *,
    checkpoint_id: int | None = None,
    opponents: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Create arena tasks. With `checkpoint_id`: that checkpoint against its opponents (the
    project's `opponents` setting: the current leader, or everyone); without: every pair of
    contestants. One task per prompt both answered, up to `max_prompts` per pair; which answer
    is "A" is random. Existing tasks are kept (tasks are unique by content)."""
    _check_arena(project)
    conf = settings(project)
    opponents = opponents or conf["opponents"]
    if opponents not in _OPPONENTS:
        raise InvalidInput("opponents must be 'best' or 'all'")
    if conf["include_human"]:
        add_human_answers(session, project)
    entries = _entries(session, project)
    everyone = {key for per_prompt in entries.values() for key in per_prompt}
    if checkpoint_id is not None:
        if checkpoint_id not in everyone:
            raise InvalidInput(
                f"checkpoint {checkpoint_id} has no answers in arena {project.name!r}: "
                f"run `rlhf generate --checkpoint {checkpoint_id} --project {project.name}` first"
            )
        rivals = everyone - {checkpoint_id}
        if opponents == "best":
            leader = current_leader(session, project, exclude={checkpoint_id})
            rivals = {leader} if leader is not None else rivals
        pairs = {_pair(checkpoint_id, r) for r in rivals}
    else:
        pairs = {_pair(a, b) for a, b in itertools.combinations(sorted(everyone, key=str), 2)}
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


# --- votes -> battles ---------------------------------------------------------------------


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


# --- matchmaking --------------------------------------------------------------------------


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


def overview(session: Session, project: Project) -> dict[str, Any]:
    """Contestants with their answers, tasks and votes: for `rlhf arena status` and the UI."""
    _check_arena(project)
    entries = _entries(session, project)
    answered: dict[int | str, int] = defaultdict(int)
    for per_prompt in entries.values():
        for k in per_prompt:
            answered[k] += 1
    names = contestant_names(session, set(answered))
    prompts = session.scalar(select(func.count()).where(Prompt.project_id == project.id))
    tasks = session.execute(
        select(Task.status, func.count(), func.coalesce(func.sum(Task.labels_count), 0))
        .where(Task.project_id == project.id)
        .group_by(Task.status)
    ).all()
    return {
        "project": project.name,
        "prompts": int(prompts or 0),
        "contestants": [
            {"key": k, "name": names.get(k, str(k)), "answers": n}
            for k, n in sorted(answered.items(), key=lambda kv: str(kv[0]))
        ],
        "tasks": {s.value: int(c) for s, c, _ in tasks},
        "votes": int(sum(v for *_, v in tasks)),
        "settings": settings(project),
    }


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
