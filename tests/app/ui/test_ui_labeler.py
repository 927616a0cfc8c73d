"""The labeler pages in Streamlit's AppTest, against a migrated SQLite database."""

from __future__ import annotations

import json

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from app.ui import state
from app.ui.render import inert_markdown
from labeling import demo, projects, queue
from labeling.accounts import web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Draft,
    Flag,
    Preference,
    Ranking,
    Response,
    Task,
    User,
)
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))"]


@pytest.fixture
def db(sqlite_url):
    st.cache_resource.clear()  # the UI's engine is process-wide: point it at this test's DB
    engine = make_engine(sqlite_url)
    Session = make_sessionmaker(engine)  # noqa: N806
    with Session.begin() as s:
        demo.seed(s)
    yield Session
    st.cache_resource.clear()
    engine.dispose()


def user_id(Session, name: str = "labeler") -> int:  # noqa: N803
    with Session() as s:
        return s.scalar(select(User.id).where(User.name == name))


def page(name: str, uid: int | None) -> AppTest:
    at = AppTest.from_string(
        f"from app.ui.pages import {name}\n{name}.render()\n", default_timeout=30
    )
    if uid is not None:
        at.session_state[state.TOKEN] = login_token(uid)
    return at.run()


def login_token(uid: int) -> str:
    """What a login leaves in the session: a token the pages look up on every run."""
    from app.ui.db import transaction

    with transaction() as s:
        return web_sessions.start(s, user_id=uid)


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def held(Session, uid: int) -> Assignment:  # noqa: N803
    with Session() as s:
        return s.scalar(
            select(Assignment).where(
                Assignment.user_id == uid, Assignment.status == AssignmentStatus.active
            )
        )


def test_compare_submit_records_one_task_relative_choice_and_shows_next(db):
    uid = user_id(db)
    at = page("compare", uid)
    assert not at.exception
    lease = held(db, uid)
    with db() as s:
        task = s.get(Task, lease.task_id)
        question = task.prompt.messages[-1]["content"]
        texts = {r.id: r.text for r in s.scalars(select(Response))}
    left = texts[task.response_b_id if lease.swap_sides else task.response_a_id]
    right = texts[task.response_a_id if lease.swap_sides else task.response_b_id]
    shown = markdown(at)
    assert inert_markdown(question) in shown
    assert inert_markdown(left) in shown and inert_markdown(right) in shown
    assert [h.value for h in at.subheader] == ["A", "B"]
    at.button(key="submit").click().run()  # nothing chosen: a warning, nothing written
    assert any("first" in w.value for w in at.warning)
    with db() as s:
        assert s.scalars(select(Preference)).all() == []

    at.button(key="choice-a").click().run()
    assert at.button(key="choice-a").proto.type == "primary"
    assert at.button(key="strength-2").proto.type == "primary"  # "Clearly" by default
    at.button(key="strength-3").click().run()
    at.button(key="submit").click().run()
    assert not at.exception

    with db() as s:
        (pref,) = s.scalars(select(Preference)).all()
        assert pref.task_id == task.id and pref.user_id == uid
        assert pref.choice == ("b" if lease.swap_sides else "a")  # "A" is the left answer
        assert pref.strength == 3 and pref.time_spent_ms is not None
    nxt = held(db, uid)
    assert nxt.task_id != task.id
    with db() as s:
        next_question = s.get(Task, nxt.task_id).prompt.messages[-1]["content"]
    assert inert_markdown(next_question) in markdown(at)
    assert at.button(key="choice-a").proto.type == "secondary"  # a fresh form: nothing chosen
    assert any("1 done today" in c.value for c in at.caption)


