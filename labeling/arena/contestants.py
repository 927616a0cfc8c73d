"""Who and what enters an arena: prompts copied in, labelers' answers as the contestant
"human", each contestant's answer per prompt, display names, and the status overview.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from labeling.arena.settings import _check_arena, settings
from labeling.errors import InvalidInput
from labeling.models import (
    AuthorKind,
    Checkpoint,
    CheckpointKind,
    Demonstration,
    Project,
    Prompt,
    Response,
    Split,
    Task,
)
from labeling.tasks import add_prompt, add_response

HUMAN = "human"


def copy_prompts(
    session: Session,
    arena: Project,
    source: Project,
    *,
    split: str = "heldout",
    limit: int | None = None,
) -> dict[str, int]:
    """Copy a project's prompts (by default its held-out split: prompts no checkpoint trained
    on) into the arena, keeping category, tags and the gold final answer (a verifier can
    judge the arena's answers). Already-copied prompts are skipped."""
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
        if copied.answer is None and prompt.answer is not None:
            copied.answer = prompt.answer
        if copied.tags is None and prompt.tags is not None:
            copied.tags = list(prompt.tags)
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
