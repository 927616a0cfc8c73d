"""Dashboard numbers for a project, aggregated in SQL (a project may hold a million tasks).

Every function runs a few GROUP BY queries and returns plain dicts or small pandas
DataFrames (one row per day or per labeler), ready for st.dataframe / st.bar_chart.

A label is a Demonstration, Preference or Ranking on one of the project's tasks. Days are
UTC calendar days ("YYYY-MM-DD"). By default only labels given by labelers count (imported
labels arrive in bulk and would drown the daily rhythm); pass include_imported=True for all.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Float, String, case, cast, func, select, union_all
from sqlalchemy.orm import Session

from labeling.models import (
    Assignment,
    AssignmentStatus,
    Choice,
    Demonstration,
    Origin,
    Preference,
    Project,
    Ranking,
    Task,
    TaskStatus,
    User,
    utcnow,
)

LABEL_MODELS = (Demonstration, Preference, Ranking)


def _day(session: Session, column):
    """A UTC timestamp column as its 'YYYY-MM-DD' day, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text.
    return func.substr(cast(column, String), 1, 10)


def _labels(session: Session, project_id: int, *, include_imported: bool, day: bool = False):
    """All labels of a project as one subquery: task_id, user_id, is_gold, time_spent_ms, day
    (and the label kind), a UNION ALL over the three label tables."""
    parts = []
    for model in LABEL_MODELS:
        columns = [
            model.task_id.label("task_id"),
            model.user_id.label("user_id"),
            Task.is_gold.label("is_gold"),
            model.time_spent_ms.label("time_spent_ms"),
            model.created_at.label("created_at"),
        ]
        if day:
            columns.append(_day(session, model.created_at).label("day"))
        query = (
            select(*columns)
            .join(Task, Task.id == model.task_id)
            .where(Task.project_id == project_id)
        )
        if not include_imported:
            query = query.where(model.origin == Origin.labeler)
        parts.append(query)
    return union_all(*parts).subquery("labels")


def project_progress(session: Session) -> list[dict[str, Any]]:
    """One row per project: tasks, done, labels, labels wanted (open, non-gold), gold items."""
    rows = session.execute(
        select(
            Task.project_id,
            func.count().label("tasks"),
            func.sum(case((Task.is_gold, 1), else_=0)).label("gold"),
            func.sum(case(((Task.status == TaskStatus.done) & ~Task.is_gold, 1), else_=0)).label(
                "done"
            ),
            func.sum(case(((Task.status == TaskStatus.open) & ~Task.is_gold, 1), else_=0)).label(
                "open"
            ),
            func.coalesce(func.sum(Task.labels_count), 0).label("labels"),
            func.sum(
                case(
                    (
                        (Task.status == TaskStatus.open) & ~Task.is_gold,
                        Task.overlap - Task.labels_count,
                    ),
                    else_=0,
                )  # fmt: skip
            ).label("wanted"),
        ).group_by(Task.project_id)
    ).all()
    counts = {r.project_id: r for r in rows}
    out = []
    for project in session.scalars(select(Project).order_by(Project.name)):
        r = counts.get(project.id)
        tasks = int(r.tasks) if r else 0
        labels = int(r.labels or 0) if r else 0
        wanted = int(r.wanted or 0) if r else 0
        out.append(
            {
                "id": project.id,
                "name": project.name,
                "kind": project.kind.value,
                "overlap": project.overlap,
                "tasks": tasks,
                "gold": int(r.gold or 0) if r else 0,
                "open": int(r.open or 0) if r else 0,
                "done": int(r.done or 0) if r else 0,
                "labels": labels,
                "labels_wanted": wanted,
                # share of the labels the project asks for that it has (gold excluded: never done)
                "progress": (labels / (labels + wanted)) if labels + wanted else 0.0,
                "created_at": project.created_at,
            }
        )
    return out


