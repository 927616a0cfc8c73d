"""The labels of a project as compact numpy arrays (a million labels are 24 MB): the database
packs each label into a fixed record and hands back a slice of labels as one value
(string_agg of bytea on PostgreSQL, group_concat of hex digits on SQLite), which numpy reads
as it is. Fetching a million rows as Python tuples instead cost seconds more.

Only labels with a labeler count (a user): those given in the app (origin 'labeler') and
those imported with a `labeler` column (origin 'import'); imported labels without one have
no labeler to judge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.models import Preference, Prompt, Response, Task, TaskCandidate, User

CHOICES = ("a", "b", "tie", "both_bad")  # value codes 0..3, in this order
NO_STRENGTH = 0  # a decided label without a recorded strength (imported, older pages)
NO_SIDE = -1  # which answer was on the left is not known
NO_TIME = -1

# One record per label, built in the database as bytes so that a million labels cross
# over as one value per slice (not a million rows of Python objects) and numpy reads them
# without parsing: task id and user id (8 bytes each), then
#   packed = choice (0 a, 1 b, 2 tie, 3 both_bad) + 4 * strength (0 none, 1..3)
#            + 16 * (left side + 1; side 1 A, 0 B, -1 unknown) + 64 * gold task
# then the time spent in ms (-1 unknown) and the UTC day it was given (days since 1970-01-01),
# 4 bytes each, all big-endian.
_RECORD = np.dtype(
    [("task", ">i8"), ("user", ">i8"), ("packed", ">i4"), ("ms", ">i4"), ("day", ">i4")]
)
_PACKED = """
CASE p.choice WHEN 'a' THEN 0 WHEN 'b' THEN 1 WHEN 'tie' THEN 2 ELSE 3 END
+ 4 * COALESCE(p.strength, 0)
+ 16 * (CASE WHEN p.left_response_id = t.response_a_id THEN 2
             WHEN p.left_response_id = t.response_b_id THEN 1 ELSE 0 END)
+ CASE WHEN t.is_gold THEN 64 ELSE 0 END"""
_MS = "COALESCE(p.time_spent_ms, -1)"  # an int4 column on PostgreSQL
_DAY = {  # SQLite keeps naive UTC text, PostgreSQL timestamptz
    "postgresql": "((p.created_at AT TIME ZONE 'UTC')::date - DATE '1970-01-01')",
    "sqlite": "CAST(julianday(substr(p.created_at, 1, 10)) - 2440587.5 AS INTEGER)",
}
_RECORDS = {
    "postgresql": f"""
SELECT string_agg(int8send(p.task_id::bigint) || int8send(p.user_id::bigint)
                  || int4send(({_PACKED})::integer) || int4send(({_MS})::integer)
                  || int4send(({_DAY["postgresql"]})::integer), ''::bytea)""",
    # SQLite has no binary functions: the same record as 48 hex digits (SQLite integers
    # are 64-bit: the time is clipped to 4 bytes, -1 masked to its two's complement)
    "sqlite": f"""
