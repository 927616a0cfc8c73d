"""Undo the last label, and rank with the number keys, in a real Chromium against `rlhf serve`.

The page contract: after a submit an Undo button (`.st-key-undo`, key U on Compare and
Rank) is offered for a minute; it gives the same task back with the answer filled in. Rank:
answers in `.st-key-answer-<n>`; number keys pick best to worst, Backspace takes back the
last pick, Enter submits; the picks so far are spelled out in `.st-key-rank-order`.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from labeling import projects
from labeling.models import (
    Assignment,
    AuthorKind,
    Demonstration,
    Preference,
    Project,
    Prompt,
    Ranking,
    Response,
    Task,
    TaskCandidate,
    User,
)
from labeling.tasks import (
    add_compare_task,
    add_prompt,
    add_rank_task,
    add_response,
    add_write_task,
)
from tests.browser.conftest import LABELER, login, main_area, open_page, shot, wait_idle
from tests.browser.pages import (
    ANSWER_A,
    UNDO,
    WRITE_EDITOR,
    choose_project,
    left_text,
    pick_in_order,
    press,
    rank_order,
    undo_last,
    unfocus,
    wait_editor,
    wait_next_task,
)

pytestmark = pytest.mark.browser

PAIRWISE = "a-undo-pairs"  # sorts before the demo projects: the page opens on it
RANKING = "a-undo-ranking"
WRITING = "a-undo-writing"
RANK_TEXTS = ["Paris is the capital.", "It might be Lyon.", "<b>Marseille</b>, surely."]


def seed_pairs(s) -> None:
    project = projects.create_project(s, name=PAIRWISE, kind="pairwise", overlap=1)
    for i in range(2):
        prompt = add_prompt(s, project, f"Undo question number {i}?")
        a = add_response(s, prompt, f"First answer to undo question {i}: alpha.")
        b = add_response(s, prompt, f"Second answer to undo question {i}: beta.")
        add_compare_task(s, project, prompt, a, b)


def seed_ranking(s) -> None:
    project = projects.create_project(s, name=RANKING, kind="ranking", rank_k=3)
    prompt = add_prompt(s, project, "Which city is the capital of France?")
    add_rank_task(s, project, prompt, [add_response(s, prompt, t) for t in RANK_TEXTS])


def seed_writing(s) -> None:
    project = projects.create_project(s, name=WRITING, kind="sft", overlap=1)
    for i in range(2):
        add_write_task(s, project, add_prompt(s, project, f"Write about undo topic {i}."))


def labeler_id(server) -> int:
    with server.Session() as s:
        return s.scalar(select(User.id).where(User.name == LABELER[0]))


def test_undo_on_compare_gives_the_task_back_and_keeps_only_the_correction(serve, page):
    server = serve(extra=seed_pairs)
    login(page, server, *LABELER)
    open_page(page, "Compare")
    choose_project(page, PAIRWISE)
    unfocus(page)
    page.locator(ANSWER_A).first.wait_for()
    first_left = left_text(page)
    press(page, "a")
    page.keyboard.press("Enter")
    wait_next_task(page, first_left)
    assert left_text(page) != first_left
    shot(page, "after-submit")

    undo_last(page)
    shot(page, "after-undo")
    assert left_text(page) == first_left  # the same task, the same sides
    # The withdrawn choice is on screen again (the chosen button is the primary one).
    chosen = main_area(page).locator(".st-key-choice-a button").first
    assert chosen.get_attribute("data-testid") == "stBaseButton-primary"
    other = main_area(page).locator(".st-key-choice-b button").first
    assert other.get_attribute("data-testid") == "stBaseButton-secondary"

    press(page, "b")
    page.keyboard.press("Enter")
    wait_next_task(page, first_left)

    me = labeler_id(server)
    with server.Session() as s:
        rows = s.execute(
            select(Preference, Assignment.swap_sides)
            .join(Task, Task.id == Preference.task_id)
            .join(Project, Project.id == Task.project_id)
            .join(
                Assignment,
                (Assignment.task_id == Task.id) & (Assignment.user_id == Preference.user_id),
            )
            .where(Project.name == PAIRWISE)
        ).all()
        assert len(rows) == 1, "only the corrected label is stored"
        pref, swapped = rows[0]
        assert pref.user_id == me
        assert pref.choice == ("a" if swapped else "b")  # "B" on screen, mapped to the task
        assert s.get(Task, pref.task_id).labels_count == 1
    assert page.watch.dialogs == []


def test_rank_by_number_keys_backspace_and_undo(serve, page):
    server = serve(extra=seed_ranking)
    login(page, server, *LABELER)
    open_page(page, "Rank")
    choose_project(page, RANKING)
    page.locator(".st-key-answer-3").first.wait_for()
    assert "<b>Marseille</b>" in page.locator(".st-key-answer-3").first.inner_text()  # inert

    pick_in_order(page, ["3", "1"])
    assert "1st: Answer 3 › 2nd: Answer 1" in rank_order(page)
    pick_in_order(page, ["Backspace"])
    assert "1st: Answer 3" in rank_order(page) and "Answer 1" not in rank_order(page)
    page.keyboard.press("Enter")  # one answer short: a warning, nothing stored
    wait_idle(page)
    assert main_area(page).get_by_text("in order first").count() == 1
    pick_in_order(page, ["2", "1"])
    assert "complete" in rank_order(page)
    shot(page, "ordered")
    page.keyboard.press("Enter")
    main_area(page).get_by_text("Nothing left to label in this project.").wait_for()
    wait_idle(page)

    with server.Session() as s:
        task_id = s.scalar(select(Task.id).join(Project).where(Project.name == RANKING))
        ids = list(
            s.scalars(
                select(TaskCandidate.response_id)
                .where(TaskCandidate.task_id == task_id)
                .order_by(TaskCandidate.position)
            )
        )
        (ranking,) = s.scalars(select(Ranking).where(Ranking.task_id == task_id)).all()
        assert ranking.order == [ids[2], ids[1], ids[0]]

    undo_last(page)  # the ranking comes back, its order filled in, to correct
    assert "1st: Answer 3 › 2nd: Answer 2 › 3rd: Answer 1" in rank_order(page)
    pick_in_order(page, ["Backspace", "Backspace", "1", "2"])
    page.keyboard.press("Enter")
    main_area(page).get_by_text("Nothing left to label in this project.").wait_for()
    wait_idle(page)
    with server.Session() as s:
        (ranking,) = s.scalars(select(Ranking).where(Ranking.task_id == task_id)).all()
        assert ranking.order == [ids[2], ids[0], ids[1]]


def test_undo_on_write_brings_the_text_back_to_correct(serve, page):
    server = serve(extra=seed_writing)
    login(page, server, *LABELER)
    open_page(page, "Write")
    choose_project(page, WRITING)
    first_prompt = "Write about undo topic 0."
    main_area(page).get_by_text(first_prompt).wait_for()
    page.locator(WRITE_EDITOR).click()
    page.keyboard.type("Frist draft.", delay=5)
    page.keyboard.press("Control+Enter")
    wait_editor(page, "")  # the next task's empty editor

    page.locator(f"{UNDO} button").first.click()  # Write has no key for it: typing goes first
    wait_editor(page, "Frist draft.")
    assert main_area(page).get_by_text(first_prompt).count() == 1
    shot(page, "after-undo")
    page.locator(WRITE_EDITOR).click()
    page.keyboard.press("Control+A")
    page.keyboard.type("First draft, corrected.", delay=5)
    page.keyboard.press("Control+Enter")
    wait_editor(page, "")

    with server.Session() as s:
        texts = s.scalars(
            select(Response.text)
            .join(Demonstration, Demonstration.response_id == Response.id)
            .join(Task, Task.id == Demonstration.task_id)
            .join(Project, Project.id == Task.project_id)
            .where(Project.name == WRITING)
        ).all()
        assert texts == ["First draft, corrected."]
        written = s.scalars(  # the withdrawn text is not left behind as an answer either
            select(Response.text)
            .join(Prompt, Prompt.id == Response.prompt_id)
            .join(Project, Project.id == Prompt.project_id)
            .where(Project.name == WRITING, Response.author_kind == AuthorKind.labeler)
        ).all()
        assert written == ["First draft, corrected."]