def test_compare_skip_flag_and_empty_queue(db):
    uid = user_id(db)
    with db.begin() as s:
        p = projects.create_project(s, name="aaa-small", kind="pairwise")
        for i in range(2):
            prompt = add_prompt(s, p, f"q{i}")
            add_compare_task(
                s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y")
            )
        pid = p.id
    at = page("compare", uid)
    assert at.selectbox(key="project_id:compare").value == pid  # first by name
    first = held(db, uid)
    at.button(key="skip").click().run()
    with db() as s:
        assert s.get(Assignment, first.id).status == AssignmentStatus.skipped
    second = held(db, uid)
    assert second.task_id != first.task_id
    at.radio(key=f"flag-reason-{second.id}").set_value("unsafe")
    at.text_input(key=f"flag-note-{second.id}").input("violent")
    at.button(key="flag-send").click().run()
    with db() as s:
        flag = s.scalar(select(Flag))
        assert (flag.task_id, flag.reason, flag.note) == (second.task_id, "unsafe", "violent")
    assert any("Nothing left to label in this project." in i.value for i in at.info)
    assert any("0 of 2 left" in c.value for c in at.caption)
    # the other project is still there to pick
    at.selectbox(key="project_id:compare").select_index(1).run()
    assert at.button(key="choice-a")


def test_hostile_answers_are_shown_inert(db):
    uid = user_id(db)
    with db.begin() as s:
        p = projects.create_project(s, name="aaa-hostile", kind="pairwise", guidelines=HOSTILE[0])
        prompt = add_prompt(s, p, HOSTILE[2])
        a, b = add_response(s, prompt, HOSTILE[0]), add_response(s, prompt, HOSTILE[1])
        add_compare_task(s, p, prompt, a, b)
    at = page("compare", uid)
    shown = markdown(at)
    for text in HOSTILE:
        assert inert_markdown(text) in shown
        assert text not in shown
    assert all("<script" not in m and "<img" not in m for m in shown)


def _editor(at: AppTest):
    (el,) = [e for e in at.main if type(e).__name__ == "UnknownElement"]
    proto = el.proto
    payload = proto.json or proto.mixed.json
    return el.key, json.loads(payload)


def test_write_autosaves_restores_after_reload_and_submits(db):
    uid = user_id(db)
    at = page("write", uid)
    assert not at.exception
    key, data = _editor(at)
    assert data["text"] == ""
    at.session_state[key] = {"text": "Plants eat sunlight"}  # what the component reports
    at.run()
    lease = held(db, uid)
    with db() as s:
        assert s.scalar(select(Draft.payload).where(Draft.task_id == lease.task_id)) == {
            "text": "Plants eat sunlight"
        }

    fresh = page("write", uid)  # a reload: a new session for the same user
    key2, data2 = _editor(fresh)
    assert data2["text"] == "Plants eat sunlight"
    assert held(db, uid).task_id == lease.task_id
    fresh.session_state[key2] = {"text": "Plants make sugar from light."}
    fresh.button(key="submit").click().run()
    assert not fresh.exception
    with db() as s:
        (d,) = s.scalars(select(Demonstration)).all()
        assert d.task_id == lease.task_id and d.response.text == "Plants make sugar from light."
        assert s.scalar(select(Draft)) is None
    assert held(db, uid).task_id != lease.task_id


def test_write_start_from_model_answer(db):
    uid = user_id(db)
    at = page("write", uid)
    lease = held(db, uid)
    with db.begin() as s:
        task = s.get(Task, lease.task_id)
        add_response(s, task.prompt, "A model's answer **draft**")
    at.run()
    assert inert_markdown("A model's answer **draft**") in markdown(at)
    (use,) = [b for b in at.button if b.label == "Use model answer 1"]
    use.click().run()
    _, data = _editor(at)
    assert data["text"] == "A model's answer **draft**"
    with db() as s:
        assert s.scalar(select(Draft.payload)) == {"text": "A model's answer **draft**"}


def test_rank_validates_and_submits(db):
    uid = user_id(db)
    with db.begin() as s:
        p = projects.create_project(s, name="rank", kind="ranking", rank_k=3)
        prompt = add_prompt(s, p, "Name a colour.")
        rs = [add_response(s, prompt, t) for t in ("red", "green", "blue")]
        add_rank_task(s, p, prompt, rs)
        ids = [r.id for r in rs]
    at = page("rank", uid)
    at.button(key="pick-2").click().run()
    at.button(key="pick-3").click().run()
    assert at.button(key="pick-2").disabled and at.button(key="pick-2").label == "1st best"
    at.button(key="submit").click().run()  # one answer not placed: a warning, nothing written
    assert any("in order first" in w.value for w in at.warning)
    with db() as s:
        assert s.scalars(select(Ranking)).all() == []
    at.button(key="rank-back").click().run()  # takes back answer 3
    at.button(key="pick-1").click().run()
    at.button(key="pick-3").click().run()
    at.button(key="submit").click().run()
    with db() as s:
        assert s.scalar(select(Ranking.order)) == [ids[1], ids[0], ids[2]]
    assert any("Nothing left" in i.value for i in at.info)