SELECT group_concat(printf('%016x%016x%08x%08x%08x', p.task_id, p.user_id, {_PACKED},
                           MIN({_MS}, 2147483647) & 4294967295,
                           {_DAY["sqlite"]} & 4294967295), '')""",
}
_FROM = """
FROM preferences p JOIN tasks t ON t.id = p.task_id
WHERE t.project_id = :project_id AND p.user_id IS NOT NULL
  AND p.id BETWEEN :low AND :high"""
SLICE_IDS = 4_000_000  # preference ids per query: each value stays far below 1 GB

_RANKINGS = """
SELECT r.task_id, r.user_id, r."order", COALESCE(r.time_spent_ms, -1)
FROM rankings r JOIN tasks t ON t.id = r.task_id
WHERE t.project_id = :project_id AND r.origin = 'labeler' AND r.user_id IS NOT NULL
"""


@dataclass
class Preferences:
    """One entry per label, in no particular order."""

    task: np.ndarray  # task id
    user: np.ndarray  # user id
    choice: np.ndarray  # 0 a, 1 b, 2 tie, 3 both_bad
    strength: np.ndarray  # 1..3, NO_STRENGTH
    left_is_a: np.ndarray  # 1: response A was on the left, 0: B was, NO_SIDE
    ms: np.ndarray  # time spent, NO_TIME
    gold: np.ndarray  # 1 on a gold task
    day: np.ndarray  # the UTC day it was given, days since 1970-01-01

    def __len__(self) -> int:
        return len(self.task)


def preferences(session: Session, project_id: int) -> Preferences:
    from sqlalchemy import func, text

    dialect = session.get_bind().dialect.name
    query = text(_RECORDS["postgresql" if dialect == "postgresql" else "sqlite"] + _FROM)
    low, high = session.execute(select(func.min(Preference.id), func.max(Preference.id))).one()
    parts = []
    for start in range(low or 0, (high or -1) + 1, SLICE_IDS):
        value = session.execute(
            query, {"project_id": project_id, "low": start, "high": start + SLICE_IDS - 1}
        ).scalar()
        if value:
            parts.append(bytes(value) if dialect == "postgresql" else bytes.fromhex(value))
    records = np.frombuffer(b"".join(parts), dtype=_RECORD)
    packed = records["packed"].astype(np.int64)
    return Preferences(
        task=records["task"].astype(np.int64), user=records["user"].astype(np.int64),
        choice=packed & 3, strength=(packed >> 2) & 3, left_is_a=((packed >> 4) & 3) - 1,
        ms=records["ms"].astype(np.int64), gold=(packed >> 6) & 1,
        day=records["day"].astype(np.int64),
    )  # fmt: skip


def gold_answers(session: Session, project_id: int) -> dict[int, set[int]]:
    """{gold task id: the accepted choice codes}. A gold answer is {"choice": "a"}, or any
    of several: {"choice": ["a", "tie"]} or {"choices": [...]}."""
    out: dict[int, set[int]] = {}
    rows = session.execute(
        select(Task.id, Task.gold).where(Task.project_id == project_id, Task.is_gold)
    ).all()
    for task_id, gold in rows:
        wanted = (gold or {}).get("choices", (gold or {}).get("choice"))
        wanted = [wanted] if isinstance(wanted, str) else list(wanted or [])
        codes = {CHOICES.index(c) for c in wanted if c in CHOICES}
        if codes:
            out[int(task_id)] = codes
    return out


def user_names(session: Session, user_ids: np.ndarray) -> list[str]:
    ids = [int(u) for u in user_ids]
    names: dict[int, str] = {}
    for start in range(0, len(ids), 10_000):  # bounded IN lists
        chunk = ids[start : start + 10_000]
        names.update(session.execute(select(User.id, User.name).where(User.id.in_(chunk))).all())
    return [names.get(u, f"#{u}") for u in ids]


@dataclass
class Rankings:
    task: np.ndarray
    user: np.ndarray
    ranks: list[np.ndarray]  # per label: each candidate's rank (0 best), in candidate order
    ms: np.ndarray


def rankings(session: Session, project_id: int) -> Rankings:
    from sqlalchemy import text

    rows = session.execute(text(_RANKINGS), {"project_id": project_id}).all()
    candidates: dict[int, list[int]] = {}
    for task_id, response_id in session.execute(
        select(TaskCandidate.task_id, TaskCandidate.response_id)
        .join(Task, Task.id == TaskCandidate.task_id)
        .where(Task.project_id == project_id)
        .order_by(TaskCandidate.task_id, TaskCandidate.position)
    ).all():
        candidates.setdefault(task_id, []).append(response_id)
    tasks, users, ranks, ms = [], [], [], []
    for task_id, user_id, order, spent in rows:
        order = json.loads(order) if isinstance(order, str) else order
        ids = candidates.get(task_id, [])
        position = {int(r): k for k, r in enumerate(order or [])}
        if not ids or set(position) != set(ids):
            continue  # an order that is not a permutation of the candidates: nothing to compare
        tasks.append(task_id)
        users.append(user_id)
        ranks.append(np.array([position[r] for r in ids], float))
        ms.append(spent)
    return Rankings(np.array(tasks, int), np.array(users, int), ranks, np.array(ms, int))


def pairs_to_score(session: Session, task_ids: list[int]) -> list[dict[str, Any]]:
    """What a reward model needs to score tasks: task_id, the prompt's messages, the texts of
    responses A and B."""
    out = []
    for start in range(0, len(task_ids), 5_000):
        chunk = task_ids[start : start + 5_000]
        rows = session.execute(
            select(Task.id, Prompt.messages, Task.response_a_id, Task.response_b_id)
            .join(Prompt, Prompt.id == Task.prompt_id)
            .where(Task.id.in_(chunk))
        ).all()
        wanted = {r.response_a_id for r in rows} | {r.response_b_id for r in rows}
        texts = dict(
            session.execute(select(Response.id, Response.text).where(Response.id.in_(wanted))).all()
        )
        out.extend(
            {"task_id": r.id, "messages": list(r.messages), "text_a": texts[r.response_a_id],
             "text_b": texts[r.response_b_id]}
            for r in rows
        )  # fmt: skip
    return out