def overview(session: Session, project_id: int) -> dict[str, Any]:
    """Headline numbers: tasks, open/done/retired, gold, labels, labels wanted, live leases."""
    now = utcnow()
    row = session.execute(
        select(
            func.count().label("tasks"),
            func.sum(case((Task.is_gold, 1), else_=0)).label("gold"),
            *(
                func.sum(case(((Task.status == status) & ~Task.is_gold, 1), else_=0)).label(
                    status.value
                )
                for status in TaskStatus
            ),
            func.coalesce(func.sum(Task.labels_count), 0).label("labels"),
            func.sum(
                case(
                    (
                        (Task.status == TaskStatus.open) & ~Task.is_gold,
                        Task.overlap - Task.labels_count,
                    ),
                    else_=0,
                )  # fmt: skip
            ).label("wanted"),
        ).where(Task.project_id == project_id)
    ).one()
    leases = session.scalar(
        select(func.count())
        .select_from(Assignment)
        .where(
            Assignment.project_id == project_id,
            Assignment.status == AssignmentStatus.active,
            Assignment.expires_at > now,
        )
    )
    labelers = session.scalar(
        select(func.count(func.distinct(Assignment.user_id))).where(
            Assignment.project_id == project_id
        )
    )
    return {
        "tasks": int(row.tasks or 0),
        "gold": int(row.gold or 0),
        "open": int(row.open or 0),
        "done": int(row.done or 0),
        "retired": int(row.retired or 0),
        "labels": int(row.labels or 0),
        "labels_wanted": int(row.wanted or 0),
        "active_leases": int(leases or 0),
        "labelers": int(labelers or 0),
    }


def labels_per_day(
    session: Session, project_id: int, *, include_imported: bool = False
) -> pd.DataFrame:
    """Columns day (datetime64, UTC midnight) and labels, one row per day with labels."""
    labels = _labels(session, project_id, include_imported=include_imported, day=True)
    rows = session.execute(
        select(labels.c.day, func.count().label("labels"))
        .group_by(labels.c.day)
        .order_by(labels.c.day)
    ).all()
    frame = pd.DataFrame(rows, columns=["day", "labels"])
    frame["day"] = pd.to_datetime(frame["day"])
    frame["labels"] = frame["labels"].astype(int)
    return frame


def labels_per_labeler(session: Session, project_id: int) -> pd.DataFrame:
    """One row per labeler: labels, gold answered, ties and both-bad (pairwise), gold
    accuracy (pairwise gold items), mean seconds per label. Sorted by labels, most first."""
    labels = _labels(session, project_id, include_imported=False)
    base = session.execute(
        select(
            labels.c.user_id,
            func.count().label("labels"),
            func.sum(case((labels.c.is_gold, 1), else_=0)).label("gold_labels"),
            func.avg(cast(labels.c.time_spent_ms, Float)).label("mean_ms"),
            func.max(labels.c.created_at).label("last_label_at"),
        )
        .where(labels.c.user_id.is_not(None))
        .group_by(labels.c.user_id)
    ).all()
    columns = [
        "user_id", "labeler", "labels", "ties", "both_bad", "tie_rate", "both_bad_rate",
        "gold_answered", "gold_correct", "gold_accuracy", "mean_seconds", "last_label_at",
    ]  # fmt: skip
    if not base:
        return pd.DataFrame(columns=columns)

    choices = {
        r.user_id: r
        for r in session.execute(
            select(
                Preference.user_id,
                func.count().label("preferences"),
                func.sum(case((Preference.choice == Choice.tie, 1), else_=0)).label("ties"),
                func.sum(case((Preference.choice == Choice.both_bad, 1), else_=0)).label(
                    "both_bad"
                ),
            )
            .join(Task, Task.id == Preference.task_id)
            .where(
                Task.project_id == project_id,
                Preference.origin == Origin.labeler,
                Preference.user_id.is_not(None),
            )
            .group_by(Preference.user_id)
        ).all()
    }
    gold = {r.user_id: r for r in _gold_rows(session, project_id)}
    names = dict(
        session.execute(
            select(User.id, User.name).where(User.id.in_([r.user_id for r in base]))
        ).all()
    )
    out = []
    for r in base:
        c, g = choices.get(r.user_id), gold.get(r.user_id)
        prefs = int(c.preferences) if c else 0
        ties = int(c.ties or 0) if c else 0
        both_bad = int(c.both_bad or 0) if c else 0
        answered = int(g.answered) if g else 0
        correct = int(g.correct or 0) if g else 0
        out.append(
            {
                "user_id": r.user_id,
                "labeler": names.get(r.user_id, f"#{r.user_id}"),
                "labels": int(r.labels),
                "ties": ties,
                "both_bad": both_bad,
                "tie_rate": ties / prefs if prefs else None,
                "both_bad_rate": both_bad / prefs if prefs else None,
                "gold_answered": answered,
                "gold_correct": correct,
                "gold_accuracy": correct / answered if answered else None,
                "mean_seconds": float(r.mean_ms) / 1000 if r.mean_ms is not None else None,
                "last_label_at": r.last_label_at,
            }
        )
    frame = pd.DataFrame(out, columns=columns)
    return frame.sort_values(["labels", "labeler"], ascending=[False, True]).reset_index(drop=True)


