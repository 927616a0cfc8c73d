"""The database side of active learning (labeling/queue_priority.py) on SQLite and
PostgreSQL: which pairs are read (open, non-gold compare tasks; decided labels with the
reviews in force), priorities written change what claim_next serves, gold / done / arena
tasks keep theirs, and bad input writes nothing."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from labeling import projects, queue, queue_priority
from labeling.accounts import users
from labeling.errors import InvalidInput, NotFound
from labeling.models import Preference, Task, TaskKind
from labeling.quality import review
from labeling.tasks import add_compare_task, add_prompt, add_response


def world(Session):  # noqa: N803
    """Project 'pairs' (overlap 1, gold never served): tasks t0..t9 and a gold task; ann
    labels t0 a, t1 b, t2 tie, t3 a (relabeled b by the admin), t4 b (rejected); an arena
    task in the same project; an sft project 'notes' and an arena project 'ring'."""
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=1)
        tasks = []
        for i in range(10):
            prompt = add_prompt(s, p, f"question {i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            tasks.append(add_compare_task(s, p, prompt, a, b).id)
        prompt = add_prompt(s, p, "gold question?")
        a, b = add_response(s, prompt, "gold A"), add_response(s, prompt, "gold B")
        gold = add_compare_task(s, p, prompt, a, b, gold_choice="a").id
        prompt = add_prompt(s, p, "arena question?")
        a, b = add_response(s, prompt, "arena A"), add_response(s, prompt, "arena B")
        arena_task = add_compare_task(s, p, prompt, a, b, kind=TaskKind.arena).id
        projects.create_project(s, name="notes", kind="sft")
        projects.create_project(s, name="ring", kind="arena")
        ann = users.add_user(s, name="ann", role="labeler", password=None).id
        boss = users.add_user(s, name="boss", role="admin", password=None).id
        bea = users.add_user(s, name="bea", role="labeler", password=None).id
        pid = p.id
    rng = random.Random(1)
    with Session.begin() as s:
        for choice in ("a", "b", "tie", "a", "b"):
            a = queue.claim_next(s, project_id=pid, user_id=ann, rng=rng)
            queue.submit_preference(s, task_id=a.task_id, user_id=ann, choice=choice)
    with Session.begin() as s:
        label = {t: s.scalar(select(Preference.id).where(Preference.task_id == t))
                 for t in tasks[:5]}  # fmt: skip
        review.review_label(s, reviewer_id=boss, kind="preference", label_id=label[tasks[3]],
                            action="relabel", choice="b")  # fmt: skip
        review.review_label(s, reviewer_id=boss, kind="preference", label_id=label[tasks[4]],
                            action="reject")  # fmt: skip
    return {"pid": pid, "tasks": tasks, "gold": gold, "arena": arena_task, "bea": bea}


def priorities(Session, ids) -> dict[int, int]:  # noqa: N803
    with Session.begin() as s:
        return dict(s.execute(select(Task.id, Task.priority).where(Task.id.in_(ids))).all())


def test_reads_open_pairs_and_labels_with_reviews(Session):  # noqa: N803
    w = world(Session)
    t = w["tasks"]
    with Session.begin() as s:
        assert queue_priority.pairwise_project(s, "pairs").id == w["pid"]
        rows = queue_priority.open_pairs(s, w["pid"])
        labeled = queue_priority.labeled_pairs(s, w["pid"])
    # the five unlabeled compare tasks only: not the done ones, the gold one or the arena one
    assert [r["task_id"] for r in rows] == t[5:]
    assert rows[0]["text_a"] == "A5" and rows[0]["text_b"] == "B5"
    assert rows[0]["messages"] == [{"role": "user", "content": "question 5?"}]
    assert rows[0]["priority"] == 0
    # t2's tie says nothing about which is better, t4's label was rejected, t3's relabeled
    assert [(r["task_id"], r["a_wins"]) for r in labeled] == [
        (t[0], True),
        (t[1], False),
        (t[3], False),
    ]
    assert labeled[0]["text_a"] == "A0" and labeled[0]["messages"][0]["content"] == "question 0?"


def test_priorities_change_the_claim_order_and_touch_nothing_else(Session):  # noqa: N803
    w = world(Session)
    t, others = w["tasks"], [*w["tasks"][:5], w["gold"], w["arena"]]
    order = [t[8], t[6], t[5], t[9], t[7]]
    with Session.begin() as s:
        assert queue_priority.set_priorities(s, w["pid"], order) == 5
        top = queue_priority.queue_top(s, w["pid"], limit=3)
    assert [r["task_id"] for r in top] == order[:3]
    assert [r["priority"] for r in top] == [5, 4, 3]
    assert priorities(Session, others) == {i: 0 for i in others}  # gold, done, arena untouched
    claimed = []
    with Session.begin() as s:
        while (a := queue.claim_next(s, project_id=w["pid"], user_id=w["bea"])) is not None:
            queue.submit_preference(s, task_id=a.task_id, user_id=w["bea"], choice="a")
            claimed.append(a.task_id)
    assert claimed == [*order, w["arena"]]  # the highest first; the untouched arena task last


def test_bad_input_writes_nothing(Session):  # noqa: N803
    w = world(Session)
    t = w["tasks"]
    for bad, message in [
        ([t[5], w["gold"]], "is not an open, non-gold compare task"),
        ([t[5], t[0]], "is not an open, non-gold compare task"),  # done
        ([t[5], w["arena"]], "is not an open, non-gold compare task"),
        ([t[5], t[5]], "names each task once"),
    ]:
        with pytest.raises(InvalidInput, match=message), Session.begin() as s:
            queue_priority.set_priorities(s, w["pid"], bad)
    every = [*t, w["gold"], w["arena"]]
    assert priorities(Session, every) == {i: 0 for i in every}
    with Session.begin() as s:
        with pytest.raises(InvalidInput, match="'notes' is an sft project: only pairwise"):
            queue_priority.pairwise_project(s, "notes")
        with pytest.raises(InvalidInput, match="'ring' is an arena project.*matchmaking"):
            queue_priority.pairwise_project(s, "ring")
        with pytest.raises(NotFound, match="no project named 'nope'"):
            queue_priority.pairwise_project(s, "nope")
