"""Invariants the database itself enforces, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from labeling.models import (
    Assignment,
    Choice,
    Preference,
    Project,
    Snapshot,
    Task,
    User,
)
from labeling.tasks import add_compare_task, add_prompt, add_response, add_write_task


@pytest.fixture
def world(Session):
    with Session.begin() as s:
        user = User(name="u", role="labeler")
        project = Project(name="p", kind="pairwise", overlap=2)
        s.add_all([user, project])
        s.flush()
        prompt = add_prompt(s, project, [{"role": "user", "content": "hi"}])
        a, b = add_response(s, prompt, "a"), add_response(s, prompt, "b")
        task = add_compare_task(s, project, prompt, a, b)
        return {
            "user": user.id,
            "project": project.id,
            "task": task.id,
            "prompt": prompt.id,
            "a": a.id,
            "b": b.id,
        }


def rejected(Session, make, exc=(IntegrityError,)):
    with pytest.raises(exc):
        with Session.begin() as s:
            s.add(make(s))
            s.flush()


def test_check_constraints(Session, world):
    w = world
    rejected(
        Session,
        lambda s: Preference(task_id=w["task"], user_id=w["user"], choice=Choice.tie, strength=2),
    )
    rejected(
        Session,
        lambda s: Preference(task_id=w["task"], user_id=w["user"], choice=Choice.a, strength=5),
    )
    rejected(Session, lambda s: Project(name="q", kind="sft", overlap=0))
    rejected(Session, lambda s: Project(name="", kind="sft"))
    rejected(
        Session,
        lambda s: Task(
            project_id=w["project"],
            prompt_id=w["prompt"],
            kind="compare",
            response_a_id=w["a"],
            response_b_id=None,
            content_hash="x",
        ),
    )
    rejected(
        Session,
        lambda s: Task(
            project_id=w["project"],
            prompt_id=w["prompt"],
            kind="compare",
            response_a_id=w["a"],
            response_b_id=w["a"],
            content_hash="y",
        ),
    )
    rejected(
        Session,
        lambda s: Task(
            project_id=w["project"],
            prompt_id=w["prompt"],
            kind="write",
            content_hash="z",
            is_gold=True,
        ),
    )
    with pytest.raises(IntegrityError):  # more labels than the overlap
        with Session.begin() as s:
            s.get(Task, w["task"]).labels_count = 3


def test_enums_unique_and_foreign_keys(Session, world):
    w = world
    rejected(Session, lambda s: User(name="v", role="wizard"), exc=(StatementError, LookupError))
    rejected(Session, lambda s: User(name="u", role="labeler"))  # unique name
    rejected(Session, lambda s: Preference(task_id=999_999, user_id=w["user"], choice=Choice.a))
    now = datetime.now(UTC)
    with Session.begin() as s:
        s.add(
            Assignment(
                task_id=w["task"], user_id=w["user"], project_id=w["project"], expires_at=now
            )
        )
    rejected(
        Session,
        lambda s: Assignment(
            task_id=w["task"], user_id=w["user"], project_id=w["project"], expires_at=now
        ),
    )
    with Session.begin() as s:
        s.add(
            Preference(task_id=w["task"], user_id=w["user"], choice=Choice.a, idempotency_key="k")
        )
    rejected(
        Session,
        lambda s: Preference(task_id=w["task"], user_id=None, choice=Choice.b, idempotency_key="k"),
    )


def test_datetimes_come_back_aware_utc(Session, world):
    with Session() as s:
        created = s.scalar(select(User.created_at))
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0


def test_same_prompt_and_task_are_not_stored_twice(Session, world):
    with Session.begin() as s:
        project = s.get(Project, world["project"])
        again = add_prompt(s, project, "hi")
        assert again.id == world["prompt"]
        t1 = add_write_task(s, project, again)
        assert add_write_task(s, project, again).id == t1.id


def test_snapshot_rows_refuse_updates(Session, world):
    with Session.begin() as s:
        snap = Snapshot(
            project_id=world["project"], kind="preference", rows=1, sha256="0" * 64, path="x"
        )
        s.add(snap)
    with pytest.raises(ValueError, match="immutable"):
        with Session.begin() as s:
            s.get(Snapshot, snap.id).rows = 2
    with Session() as s:
        assert s.get(Snapshot, snap.id).rows == 1
