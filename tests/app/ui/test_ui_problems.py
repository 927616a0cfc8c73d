"""Problems with gold final answers in the UI (AppTest, SQLite): the Write page shows a
prompt's answer inertly and adds a labeler's problem with its answer; the admin projects page
sets the project's answer pattern."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from app.ui.render import inert_markdown, inline
from labeling import projects
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Project, Prompt, Task, TaskKind
from labeling.tasks import add_prompt, add_write_task

HOSTILE = "<img src=x onerror=alert(1)> [x](javascript:alert(1))"


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


@pytest.fixture
def people(Session) -> dict[str, int]:  # noqa: N803
    with Session.begin() as s:
        return {
            role: users.add_user(s, name=role, role=role, password="long-password").id
            for role in ("admin", "labeler")
        }


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page(module: str, user_id: int) -> AppTest:
    at = AppTest.from_string(
        f"from app.ui.pages import {module}\n{module}.render()\n", default_timeout=30
    )
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=user_id)
    return run(at)


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return run(at)


def messages(at: AppTest) -> list[str]:
    return [m.value for m in (*at.success, *at.error, *at.warning)]


def math_project(Session, answer: str | None = HOSTILE) -> int:  # noqa: N803
    with Session.begin() as s:
        project = projects.create_project(s, name="math", kind="sft")
        prompt = add_prompt(s, project, "What is 2+2?")
        prompt.answer = answer
        add_write_task(s, project, prompt)
        return project.id


def shown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_write_page_shows_the_gold_answer_inertly(Session, people):  # noqa: N803
    math_project(Session)
    at = page("write", people["labeler"])
    lines = [m for m in shown(at) if "Final answer to reach" in m]
    assert lines and inline(HOSTILE) in lines[0]
    assert all("<img" not in m and HOSTILE not in m and "javascript:" not in m for m in shown(at))


def test_write_page_without_an_answer_shows_none(Session, people):  # noqa: N803
    math_project(Session, answer=None)
    at = page("write", people["labeler"])
    assert not [m for m in shown(at) if "Final answer to reach" in m]


def test_a_labeler_adds_a_problem_with_its_answer(Session, people):  # noqa: N803
    pid = math_project(Session)
    at = page("write", people["labeler"])
    at.text_area(key="write-problem-text").input("What is 6 times 7?")
    at.text_input(key="write-problem-answer").input("42")
    click(at, "write-problem-add")
    assert any("Problem added with its final answer" in m for m in messages(at)), messages(at)
    assert at.text_area(key="write-problem-text").value == ""  # a fresh form
    with Session() as s:
        prompt = s.scalar(select(Prompt).where(Prompt.answer == "42"))
        assert prompt.messages == [{"role": "user", "content": "What is 6 times 7?"}]
        assert prompt.project_id == pid and prompt.source == "write page"
        assert s.scalar(select(Task.kind).where(Task.prompt_id == prompt.id)) == TaskKind.write

    # the same problem with another answer: refused, the typed text kept, nothing changed
    at.text_area(key="write-problem-text").input("What is 6 times 7?")
    at.text_input(key="write-problem-answer").input("41")
    click(at, "write-problem-add")
    assert any("already has the final answer '42'" in e.value for e in at.error), messages(at)
    assert at.text_area(key="write-problem-text").value == "What is 6 times 7?"
    at.text_area(key="write-problem-text").input("   ")
    click(at, "write-problem-add")
    assert any("write the problem first" in e.value for e in at.error)
    with Session() as s:
        assert s.scalar(select(Prompt.answer).where(Prompt.answer == "41")) is None


def test_admin_sets_the_answer_pattern(Session, people):  # noqa: N803
    pid = math_project(Session)
    at = page("admin_projects", people["admin"])
    key = f"project-{pid}-answer_pattern"
    at.text_input(key=key).input("Answer: (")
    click(at, f"project-{pid}-save")
    assert any("not a regular expression" in e.value for e in at.error), messages(at)
    assert at.text_input(key=key).value == "Answer: ("  # kept as typed
    at.text_input(key=key).input(r"Answer: (\S+)")
    click(at, f"project-{pid}-save")
    assert inert_markdown("Saved math: answer_pattern.") in messages(at), messages(at)
    with Session() as s:
        assert s.scalar(select(Project.answer_pattern)) == r"Answer: (\S+)"
    at.text_input(key=key).input("")
    click(at, f"project-{pid}-save")
    with Session() as s:
        assert s.scalar(select(Project.answer_pattern)) is None
