"""The labeling queue on SQLite and PostgreSQL: leases, overlap, gold, submits, drafts."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labeling import projects, queue
from labeling.accounts import users
from labeling.errors import Conflict, InvalidInput, PermissionDenied
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Draft,
    Preference,
    Ranking,
    Task,
    TaskCandidate,
    TaskStatus,
    utcnow,
)
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response, add_write_task


def make_project(Session, *, kind="pairwise", n=3, overlap=1, gold=0, gold_rate=0.0, lease=600):
    with Session.begin() as s:
        p = projects.create_project(
            s, name="p", kind=kind, overlap=overlap, gold_rate=gold_rate, lease_seconds=lease
        )
        for i in range(n + gold):
            prompt = add_prompt(s, p, f"question {i}?")
            if kind == "sft":
                add_write_task(s, p, prompt, gold_text="gold" if i >= n else None)
            elif kind == "ranking":
                rs = [add_response(s, prompt, f"answer {i}.{k}") for k in range(3)]
                add_rank_task(s, p, prompt, rs)
            else:
                a = add_response(s, prompt, f"answer A {i}")
                b = add_response(s, prompt, f"answer B {i}")
                add_compare_task(s, p, prompt, a, b, gold_choice="a" if i >= n else None)
        return p.id


def make_users(Session, *names, role="labeler"):
    with Session.begin() as s:
        return [users.add_user(s, name=n, role=role, password="long-password").id for n in names]


def claim(Session, project_id, user_id, **kw):
    with Session.begin() as s:
        a = queue.claim_next(s, project_id=project_id, user_id=user_id, **kw)
        return None if a is None else (a.id, a.task_id)


def vote(Session, task_id, user_id, choice="a", **kw):
    with Session.begin() as s:
        r = queue.submit_preference(s, task_id=task_id, user_id=user_id, choice=choice, **kw)
        return r.accepted, r.duplicate, r.message


def count(Session, model, *where):
    with Session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_claim_resumes_live_lease_and_never_repeats_done_work(Session):
    pid = make_project(Session, n=2)
    (u,) = make_users(Session, "ann")
    first = claim(Session, pid, u)
    assert claim(Session, pid, u) == first  # a reload gets the same task back
    assert vote(Session, first[1], u)[0]
    second = claim(Session, pid, u)
    assert second[1] != first[1]
    assert vote(Session, second[1], u)[0]
    assert claim(Session, pid, u) is None


def test_overlap_limits_leases_and_labels(Session):
    pid = make_project(Session, n=1, overlap=2)
    a, b, c = make_users(Session, "a", "b", "c")
    ta, tb = claim(Session, pid, a), claim(Session, pid, b)
    assert ta[1] == tb[1]
    assert claim(Session, pid, c) is None  # both slots leased
    vote(Session, ta[1], a)
    vote(Session, tb[1], b, choice="tie")
    with Session() as s:
        task = s.get(Task, ta[1])
        assert (task.labels_count, task.status) == (2, TaskStatus.done)
    assert claim(Session, pid, c) is None


def test_expired_lease_is_reclaimable_and_late_submit_keeps_the_text(Session):
    pid = make_project(Session, kind="sft", n=1, lease=60)
    a, b = make_users(Session, "a", "b")
    _, task_id = claim(Session, pid, a)
    assert claim(Session, pid, b) is None
    later = utcnow() + timedelta(seconds=61)
    _, task_b = claim(Session, pid, b, now=later)
    assert task_b == task_id
    with Session.begin() as s:
        assert queue.submit_demonstration(
            s, task_id=task_id, user_id=b, text="B's answer", now=later
        ).accepted
    with Session.begin() as s:
        r = queue.submit_demonstration(
            s, task_id=task_id, user_id=a, text="A's long answer", now=later
        )
    assert not r.accepted and "draft" in r.message
    with Session() as s:
        assert queue.get_draft(s, task_id=task_id, user_id=a) == {"text": "A's long answer"}
        assert s.scalar(select(func.count()).select_from(Demonstration)) == 1
        assert s.get(Task, task_id).labels_count == 1


def test_late_submit_counts_when_the_item_still_has_room(Session):
    pid = make_project(Session, n=1, lease=60)
    (a,) = make_users(Session, "a")
    _, task_id = claim(Session, pid, a)
    accepted, _, _ = vote(Session, task_id, a, now=utcnow() + timedelta(hours=2))
    assert accepted
    assert count(Session, Preference) == 1


def test_relet_of_own_lapsed_lease(Session):
    pid = make_project(Session, n=1, lease=60)
    (a,) = make_users(Session, "a")
    first = claim(Session, pid, a)
    again = claim(Session, pid, a, now=utcnow() + timedelta(minutes=5))
    assert again == first
    with Session() as s:
        assert s.get(Assignment, first[0]).expires_at > utcnow() + timedelta(minutes=5)


def test_double_submit_writes_one_row(Session):
    pid = make_project(Session, n=2)
    a, b = make_users(Session, "a", "b")
    _, task_id = claim(Session, pid, a)
    assert vote(Session, task_id, a, idempotency_key="k1") == (True, False, "")
    assert vote(Session, task_id, a, idempotency_key="k1")[:2] == (True, True)
    assert vote(Session, task_id, a, idempotency_key="k2")[:2] == (True, True)
    assert count(Session, Preference) == 1
    _, other = claim(Session, pid, b)
    with pytest.raises(Conflict):
        vote(Session, other, b, idempotency_key="k1")
    with Session() as s:
        assert s.get(Task, task_id).labels_count == 1


def test_skip_never_returns_release_does(Session):
    pid = make_project(Session, n=1, overlap=1)
    a, b = make_users(Session, "a", "b")
    aid, task_id = claim(Session, pid, a)
    with Session.begin() as s:
        queue.skip(s, assignment_id=aid, user_id=a)
    assert claim(Session, pid, a) is None
    bid, task_b = claim(Session, pid, b)
    assert task_b == task_id
    with Session.begin() as s:
        queue.release(s, assignment_id=bid, user_id=b)
    assert claim(Session, pid, b)[1] == task_id


def test_renew_extends_and_fails_once_given_away(Session):
    pid = make_project(Session, n=1, lease=60)
    a, b = make_users(Session, "a", "b")
    aid, task_id = claim(Session, pid, a)
    with Session.begin() as s:
        before = s.get(Assignment, aid).expires_at
        after = queue.renew(
            s, assignment_id=aid, user_id=a, now=utcnow() + timedelta(seconds=30)
        ).expires_at
    assert after > before
    later = utcnow() + timedelta(seconds=200)
    claim(Session, pid, b, now=later)
    with pytest.raises(Conflict):
        with Session.begin() as s:
            queue.renew(s, assignment_id=aid, user_id=a, now=later)


def test_gold_items_served_at_rate_and_never_close(Session):
    pid = make_project(Session, n=3, gold=1, gold_rate=1.0, overlap=1)
    a, b = make_users(Session, "a", "b")
    for user in (a, b):
        _, task_id = claim(Session, pid, user)
        with Session() as s:
            assert s.get(Task, task_id).is_gold
        vote(Session, task_id, user)
    with Session() as s:
        gold = s.scalar(select(Task).where(Task.is_gold))
        assert gold.labels_count == 2 and gold.status == TaskStatus.open
    # after gold, regular work; with rate 0 a gold item is never served
    assert not claim_task(Session, pid, a).is_gold
    with Session.begin() as s:
        projects.update_project(s, projects.get_project(s, "p"), gold_rate=0.0)
    (c,) = make_users(Session, "c")
    seen = []
    while (got := claim(Session, pid, c)) is not None:
        seen.append(got[1])
        vote(Session, got[1], c)
    with Session() as s:
        assert not any(s.get(Task, t).is_gold for t in seen)


def claim_task(Session, pid, user):
    with Session.begin() as s:
        return queue.claim_next(s, project_id=pid, user_id=user).task


def test_invalid_submits_write_nothing(Session):
    pid = make_project(Session, n=1)
    (a,) = make_users(Session, "a")
    _, task_id = claim(Session, pid, a)
    for bad in (
        dict(choice="c"),
        dict(choice="tie", strength=2),
        dict(choice="a", strength=7),
        dict(choice="a", rationale="x" * 30_000),
        dict(choice="a", time_spent_ms=-1),
    ):
        with pytest.raises(InvalidInput):
            vote(Session, task_id, a, **bad)
    with pytest.raises(InvalidInput):  # wrong label kind for the task
        with Session.begin() as s:
            queue.submit_demonstration(s, task_id=task_id, user_id=a, text="hi")
    assert count(Session, Preference) == 0
    with Session() as s:
        assert s.get(Task, task_id).labels_count == 0


def test_demonstration_validation_and_draft_cleared(Session):
    pid = make_project(Session, kind="sft", n=1)
    (a,) = make_users(Session, "a")
    _, task_id = claim(Session, pid, a)
    with Session.begin() as s:
        queue.save_draft(s, task_id=task_id, user_id=a, payload={"text": "half"})
    for bad in ("", "   ", "x" * 200_001, "nul\x00"):
        with pytest.raises(InvalidInput):
            with Session.begin() as s:
                queue.submit_demonstration(s, task_id=task_id, user_id=a, text=bad)
    with Session() as s:
        assert queue.get_draft(s, task_id=task_id, user_id=a) == {"text": "half"}
    with Session.begin() as s:
        r = queue.submit_demonstration(s, task_id=task_id, user_id=a, text="The whole answer.")
        assert r.accepted and r.label.response.text == "The whole answer."
    assert count(Session, Draft) == 0


def test_ranking_must_be_a_permutation(Session):
    pid = make_project(Session, kind="ranking", n=1)
    (a,) = make_users(Session, "a")
    _, task_id = claim(Session, pid, a)
    with Session() as s:
        ids = list(
            s.scalars(select(TaskCandidate.response_id).where(TaskCandidate.task_id == task_id))
        )
    for bad in (ids[:2], ids + ids[:1], ids[:2] + [999999]):
        with pytest.raises(InvalidInput):
            with Session.begin() as s:
                queue.submit_ranking(s, task_id=task_id, user_id=a, order=bad)
    with Session.begin() as s:
        assert queue.submit_ranking(s, task_id=task_id, user_id=a, order=ids[::-1]).accepted
    assert count(Session, Ranking) == 1


def test_deactivated_user_and_unclaimed_task_are_refused(Session):
    pid = make_project(Session, n=2)
    a, b = make_users(Session, "a", "b")
    _, task_id = claim(Session, pid, a)
    with pytest.raises(PermissionDenied):  # b never claimed it
        vote(Session, task_id, b)
    with Session.begin() as s:
        users.set_active(s, "a", False)
    with pytest.raises(PermissionDenied):
        vote(Session, task_id, a)
    with pytest.raises(PermissionDenied):
        claim(Session, pid, a)
    assert count(Session, Preference) == 0


def test_flag_moves_on_and_is_recorded(Session):
    pid = make_project(Session, n=2)
    (a,) = make_users(Session, "a")
    aid, task_id = claim(Session, pid, a)
    with Session.begin() as s:
        queue.flag(s, assignment_id=aid, user_id=a, reason="unsafe", note="violent")
    with pytest.raises(InvalidInput):
        with Session.begin() as s:
            queue.flag(s, assignment_id=aid, user_id=a, reason="boring")
    assert claim(Session, pid, a)[1] != task_id
    with Session() as s:
        assert s.get(Assignment, aid).status == AssignmentStatus.skipped


def _left_for(s, user_id: int) -> int:
    """Open tasks this user was never assigned: they may still come to them."""
    mine = select(Assignment.task_id).where(Assignment.user_id == user_id)
    return s.scalar(
        select(func.count()).where(Task.status == TaskStatus.open, Task.id.not_in(mine))
    )


@pytest.mark.parametrize("overlap", [1, 3])
def test_32_concurrent_labelers(engine, Session, overlap):
    """No task twice to one user, none over its overlap, no write lost, every task full."""
    n_tasks = 40
    pid = make_project(Session, n=n_tasks, overlap=overlap)
    names = [f"l{i}" for i in range(32)]
    ids = make_users(Session, *names)
    from labeling.db import make_engine, make_sessionmaker

    big = (
        make_engine(
            str(engine.url.render_as_string(hide_password=False)), pool_size=40, max_overflow=0
        )
        if engine.dialect.name == "postgresql"
        else engine
    )
    maker = make_sessionmaker(big)
    accepted = {u: 0 for u in ids}
    errors = []
    barrier = threading.Barrier(len(ids))

    def labeler(user_id: int) -> None:
        rng = random.Random(user_id)
        try:
            barrier.wait()
            while True:
                with maker.begin() as s:
                    a = queue.claim_next(s, project_id=pid, user_id=user_id, rng=rng)
                    if a is None and not _left_for(s, user_id):
                        return
                    task_id = a.task_id if a is not None else None
                if task_id is None:
                    # All that is left is leased to others for now; one may skip it back to
                    # the pool, as a person would see after a reload.
                    time.sleep(0.05)
                    continue
                if rng.random() < 0.1:  # some labelers skip now and then
                    with maker.begin() as s:
                        queue.skip(s, assignment_id=a.id, user_id=user_id)
                    continue
                with maker.begin() as s:
                    r = queue.submit_preference(
                        s,
                        task_id=task_id,
                        user_id=user_id,
                        choice=rng.choice("ab"),
                        strength=2,
                        idempotency_key=f"{user_id}-{task_id}",
                    )
                    if r.accepted and not r.duplicate:
                        accepted[user_id] += 1
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))

    threads = [threading.Thread(target=labeler, args=(u,)) for u in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    with maker() as s:
        per_task = dict(
            s.execute(select(Preference.task_id, func.count()).group_by(Preference.task_id)).all()
        )
        assert len(per_task) == n_tasks and set(per_task.values()) == {overlap}
        tasks = s.scalars(select(Task)).all()
        assert all(t.labels_count == overlap and t.status == TaskStatus.done for t in tasks)
        pairs = s.execute(select(Preference.task_id, Preference.user_id)).all()
        assert len(pairs) == len(set(pairs))
        by_user = dict(
            s.execute(select(Preference.user_id, func.count()).group_by(Preference.user_id)).all()
        )
        assert {u: by_user.get(u, 0) for u in ids} == accepted  # no write lost
        assert sum(accepted.values()) == n_tasks * overlap
    if big is not engine:
        big.dispose()


@pytest.mark.parametrize("kind", ["pairwise", "sft", "ranking"])
@pytest.mark.parametrize("how", ["skip", "release", "flag"])
def test_submit_after_skip_or_release_is_refused_and_writes_nothing(Session, kind, how):
    pid = make_project(Session, kind=kind, n=1, overlap=1)
    (a,) = make_users(Session, "a")
    aid, task_id = claim(Session, pid, a)
    with Session.begin() as s:
        if how == "flag":
            queue.flag(s, assignment_id=aid, user_id=a, reason="unsafe")
        else:
            getattr(queue, how)(s, assignment_id=aid, user_id=a)
    with Session() as s:
        ids = list(
            s.scalars(select(TaskCandidate.response_id).where(TaskCandidate.task_id == task_id))
        )
    submit = {
        "pairwise": lambda s: queue.submit_preference(s, task_id=task_id, user_id=a, choice="a"),
        "sft": lambda s: queue.submit_demonstration(s, task_id=task_id, user_id=a, text="late"),
        "ranking": lambda s: queue.submit_ranking(s, task_id=task_id, user_id=a, order=ids),
    }[kind]
    with pytest.raises(Conflict, match="not recorded"):
        with Session.begin() as s:
            submit(s)
    for model in (Preference, Demonstration, Ranking, Draft):
        assert count(Session, model) == 0
    with Session() as s:
        task = s.get(Task, task_id)
        assert (task.labels_count, task.status) == (0, TaskStatus.open)
        expected = AssignmentStatus.released if how == "release" else AssignmentStatus.skipped
        assert s.get(Assignment, aid).status == expected
    # The slot went back to the pool: another labeler can still label the item.
    (b,) = make_users(Session, "b")
    assert claim(Session, pid, b)[1] == task_id
