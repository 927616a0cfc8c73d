"""labeling.labeler_views on both databases: what the labeler pages read and write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labeling import labeler_views as lv
from labeling import projects, queue
from labeling.accounts import users
from labeling.errors import InvalidInput
from labeling.models import (
    Assignment,
    AssignmentStatus,
    AuthorKind,
    Demonstration,
    Flag,
    Preference,
    Ranking,
    utcnow,
)
from labeling.tasks import (
    add_compare_task,
    add_prompt,
    add_rank_task,
    add_response,
    add_write_task,
)


def test_screen_choice_maps_back_to_the_task_when_sides_are_swapped():
    assert lv.screen_to_task_choice("a", False) == "a"
    assert lv.screen_to_task_choice("b", False) == "b"
    assert lv.screen_to_task_choice("a", True) == "b"
    assert lv.screen_to_task_choice("b", True) == "a"
    for swap in (False, True):
        assert lv.screen_to_task_choice("tie", swap) == "tie"
        assert lv.screen_to_task_choice("both_bad", swap) == "both_bad"
    with pytest.raises(InvalidInput):
        lv.screen_to_task_choice("left", False)


def test_ranks_become_an_order_best_first():
    assert lv.ranks_to_order([10, 20, 30], [2, 3, 1]) == [30, 10, 20]
    with pytest.raises(InvalidInput):
        lv.ranks_to_order([10, 20, 30], [1, 1, 2])
    with pytest.raises(InvalidInput):
        lv.ranks_to_order([10, 20], [1])


def _compare_project(s, n: int = 2, name: str = "cmp"):
    p = projects.create_project(s, name=name, kind="pairwise", guidelines="# Judge well")
    tasks = []
    for i in range(n):
        prompt = add_prompt(
            s,
            p,
            [
                {"role": "user", "content": f"first turn {i}"},
                {"role": "assistant", "content": "a reply"},
                {"role": "user", "content": f"question {i}"},
            ],
        )
        a, b = add_response(s, prompt, f"answer A{i}"), add_response(s, prompt, f"answer B{i}")
        tasks.append(add_compare_task(s, p, prompt, a, b))
    return p, tasks


def _user(s, name: str = "lab") -> int:
    return users.add_user(s, name=name, role="labeler", password=None).id


def test_compare_view_shows_sides_and_submit_maps_swap(Session):
    with Session.begin() as s:
        uid = _user(s)
        p, tasks = _compare_project(s)
        assert [x.name for x in lv.labeler_projects(s, lv.COMPARE_KINDS)] == ["cmp"]
        assert lv.labeler_projects(s, lv.WRITE_KINDS) == []
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        s.get(Assignment, view.assignment_id).swap_sides = True
        view = lv.open_task(s, user_id=uid, project_id=p.id, assignment_id=view.assignment_id)
        task = next(t for t in tasks if t.id == view.task_id)
        assert view.kind == "compare"
        assert view.messages[0] == {"role": "user", "content": f"first turn {tasks.index(task)}"}
        assert len(view.messages) == 3
        # swapped: the task's response B is on the left, under "A"
        assert view.left.response_id == task.response_b_id
        assert view.right.response_id == task.response_a_id
        aid, task_id, b_id = view.assignment_id, task.id, task.response_b_id

    with Session.begin() as s:
        out = lv.submit_compare(
            s, assignment_id=aid, user_id=uid, screen_choice="a", strength=3,
            rationale="  left is better ", time_spent_ms=1234, idempotency_key="k1",
        )  # fmt: skip
        assert out.accepted and not out.duplicate
        assert out.next is not None and out.next.task_id != task_id
    with Session.begin() as s:
        again = lv.submit_compare(
            s, assignment_id=aid, user_id=uid, screen_choice="a", strength=3, idempotency_key="k1"
        )
        assert again.accepted and again.duplicate
    with Session() as s:
        prefs = s.scalars(select(Preference).where(Preference.task_id == task_id)).all()
        assert len(prefs) == 1
        pref = prefs[0]
        assert (pref.choice, pref.strength, pref.left_response_id) == ("b", 3, b_id)
        assert pref.rationale == "left is better" and pref.time_spent_ms == 1234


def test_tie_drops_strength_and_queue_runs_empty(Session):
    with Session.begin() as s:
        uid = _user(s)
        p, _ = _compare_project(s, n=1)
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        out = lv.submit_compare(
            s, assignment_id=view.assignment_id, user_id=uid, screen_choice="tie", strength=2
        )
        assert out.accepted and out.next is None
        assert s.scalar(select(Preference.strength)) is None
        assert lv.open_task(s, user_id=uid, project_id=p.id) is None


def test_rerun_reads_the_lease_without_claiming_again(Session):
    with Session.begin() as s:
        uid, other = _user(s), _user(s, "other")
        p, _ = _compare_project(s, n=3)
        first = lv.open_task(s, user_id=uid, project_id=p.id)
        again = lv.open_task(s, user_id=uid, project_id=p.id, assignment_id=first.assignment_id)
        assert again.assignment_id == first.assignment_id
        # a fresh session (no id remembered) resumes the live lease rather than a new task
        resumed = lv.open_task(s, user_id=uid, project_id=p.id)
        assert resumed.task_id == first.task_id
        # someone else's assignment id is never shown: they get their own claim
        theirs = lv.open_task(s, user_id=other, project_id=p.id, assignment_id=first.assignment_id)
        assert theirs.assignment_id != first.assignment_id
        assert s.scalar(select(func.count()).select_from(Assignment)) == 2


def test_skip_and_flag_move_on(Session):
    with Session.begin() as s:
        uid = _user(s)
        p, _ = _compare_project(s, n=3)
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        out = lv.skip_task(s, assignment_id=view.assignment_id, user_id=uid)
        assert out.next.task_id != view.task_id
        assert s.get(Assignment, view.assignment_id).status == AssignmentStatus.skipped
        out2 = lv.flag_task(
            s, assignment_id=out.next.assignment_id, user_id=uid, reason="personal_data",
            note="has a phone number",
        )  # fmt: skip
        assert out2.next is not None and out2.next.task_id not in (view.task_id, out.next.task_id)
        flag = s.scalar(select(Flag))
        assert (flag.task_id, flag.reason, flag.note) == (
            out.next.task_id,
            "personal_data",
            "has a phone number",
        )


def test_write_view_draft_model_answers_and_submit(Session):
    with Session.begin() as s:
        uid = _user(s)
        p = projects.create_project(s, name="sft", kind="sft")
        prompt = add_prompt(s, p, "Explain rain.")
        model = add_response(s, prompt, "Rain falls from clouds.", author_kind=AuthorKind.imported)
        add_write_task(s, p, prompt)
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        assert view.kind == "write" and view.draft is None
        assert [(a.response_id, a.source) for a in view.model_answers] == [(model.id, "import")]
        assert lv.save_write_draft(s, assignment_id=view.assignment_id, user_id=uid, text="Wa")
        aid, model_id = view.assignment_id, model.id

    with Session.begin() as s:  # a reload: nothing remembered but the user
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        assert view.assignment_id == aid and view.draft == {"text": "Wa"}
        text = lv.copy_model_answer(s, assignment_id=aid, user_id=uid, response_id=model_id)
        assert text == "Rain falls from clouds."
        assert lv.open_task(s, user_id=uid, project_id=p.id).draft == {"text": text}
        out = lv.submit_write(s, assignment_id=aid, user_id=uid, text="Water falls.")
        assert out.accepted and out.next is None
        demo = s.scalar(select(Demonstration))
        assert demo.response.text == "Water falls." and demo.user_id == uid
        with pytest.raises(InvalidInput):
            lv.submit_write(s, assignment_id=aid, user_id=uid, text="   ")


def test_rank_view_and_submit(Session):
    with Session.begin() as s:
        uid = _user(s)
        p = projects.create_project(s, name="rank", kind="ranking", rank_k=3)
        prompt = add_prompt(s, p, "Name a colour.")
        rs = [add_response(s, prompt, t) for t in ("red", "green", "blue")]
        add_rank_task(s, p, prompt, rs)
        view = lv.open_task(s, user_id=uid, project_id=p.id)
        assert [a.text for a in view.candidates] == ["red", "green", "blue"]
        with pytest.raises(InvalidInput):
            lv.submit_rank(s, assignment_id=view.assignment_id, user_id=uid, ranks=[1, 1, 2])
        out = lv.submit_rank(s, assignment_id=view.assignment_id, user_id=uid, ranks=[3, 1, 2])
        assert out.accepted
        assert s.scalar(select(Ranking.order)) == [rs[1].id, rs[2].id, rs[0].id]


def test_progress_counts_only_my_own_labels(Session):
    with Session.begin() as s:
        uid, other = _user(s), _user(s, "other")
        p, _ = _compare_project(s, n=5)
        spent = [4000, 1000, 2000]
        for ms in spent:
            view = lv.open_task(s, user_id=uid, project_id=p.id)
            lv.submit_compare(
                s, assignment_id=view.assignment_id, user_id=uid, screen_choice="b",
                time_spent_ms=ms,
            )  # fmt: skip
        view = lv.open_task(s, user_id=other, project_id=p.id)
        lv.submit_compare(s, assignment_id=view.assignment_id, user_id=other, screen_choice="a")
        # one of mine was yesterday
        first = s.scalar(
            select(Preference).where(Preference.user_id == uid).order_by(Preference.id)
        )
        first.created_at = utcnow() - timedelta(days=1)

    with Session.begin() as s:
        assert lv.done_today(s, user_id=uid, project_id=p.id) == 2
        mine = lv.progress(s, user_id=uid)
        assert (mine.today, mine.total, mine.median_seconds) == (2, 3, 2.0)
        (row,) = mine.projects
        assert (row.name, row.today, row.total) == ("cmp", 2, 3)
        # 5 tasks, overlap 1: 3 done by me, 1 by the other labeler, 1 leased to me now
        assert row.remaining == 1
        days = list(mine.per_day.values())
        assert len(days) == 14 and days[-1] == 2 and days[-2] == 1
        theirs = lv.progress(s, user_id=other)
        assert (theirs.today, theirs.total) == (1, 1)


def test_queue_state_counts_left_total_and_what_others_hold(Session):  # noqa: N803
    with Session.begin() as s:
        p, _ = _compare_project(s, n=3)
        me, others = _user(s, "me"), [_user(s, "other1"), _user(s, "other2")]
        pid = p.id
    with Session.begin() as s:
        assert lv.queue_state(s, user_id=me, project_id=pid) == lv.QueueState(3, 3, 0)
        # two other labelers hold one item each (overlap 1): only one is left for me
        for other in others:
            queue.claim_next(s, project_id=pid, user_id=other)
        assert lv.queue_state(s, user_id=me, project_id=pid) == lv.QueueState(1, 3, 2)
    with Session.begin() as s:
        mine = queue.claim_next(s, project_id=pid, user_id=me)
        queue.submit_preference(s, task_id=mine.task_id, user_id=me, choice="a")
        assert lv.queue_state(s, user_id=me, project_id=pid) == lv.QueueState(0, 3, 2)
        # once the other's leases lapse, their items are mine to do again
        later = utcnow() + timedelta(days=30)
        assert lv.queue_state(s, user_id=me, project_id=pid, now=later) == lv.QueueState(2, 3, 0)
