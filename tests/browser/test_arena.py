"""The arena in a real Chromium: labelers judge checkpoints' answers blind (no model name
anywhere in the page), their votes reach the leaderboard page, which every role can open."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from labeling import arena, projects
from labeling.models import AuthorKind, Checkpoint, CheckpointKind, Preference, Task
from labeling.tasks import add_prompt, add_response
from tests.browser.conftest import LABELER, login, main_area, open_page, shot, wait_idle
from tests.browser.pages import ANSWER_A, ANSWER_B, choose_project, judge, unfocus

pytestmark = pytest.mark.browser

ARENA = "a-browser-arena"
# Distinctive names: if any reached the page, the test would find them.
MODELS = ("zebra-sft-run7", "quokka-dpo-run9")


def arena_project(n: int):
    def seed(s):
        project = projects.create_project(s, name=ARENA, kind="arena")
        ids = []
        for name in MODELS:
            ck = Checkpoint(kind=CheckpointKind.policy, name=name, path=f"checkpoints/{name}")
            s.add(ck)
            s.flush()
            ids.append(ck.id)
        for i in range(n):
            prompt = add_prompt(s, project, f"Arena question {i}?", category="chat")
            for model, cid in zip(("first", "second"), ids, strict=True):
                add_response(
                    s, prompt, f"The {model} contestant answers question {i}.",
                    author_kind=AuthorKind.checkpoint, checkpoint_id=cid,
                    sampling_params={"temperature": 0.7, "model": MODELS[ids.index(cid)]},
                )  # fmt: skip
        arena.schedule(s, project)

    return seed


def page_text(page) -> str:
    return page.evaluate("() => document.documentElement.outerHTML")


def test_arena_is_blind_and_votes_reach_the_leaderboard(serve, new_page):
    server = serve(extra=arena_project(3))
    page = new_page()
    login(page, server, *LABELER)
    open_page(page, "Compare")
    choose_project(page, ARENA)
    unfocus(page)
    page.locator(ANSWER_A).first.wait_for()
    html = page_text(page)
    for name in MODELS:
        assert name not in html  # not in the text, not in an attribute, not in a tooltip
    assert "checkpoint" not in main_area(page).inner_text().lower()
    shot(page, "arena-task")

    # Vote for the "second" contestant each time, whichever side it is on.
    for _ in range(3):
        left = page.locator(ANSWER_A).first.inner_text()
        assert page.locator(ANSWER_B).count() == 1
        judge(page, "a" if "second" in left else "b")
    with server.Session() as s:
        votes = s.scalars(select(Preference).join(Task, Task.id == Preference.task_id)).all()
        assert len(votes) == 3

    open_page(page, "Leaderboard")
    main = main_area(page)
    main.get_by_text("Leaderboard").first.wait_for()
    wait_idle(page)
    table = main.locator('[data-testid="stDataFrame"]').first
    table.wait_for()
    shot(page, "leaderboard")
    # The leaderboard names the models (it is the results page, open to every role), and
    # the one everyone voted for is ranked first.
    html = page_text(page)
    assert MODELS[1] in html and MODELS[0] in html
    cells = table.text_content()  # the grid draws on a canvas; its accessible copy is hidden
    assert cells.index(MODELS[1]) < cells.index(MODELS[0])