def test_progress_shows_my_numbers(db):
    uid = user_id(db)
    at = page("compare", uid)
    for _ in range(2):
        at.button(key="choice-tie").click().run()
        at.button(key="submit").click().run()
    other = page("compare", user_id(db, "labeler2"))
    other.button(key="choice-both_bad").click().run()
    other.button(key="submit").click().run()
    prog = page("progress", uid)
    assert not prog.exception
    metrics = {m.label: m.value for m in prog.metric}
    assert metrics["Done today"] == "2" and metrics["Done in total"] == "2"
    (table,) = prog.dataframe
    rows = table.value.to_dict("records")
    assert [(r["Project"], r["Today"], r["Total"]) for r in rows if r["Total"]] == [
        ("demo-compare", 2, 2)
    ]


def test_labeler_pages_refuse_a_logged_out_session(db):
    for name in ("compare", "write", "rank", "progress"):
        at = page(name, None)
        assert [w.value for w in at.warning] == ["Please log in."]
        assert not at.button and not at.markdown


def test_an_empty_queue_says_when_others_hold_the_rest(db):
    me, others = user_id(db), [user_id(db, "labeler2"), user_id(db, "engineer")]
    with db.begin() as s:
        p = projects.create_project(s, name="aaa-held", kind="pairwise")
        for i in range(3):
            prompt = add_prompt(s, p, f"q{i}")
            add_compare_task(
                s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y")
            )
        for other in others:  # two others are working on two of the three items
            queue.claim_next(s, project_id=p.id, user_id=other)
        pid = p.id
    at = page("compare", me)
    assert any("1 of 3 left" in c.value for c in at.caption)
    assert at.selectbox(key="project_id:compare").value == pid
    at.button(key="choice-a").click().run()
    at.button(key="submit").click().run()
    infos = [i.value for i in at.info]
    assert any("2 items are being labeled by others right now" in v for v in infos), infos
    assert not any("Nothing left" in v for v in infos)


@pytest.mark.parametrize("role_user", ["admin", "engineer"])
def test_staff_opening_compare_or_write_leases_nothing_until_they_act(db, role_user):
    staff = user_id(db, role_user)
    for name in ("compare", "write"):
        at = page(name, staff)
        assert held(db, staff) is None  # looking took nothing from the labelers
        assert any(f"You are an {role_user}" in i.value for i in at.info)
        assert [b.key for b in at.button] == ["start-labeling"]
    at = page("compare", staff)
    at.button(key="start-labeling").click().run()
    lease = held(db, staff)
    assert lease is not None  # acting claims, as for a labeler
    assert at.button(key="choice-a")
    # a fresh page (a reload) shows the item they hold, without asking again
    again = page("compare", staff)
    assert held(db, staff).id == lease.id and again.button(key="choice-a")
    assert not any("You are an" in i.value for i in again.info)
    # a labeler still claims on opening
    labeler = user_id(db)
    page("compare", labeler)
    assert held(db, labeler) is not None


def test_answer_boxes_are_sized_to_the_longer_answer():
    from app.ui.pages.compare import ANSWER_HEIGHT, MIN_ANSWER_HEIGHT, answer_height

    assert answer_height("Yes.", "No.") == MIN_ANSWER_HEIGHT
    five = "\n".join(["a line"] * 5)
    assert MIN_ANSWER_HEIGHT < answer_height("Yes.", five) == answer_height(five, "Yes.")
    assert answer_height("x" * 100_000, "short") == ANSWER_HEIGHT  # scrolls inside the cap
    assert answer_height("x" * 600, "") > answer_height("x" * 60, "")  # wrapped lines count