def _gold_rows(session: Session, project_id: int):
    """Per labeler: gold comparisons answered and how many matched the gold choice."""
    gold_choice = Task.gold["choice"].as_string()
    return session.execute(
        select(
            Preference.user_id,
            func.count().label("answered"),
            func.sum(case((cast(Preference.choice, String) == gold_choice, 1), else_=0)).label(
                "correct"
            ),
        )
        .join(Task, Task.id == Preference.task_id)
        .where(
            Task.project_id == project_id,
            Task.is_gold,
            Preference.origin == Origin.labeler,
            Preference.user_id.is_not(None),
        )
        .group_by(Preference.user_id)
    ).all()


def choice_rates(
    session: Session, project_id: int, *, include_imported: bool = False
) -> dict[str, Any]:
    """Pairwise choices of the project: counts of a, b, tie, both_bad and the tie and
    both-bad rates (gold items included: they are judgments like any other)."""
    query = (
        select(Preference.choice, func.count())
        .join(Task, Task.id == Preference.task_id)
        .where(Task.project_id == project_id)
        .group_by(Preference.choice)
    )
    if not include_imported:
        query = query.where(Preference.origin == Origin.labeler)
    counts = {c.value: 0 for c in Choice}
    for choice, n in session.execute(query).all():
        counts[Choice(choice).value] = int(n)
    total = sum(counts.values())
    return {
        "preferences": total,
        **counts,
        "tie_rate": counts["tie"] / total if total else 0.0,
        "both_bad_rate": counts["both_bad"] / total if total else 0.0,
    }


def burndown(session: Session, project_id: int) -> pd.DataFrame:
    """The queue over time, per day: tasks added, tasks finished, and at the end of each day
    the total, done and open counts (gold and retired tasks left out).

    A task's finishing time is its last label's (done tasks only); tasks reopened by a
    raised overlap count as open, as they are now.
    """
    live = (Task.project_id == project_id, ~Task.is_gold, Task.status != TaskStatus.retired)
    added_days = select(_day(session, Task.created_at).label("day")).where(*live).subquery()
    created = session.execute(
        select(added_days.c.day, func.count()).group_by(added_days.c.day)
    ).all()
    labels = _labels(session, project_id, include_imported=True)
    finished_at = (
        select(labels.c.task_id, func.max(labels.c.created_at).label("finished_at"))
        .join(Task, Task.id == labels.c.task_id)
        .where(Task.status == TaskStatus.done, ~Task.is_gold)
        .group_by(labels.c.task_id)
        .subquery("finished")
    )
    done_days = select(_day(session, finished_at.c.finished_at).label("day")).subquery()
    done = session.execute(select(done_days.c.day, func.count()).group_by(done_days.c.day)).all()
    added, finished = dict(created), dict(done)
    columns = ["day", "added", "finished", "total", "done", "open"]
    if not added and not finished:
        return pd.DataFrame(columns=columns)
    known = sorted(set(added) | set(finished))
    # every day from the first to the last, so quiet days show as flat stretches
    days = pd.date_range(known[0], known[-1], freq="D")
    keys = [d.strftime("%Y-%m-%d") for d in days]
    frame = pd.DataFrame(
        {
            "day": days,
            "added": [int(added.get(k, 0)) for k in keys],
            "finished": [int(finished.get(k, 0)) for k in keys],
        }
    )
    frame["total"] = frame["added"].cumsum()
    frame["done"] = frame["finished"].cumsum()
    frame["open"] = frame["total"] - frame["done"]
    return frame[columns]
