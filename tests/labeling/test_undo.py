"""Undo of the last label on SQLite and PostgreSQL: who, when, how often, and what is kept."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labeling import projects, queue, snapshots, stats, undo
from labeling.accounts import users
from labeling.errors import Conflict
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Draft,
    Preference,
    Ranking,
    Response,
    Task,
    TaskCandidate,
    TaskStatus,
    utcnow,
)
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response, add_write_task

T0 = utcnow().replace(microsecond=0)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def make_project(Session, *, kind="pairwise", n=2, overlap=1, gold=0):  # noqa: N803
    with Session.begin() as s:
        p = projects.create_project(s, name=f"p-{kind}", kind=kind, overlap=overlap)
        for i in range(n + gold):
            prompt = add_prompt(s, p, f"question {i}?")
            if kind == "sft":
                add_write_task(s, p, prompt)
            elif kind == "ranking":
                add_rank_task(
                    s, p, prompt, [add_response(s, prompt, f"r{i}.{k}") for k in range(3)]
                )
            else:
                a = add_response(s, prompt, f"answer A {i}")
                b = add_response(s, prompt, f"answer B {i}")
                add_compare_task(s, p, prompt, a, b, gold_choice="a" if i >= n else None)
        return p.id


def make_users(Session, *names):  # noqa: N803
    with Session.begin() as s:
        return [
            users.add_user(s, name=n, role="labeler", password="long-password").id for n in names
        ]


def claim(Session, pid, uid, t):  # noqa: N803
    with Session.begin() as s:
        a = queue.claim_next(s, project_id=pid, user_id=uid, now=at(t))
        return None if a is None else a.task_id


def vote(Session, task_id, uid, t, choice="a", **kw):  # noqa: N803
    with Session.begin() as s:
        r = queue.submit_preference(s, task_id=task_id, user_id=uid, choice=choice, now=at(t), **kw)
        assert r.accepted and not r.duplicate
        return r.label.id


def undo_at(Session, uid, pid, t, **kw):  # noqa: N803
    with Session.begin() as s:
        return undo.undo_last(s, user_id=uid, project_id=pid, now=at(t), **kw)


def refused(Session, uid, pid, t, match, **kw):  # noqa: N803
    with pytest.raises(Conflict, match=match):
        undo_at(Session, uid, pid, t, **kw)


def rows(Session, model):  # noqa: N803
    with Session() as s:
        return s.scalars(select(model).order_by(model.id)).all()


def task_row(Session, task_id):  # noqa: N803
    with Session() as s:
        return s.get(Task, task_id)


def test_undo_then_redo_a_comparison(Session):  # noqa: N803
    pid = make_project(Session, n=2)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 5, choice="a", strength=3, rationale="clearer")
    assert task_row(Session, t1).status == TaskStatus.done
    t2 = claim(Session, pid, ann, 6)  # the page claims the next one at once
    assert t2 != t1

    result = undo_at(Session, ann, pid, 20, task_id=t1)
    assert result.task_id == t1 and result.kind == "compare"
    assert result.previous["choice"] == "a" and result.previous["strength"] == 3
    assert result.previous["rationale"] == "clearer"
    with Session() as s:
        a = s.get(Assignment, result.assignment_id)
        swap = a.swap_sides
        assert (a.task_id, a.user_id, a.status) == (t1, ann, AssignmentStatus.active)
        assert a.undone_at == at(20) and a.expires_at > at(20)
    assert result.previous["screen_choice"] == ("b" if swap else "a")
    assert rows(Session, Preference) == []
    task = task_row(Session, t1)
    assert (task.status, task.labels_count) == (TaskStatus.open, 0)
    (draft,) = rows(Session, Draft)
    assert draft.payload == {"choice": "a", "strength": 3, "rationale": "clearer"}

    # The undone task comes back first; the one shown after it waits, still held.
    assert claim(Session, pid, ann, 21) == t1
    vote(Session, t1, ann, 25, choice="tie")
    (pref,) = rows(Session, Preference)
    assert (pref.task_id, pref.choice, pref.strength) == (t1, "tie", None)
    task = task_row(Session, t1)
    assert (task.status, task.labels_count, task.active_leases) == (TaskStatus.done, 1, 0)
    assert rows(Session, Draft) == []  # the correction replaced the kept answer
    assert claim(Session, pid, ann, 26) == t2
    # The correction is the last label now, so it can be undone in its own minute.
    assert undo_at(Session, ann, pid, 30).task_id == t1


def test_a_full_item_is_reopened_for_its_labeler_only(Session):  # noqa: N803
    pid = make_project(Session, n=1, overlap=1)
    ann, bob = make_users(Session, "ann", "bob")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 5)
    assert claim(Session, pid, bob, 6) is None  # done: nothing for bob
    undo_at(Session, ann, pid, 10)
    assert claim(Session, pid, bob, 11) is None  # open again, but leased to ann
    assert claim(Session, pid, ann, 12) == t1
    vote(Session, t1, ann, 15, choice="b")
    assert claim(Session, pid, bob, 16) is None
    assert [p.user_id for p in rows(Session, Preference)] == [ann]


def test_others_cannot_undo_and_only_the_named_task(Session):  # noqa: N803
    pid = make_project(Session, n=2, overlap=2)
    ann, bob = make_users(Session, "ann", "bob")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 5)
    refused(Session, bob, pid, 6, "no label in this project", task_id=t1)
    assert claim(Session, pid, bob, 7) == t1
    vote(Session, t1, bob, 8, choice="b")
    t2 = claim(Session, pid, ann, 9)
    vote(Session, t2, ann, 10)
    # ann's last label is on t2 now: a stale button for t1 is refused.
    refused(Session, ann, pid, 11, "most recent label", task_id=t1)
    undo_at(Session, bob, pid, 12, task_id=t1)  # bob's own undo leaves ann's label alone
    assert sorted((p.task_id, p.user_id) for p in rows(Session, Preference)) == [
        (t1, ann),
        (t2, ann),
    ]
    assert task_row(Session, t1).labels_count == 1


def test_refused_after_a_minute(Session):  # noqa: N803
    pid = make_project(Session, n=1)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 5)
    refused(Session, ann, pid, 5 + undo.UNDO_SECONDS + 1, "within 60 seconds")
    assert len(rows(Session, Preference)) == 1
    assert undo_at(Session, ann, pid, 5 + undo.UNDO_SECONDS).task_id == t1  # the last second


def test_refused_once_a_snapshot_holds_the_label(Session):  # noqa: N803
    pid = make_project(Session, n=2)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, -30)  # submitted just before the snapshot below (made "now")
    with Session.begin() as s:
        snap, created = snapshots.create_snapshot(s, project=pid, kind="preference")
        assert created
    refused(Session, ann, pid, 0, f"Snapshot #{snap.id} was made after this label")
    assert len(rows(Session, Preference)) == 1
    assert task_row(Session, t1).labels_count == 1


def test_a_snapshot_of_another_kind_does_not_block(Session):  # noqa: N803
    pid = make_project(Session, kind="sft", n=2)
    (ann,) = make_users(Session, "ann")
    with Session.begin() as s:  # a pairwise label elsewhere makes a preference snapshot
        other = make_project_in(s)
    t1 = claim(Session, pid, ann, 0)
    with Session.begin() as s:
        queue.submit_demonstration(s, task_id=t1, user_id=ann, text="my answer", now=at(-10))
        snapshots.create_snapshot(s, project=other, kind="preference")
    assert undo_at(Session, ann, pid, 0).previous == {"text": "my answer"}


def make_project_in(s):
    p = projects.create_project(s, name="other", kind="pairwise")
    prompt = add_prompt(s, p, "other question?")
    task = add_compare_task(
        s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y")
    )
    ben = users.add_user(s, name="ben", role="labeler", password="long-password").id
    queue.claim_next(s, project_id=p.id, user_id=ben)
    queue.submit_preference(s, task_id=task.id, user_id=ben, choice="a")
    return p.id


def test_only_one_step_back(Session):  # noqa: N803
    pid = make_project(Session, n=3)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 1)
    t2 = claim(Session, pid, ann, 2)
    vote(Session, t2, ann, 3)
    undo_at(Session, ann, pid, 4)
    refused(Session, ann, pid, 5, "already undid one")  # t1's label stays
    refused(Session, ann, pid, 5, "already undid one", task_id=t1)
    assert [p.task_id for p in rows(Session, Preference)] == [t1]
    with Session.begin() as s:  # skipping the reopened task does not unlock t1 either
        a = s.scalar(select(Assignment).where(Assignment.task_id == t2))
        queue.skip(s, assignment_id=a.id, user_id=ann, now=at(6))
    refused(Session, ann, pid, 7, "already undid one")
    assert task_row(Session, t2).labels_count == 0
    assert task_row(Session, t1).labels_count == 1


def test_write_undo_keeps_the_text_as_draft_and_redo_replaces_it(Session):  # noqa: N803
    pid = make_project(Session, kind="sft", n=1)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    with Session.begin() as s:
        queue.submit_demonstration(s, task_id=t1, user_id=ann, text="first try", now=at(5))
    before = len(rows(Session, Response))
    result = undo_at(Session, ann, pid, 10)
    assert result.previous == {"text": "first try"} and result.kind == "write"
    assert rows(Session, Demonstration) == []
    assert len(rows(Session, Response)) == before - 1  # the withdrawn text went with it
    with Session() as s:
        assert queue.get_draft(s, task_id=t1, user_id=ann) == {"text": "first try"}
    assert claim(Session, pid, ann, 11) == t1
    with Session.begin() as s:
        queue.submit_demonstration(s, task_id=t1, user_id=ann, text="second try", now=at(15))
    (demo,) = rows(Session, Demonstration)
    with Session() as s:
        assert s.get(Response, demo.response_id).text == "second try"
    assert task_row(Session, t1).status == TaskStatus.done


def test_rank_undo_gives_the_order_back_in_screen_positions(Session):  # noqa: N803
    pid = make_project(Session, kind="ranking", n=1)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    with Session() as s:
        ids = list(
            s.scalars(
                select(TaskCandidate.response_id)
                .where(TaskCandidate.task_id == t1)
                .order_by(TaskCandidate.position)
            )
        )
    order = [ids[2], ids[0], ids[1]]
    with Session.begin() as s:
        queue.submit_ranking(s, task_id=t1, user_id=ann, order=order, now=at(5))
    result = undo_at(Session, ann, pid, 8)
    assert result.previous["order"] == order and result.previous["positions"] == [2, 0, 1]
    assert rows(Session, Ranking) == []
    with Session.begin() as s:
        queue.submit_ranking(s, task_id=t1, user_id=ann, order=ids, now=at(9))
    assert [r.order for r in rows(Session, Ranking)] == [ids]


def test_gold_and_stats_after_an_undo(Session):  # noqa: N803
    pid = make_project(Session, n=1, gold=1)
    with Session.begin() as s:
        projects.update_project(s, projects.get_project(s, pid), gold_rate=1.0)
    ann, bob = make_users(Session, "ann", "bob")
    gold = claim(Session, pid, ann, 0)
    assert task_row(Session, gold).is_gold
    vote(Session, gold, ann, 2, choice="b")  # wrong: the gold answer is a
    g2 = claim(Session, pid, bob, 3)
    assert g2 == gold
    vote(Session, gold, bob, 4, choice="a")
    with Session() as s:
        per = stats.labels_per_labeler(s, pid).set_index("labeler")
        assert per.loc["ann", "gold_correct"] == 0 and per.loc["ann", "gold_answered"] == 1
    undo_at(Session, ann, pid, 10)
    with Session() as s:
        per = stats.labels_per_labeler(s, pid)
        assert "ann" not in set(per["labeler"])  # her only label is gone
        assert stats.overview(s, pid)["labels"] == 1
    task = task_row(Session, gold)
    assert (task.status, task.labels_count) == (TaskStatus.open, 1)
    assert claim(Session, pid, ann, 11) == gold
    vote(Session, gold, ann, 12, choice="a")
    with Session() as s:
        per = stats.labels_per_labeler(s, pid).set_index("labeler")
        assert per.loc["ann", "gold_correct"] == 1 and per.loc["ann", "gold_answered"] == 1
    assert task_row(Session, gold).labels_count == 2


def test_nothing_else_is_lost(Session):  # noqa: N803
    pid = make_project(Session, n=3, overlap=2)
    ann, bob = make_users(Session, "ann", "bob")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 1)
    t2 = claim(Session, pid, ann, 2)
    vote(Session, t2, ann, 3, choice="b")
    b1 = claim(Session, pid, bob, 3)
    vote(Session, b1, bob, 4)
    t3 = claim(Session, pid, ann, 5)
    with Session.begin() as s:  # a draft on the task ann holds now
        queue.save_draft(s, task_id=t3, user_id=ann, payload={"choice": "tie"})
    vote(Session, claim(Session, pid, bob, 6), bob, 6)  # bob's second label
    before = {(p.task_id, p.user_id, p.choice) for p in rows(Session, Preference)}
    counts = {t.id: t.labels_count for t in rows(Session, Task)}

    undo_at(Session, ann, pid, 10)
    after = {(p.task_id, p.user_id, p.choice) for p in rows(Session, Preference)}
    assert before - after == {(t2, ann, "b")}
    assert {t.id: t.labels_count for t in rows(Session, Task)} == {**counts, t2: counts[t2] - 1}
    with Session() as s:
        assert queue.get_draft(s, task_id=t3, user_id=ann) == {"choice": "tie"}
        held = s.scalars(
            select(Assignment.task_id).where(
                Assignment.user_id == ann, Assignment.status == AssignmentStatus.active
            )
        ).all()
        assert sorted(held) == sorted([t2, t3])  # the next task ann was shown stays hers
        assert s.scalar(select(func.count()).select_from(Assignment)) == 5


def test_retired_item_keeps_its_label(Session):  # noqa: N803
    pid = make_project(Session, n=1)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 1)
    with Session.begin() as s:
        s.get(Task, t1).status = TaskStatus.retired
    refused(Session, ann, pid, 2, "retired")
    assert len(rows(Session, Preference)) == 1


def test_two_undos_at_once_take_back_one_label(Session):  # noqa: N803
    pid = make_project(Session, n=2, overlap=2)
    (ann,) = make_users(Session, "ann")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, 1)
    t2 = claim(Session, pid, ann, 2)
    vote(Session, t2, ann, 3)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def one() -> None:
        start.wait()
        try:
            undo_at(Session, ann, pid, 5)
            outcomes.append("undone")
        except Conflict as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(outcomes) == 2 and outcomes.count("undone") == 1, outcomes
    assert [p.task_id for p in rows(Session, Preference)] == [t1]
    assert task_row(Session, t2).labels_count == 0 and task_row(Session, t1).labels_count == 1


def test_an_undo_waits_for_a_snapshot_being_made_and_claims_do_not(Session, engine):  # noqa: N803
    pid = make_project(Session, n=3)
    ann, bob = make_users(Session, "ann", "bob")
    t1 = claim(Session, pid, ann, 0)
    vote(Session, t1, ann, -30)
    outcome: list[str] = []

    def undo_now() -> None:
        try:
            undo_at(Session, ann, pid, 0)
            outcome.append("undone")
        except Conflict as exc:
            outcome.append(str(exc))

    with Session.begin() as s:  # a snapshot read the label and is not saved yet
        snap, created = snapshots.create_snapshot(s, project=pid, kind="preference")
        assert created
        waiting = threading.Thread(target=undo_now)
        waiting.start()
        waiting.join(timeout=2)
        assert waiting.is_alive() and outcome == []  # the undo waits for the snapshot
        if engine.dialect.name == "postgresql":  # the lock is not one that claims wait on
            assert claim(Session, pid, bob, 1) is not None
    waiting.join(timeout=60)
    assert len(outcome) == 1 and f"Snapshot #{snap.id} was made after this label" in outcome[0]
    assert [p.task_id for p in rows(Session, Preference)] == [t1]
