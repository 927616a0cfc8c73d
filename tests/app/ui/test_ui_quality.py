"""The Label quality page through Streamlit's AppTest on a migrated SQLite database: who may
open it, the labeler table with its flags, the charts, and the sentences for the rest."""

from __future__ import annotations

import random

import pytest
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from labeling import projects
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Preference
from labeling.tasks import add_compare_task, add_prompt, add_response

HOSTILE = "lefty@example.com"  # GFM Markdown would make it a mailto: link


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def page(user_id: int | None) -> AppTest:
    at = AppTest.from_string("from app.ui.pages import quality\nquality.render()\n",
                             default_timeout=30)  # fmt: skip
    if user_id is not None:
        with app.ui.db.transaction() as s:
            at.session_state[state.TOKEN] = web_sessions.start(s, user_id=user_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def seed(Session) -> dict[str, int]:  # noqa: N803
    """'pairs': 40 items labeled by two careful labelers and one who always takes the left
    answer (named with markup characters); 'notes': an sft project."""
    rng = random.Random(1)
    with Session.begin() as s:
        people = {r: users.add_user(s, name=r, role=r, password="long-password").id
                  for r in ("admin", "engineer", "labeler")}  # fmt: skip
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=3)
        labelers = [users.add_user(s, name=n, role="labeler", password=None).id
                    for n in ("ann", "bea", HOSTILE)]  # fmt: skip
        for i in range(40):
            prompt = add_prompt(s, p, f"q{i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            task = add_compare_task(s, p, prompt, a, b)
            truth = rng.choice("ab")
            for k, user_id in enumerate(labelers):
                swap = rng.random() < 0.5
                choice = ("b" if swap else "a") if k == 2 else truth
                s.add(Preference(task_id=task.id, user_id=user_id, choice=choice,
                                 left_response_id=b.id if swap else a.id, time_spent_ms=8_000))  # fmt: skip
        projects.create_project(s, name="notes", kind="sft")
    return people


def test_quality_page_shows_who_to_trust(Session):  # noqa: N803
    people = seed(Session)
    assert [e.value for e in page(people["labeler"]).error] == [
        "You do not have access to this page."
    ]
    at = page(people["engineer"])
    assert [t.value for t in at.title] == ["Label quality"]
    picker = at.selectbox(key=state.ADMIN_PROJECT_ID)
    assert "notes" in picker.format_func(picker.value)  # the first by name: an sft project
    assert any("'notes' is an sft project" in i.value for i in at.info)
    assert not at.dataframe

    pairs = next(o for o in picker.options if "pairs" in o)
    picker.select_index(picker.options.index(pairs)).run()
    assert not at.exception, [e.value for e in at.exception]
    frames = [d.value for d in at.dataframe]
    labelers = next(f for f in frames if "flags" in f)
    rows = {r["name"]: r for r in labelers.to_dict("records")}
    assert set(rows) == {"ann", "bea", HOSTILE}
    assert "position_bias" in rows[HOSTILE]["flags"] and not rows["ann"]["position_bias"]
    assert list(labelers["name"])[0] == HOSTILE  # flagged labelers first
    agreement = next(f for f in frames if "statistic" in f)
    assert "Fleiss' kappa" in set(agreement["statistic"])
    charts = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert len(charts) == 2  # agreement with intervals, left-win rate per labeler
    assert "left wins (95% interval)" in charts[1]
    # the name never reaches Markdown: no markdown element carries it
    assert not [m.value for m in at.markdown if "lefty" in m.value]


def test_quality_page_without_projects(Session):  # noqa: N803
    with Session.begin() as s:
        admin = users.add_user(s, name="admin", role="admin", password="long-password").id
    at = page(admin)
    assert [i.value for i in at.info] == ["No projects yet: create one on the Projects page."]


def test_review_queue_and_pause_act_and_are_recorded(Session):  # noqa: N803
    from sqlalchemy import select

    from labeling.models import LabelReview, User

    people = seed(Session)
    at = page(people["engineer"])
    picker = at.selectbox(key=state.ADMIN_PROJECT_ID)
    picker.select_index(next(i for i, o in enumerate(picker.options) if "pairs" in o)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Review queue" in [h.value for h in at.subheader]
    titles = [e.label for e in at.expander]
    # the always-left labeler is flagged: their labels are in the queue, named inertly
    assert titles and all("flagged" in t or "consensus" in t for t in titles), titles
    assert any("lefty" in t for t in titles)
    with Session() as s:
        lefty = s.scalar(select(User.id).where(User.name == HOSTILE))
        theirs = set(s.scalars(select(Preference.id).where(Preference.user_id == lefty)))
    reject = next(b for b in at.button if b.key and b.key.endswith("-reject"))
    label_id = int(reject.key.split("-")[2])
    reject.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"#{label_id}" in s.value and "rejected" in s.value for s in at.success), [
        e.value for e in (*at.error, *at.success)
    ]
    with Session() as s:
        review = s.scalars(select(LabelReview)).one()
    assert (review.preference_id, review.action.value) == (label_id, "reject")
    assert review.reviewer_id == people["engineer"]
    assert f"review-preference-{label_id}-reject" not in [b.key for b in at.button]  # reviewed
    assert label_id in theirs  # the most suspicious label first: one of the flagged labeler's

    # relabel without a judgment is refused on the page, and nothing is written
    relabel = next(b for b in at.button if b.key and b.key.endswith("-relabel"))
    relabel.click().run()
    assert any("Pick your judgment" in w.value for w in at.warning)
    with Session() as s:
        assert len(s.scalars(select(LabelReview)).all()) == 1

    # pausing: the flagged labeler is first in the list
    assert at.selectbox(key="quality-pause-name").value == HOSTILE
    next(b for b in at.button if b.label == "Pause").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("is paused" in s.value for s in at.success)
    with Session() as s:
        assert s.scalar(select(User.paused_at).where(User.id == lefty)) is not None
    next(b for b in at.button if b.label == "Unpause").click().run()
    with Session() as s:
        assert s.scalar(select(User.paused_at).where(User.id == lefty)) is None
