"""The Label quality page's "What to label next" section through Streamlit's AppTest on a
migrated SQLite database: a button re-orders the queue (the service `rlhf queue prioritise`
runs), the top of the queue is shown in the order claims serve it, and a bad choice is one
sentence that writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from labeling import projects
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Task
from labeling.tasks import add_compare_task, add_prompt, add_response

K = "queue-order-"


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def page(user_id: int) -> AppTest:
    at = AppTest.from_string("from app.ui.pages import quality\nquality.render()\n",
                             default_timeout=30)  # fmt: skip
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=user_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def tasks_shown(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Task #")]


def test_reorder_button_and_the_new_top_of_the_queue(Session):  # noqa: N803
    with Session.begin() as s:
        engineer = users.add_user(s, name="eng", role="engineer", password="long-password").id
        p = projects.create_project(s, name="pairs", kind="pairwise")
        for i in range(8):
            prompt = add_prompt(s, p, f"question {i} <b>bold</b>?")
            add_compare_task(s, p, prompt, add_response(s, prompt, f"answer A{i}"),
                             add_response(s, prompt, f"answer B{i}"))  # fmt: skip
    at = page(engineer)
    assert "What to label next" in [h.value for h in at.subheader]
    assert tasks_shown(at)[:2] == ["Task #1 · priority 0", "Task #2 · priority 0"]

    # no labels and the default base's untrained head: one sentence, nothing written
    at.button(key=K + "go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("there are no labeled pairs yet" in e.value for e in at.error)
    with Session.begin() as s:
        assert set(s.scalars(select(Task.priority))) == {0}

    at.selectbox(key=K + "strategy").set_value("random").run()
    at.button(key=K + "go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Re-ordered 8 open tasks by random" in m.value for m in at.success)
    with Session.begin() as s:
        order = list(s.scalars(select(Task.id).order_by(Task.priority.desc(), Task.id)))
    assert order != sorted(order)
    shown = tasks_shown(at)
    assert shown == [f"Task #{t} · priority {8 - i}" for i, t in enumerate(order[:5])]
    text = " ".join(m.value for m in at.markdown)
    assert "<b>" not in text and "answer A" in text  # prompts and answers rendered inertly
