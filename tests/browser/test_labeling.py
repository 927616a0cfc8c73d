"""What a labeler does, in a real Chromium against `rlhf serve`: compare with the keyboard,
write with autosave across a reload, double submits, two labelers at once, hostile text.

The page contract (app/ui/pages/compare.py, write.py):
  Compare: answers in `.st-key-answer-a` / `.st-key-answer-b`; keys a / b / t / x choose,
  1 / 2 / 3 strength, Enter submits, s skips; an empty queue says
  "Nothing left to label in this project."
  Write: the editor in `.st-key-answer-editor` autosaves while typing (~0.7 s debounce);
  Ctrl+Enter submits.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from labeling import projects
from labeling.models import (
    Choice,
    Demonstration,
    Draft,
    Preference,
    Project,
    Response,
    Task,
    User,
)
from labeling.tasks import add_compare_task, add_prompt, add_response, add_write_task
from tests.browser.conftest import (
    LABELER,
    LABELER2,
    goto,
    is_logged_in,
    login,
    main_area,
    no_exception,
    open_page,
    shot,
    wait_idle,
)
from tests.browser.pages import (
    ANSWER_A,
    ANSWER_B,
    EMPTY,
    HELD_BY_OTHERS,
    choose_project,
    judge,
    left_text,
    press,
    unfocus,
    wait_next_task,
)

pytestmark = pytest.mark.browser

EDITOR = ".st-key-answer-editor textarea"
# Names sort before the demo projects, so the page picks them without a project switch.
PAIRWISE = "a-browser-pairs"
WRITING = "a-browser-writing"

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    "![pixel](http://example.invalid/p.png)",
]


# --- seeding ------------------------------------------------------------------------------


def pairwise_project(n: int, *, overlap: int = 1, name: str = PAIRWISE):
    """A seed function: a pairwise project with n compare tasks, distinct answers each."""

    def seed(s):
        project = projects.create_project(s, name=name, kind="pairwise", overlap=overlap)
        for i in range(n):
            prompt = add_prompt(s, project, f"Browser question number {i}?")
            a = add_response(s, prompt, f"First answer to question {i}: alpha {i}.")
            b = add_response(s, prompt, f"Second answer to question {i}: beta {i}.")
            add_compare_task(s, project, prompt, a, b)

    return seed


def writing_project(n: int, *, name: str = WRITING):
    def seed(s):
        project = projects.create_project(s, name=name, kind="sft", overlap=1)
        for i in range(n):
            add_write_task(s, project, add_prompt(s, project, f"Write something about topic {i}."))

    return seed


def user_id(server, name: str) -> int:
    with server.Session() as s:
        return s.scalar(select(User.id).where(User.name == name))


def project_id(server, name: str) -> int:
    with server.Session() as s:
        return s.scalar(select(Project.id).where(Project.name == name))


# --- driving the pages --------------------------------------------------------------------


def open_compare(page, name: str = PAIRWISE) -> None:
    open_page(page, "Compare")
    choose_project(page, name)
    unfocus(page)


def open_write(page, name: str = WRITING) -> None:
    open_page(page, "Write")
    choose_project(page, name)


def is_empty(page) -> bool:
    """Nothing left for this labeler: done, or the rest is leased to the other one."""
    main = main_area(page)
    return main.get_by_text(EMPTY).count() + main.get_by_text(HELD_BY_OTHERS).count() > 0


def editor_shows(page, value: str | None = None, *, not_value: str | None = None) -> str:
    """Until exactly one answer editor is on screen (the old one of a finished task lingers
    while the page reruns) and it holds `value` (or anything but `not_value`); then idle."""
    deadline = time.monotonic() + 15
    values: list[str] = []
    while time.monotonic() < deadline:
        values = page.locator(EDITOR).evaluate_all("els => els.map(e => e.value)")
        if len(values) == 1 and (
            values[0] == value if value is not None else values[0] != not_value
        ):
            wait_idle(page)
            return values[0]
        page.wait_for_timeout(50)
    raise AssertionError(f"the answer editor shows {values!r}, expected {value!r}")


def prefs(server, *, project: str = PAIRWISE) -> list[Preference]:
    with server.Session() as s:
        return list(
            s.scalars(
                select(Preference)
                .join(Task, Task.id == Preference.task_id)
                .join(Project, Project.id == Task.project_id)
                .where(Project.name == project)
            )
        )


def assert_overlap_respected(server, project: str) -> None:
    with server.Session() as s:
        rows = s.execute(
            select(Task.id, Task.overlap, func.count(Preference.id), Task.labels_count)
            .join(Project, Project.id == Task.project_id)
            .outerjoin(Preference, Preference.task_id == Task.id)
            .where(Project.name == project)
            .group_by(Task.id)
        ).all()
        dupes = s.execute(
            select(Preference.task_id, Preference.user_id, func.count())
            .group_by(Preference.task_id, Preference.user_id)
            .having(func.count() > 1)
        ).all()
    assert rows
    over = [(t, overlap, n) for t, overlap, n, _ in rows if n > overlap]
    assert over == [], f"tasks with more labels than their overlap: {over}"
    assert all(n == count for _, _, n, count in rows), "labels_count out of step"
    assert dupes == []


# --- compare ------------------------------------------------------------------------------


def test_label_ten_comparisons_with_the_keyboard_only(serve, page):
    server = serve(extra=pairwise_project(10))
    login(page, server, *LABELER)
    open_compare(page)
    shot(page, "first-task")
    # (choice key, strength key, the choice on screen)
    plan = [
        ("a", "1", "a"), ("b", "3", "b"), ("t", None, "tie"), ("x", None, "both_bad"),
        ("a", None, "a"), ("b", "2", "b"), ("a", "3", "a"), ("t", None, "tie"),
        ("b", "1", "b"), ("a", "2", "a"),
    ]  # fmt: skip
    seen_left = []
    for i, (key, strength, _) in enumerate(plan):
        assert not is_empty(page), f"queue ran out after {i} tasks"
        seen_left.append(judge(page, key, strength))
        if i == 0:
            shot(page, "second-task")
    page.get_by_text(EMPTY).wait_for()
    shot(page, "empty")
    assert len(set(seen_left)) == 10, "a task came back twice"

    rows = prefs(server)
    assert len(rows) == 10
    labeler = user_id(server, "labeler")
    assert {r.user_id for r in rows} == {labeler}
    assert len({r.task_id for r in rows}) == 10
    # What was on the left is recorded; a choice of "a" on screen means the left answer won.
    with server.Session() as s:
        left_texts = {r.id: s.get(Response, r.left_response_id).text for r in rows}
        by_left = {left_texts[r.id]: r for r in rows}
        for (_key, strength, screen), left in zip(plan, seen_left, strict=True):
            row = by_left[left.strip()] if left.strip() in by_left else None
            assert row is not None, f"no preference whose left answer is {left!r}"
            task = s.get(Task, row.task_id)
            if screen in ("a", "b"):
                winner = (
                    row.left_response_id
                    if screen == "a"
                    else (
                        task.response_b_id
                        if row.left_response_id == task.response_a_id
                        else task.response_a_id
                    )
                )
                chosen = task.response_a_id if row.choice == Choice.a else task.response_b_id
                assert chosen == winner, (screen, row.choice)
                assert row.strength == int(strength or 2)
            else:
                assert row.choice.value == screen
                assert row.strength is None
    assert page.watch.dialogs == []


def test_double_submit_writes_one_row(serve, page):
    server = serve(extra=pairwise_project(4))
    login(page, server, *LABELER)
    open_compare(page)

    # two Enter presses in a row
    before = left_text(page)
    press(page, "a")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    wait_next_task(page, before)
    wait_idle(page, settle_ms=600)
    assert len(prefs(server)) == 1

    # a double click on the Submit button
    before = left_text(page)
    press(page, "b")
    page.locator(".st-key-submit button").dblclick()
    wait_next_task(page, before)
    wait_idle(page, settle_ms=600)
    shot(page, "after-double-click")
    rows = prefs(server)
    assert len(rows) == 2
    assert len({r.task_id for r in rows}) == 2
    assert len({r.idempotency_key for r in rows}) == 2


def test_two_labelers_never_exceed_the_overlap(serve, new_page):
    n = 8
    server = serve(extra=pairwise_project(n, overlap=1))
    one, two = new_page(), new_page()
    login(one, server, *LABELER)
    login(two, server, *LABELER2)
    open_compare(one)
    open_compare(two)
    # Each holds its own lease: never the same task on both screens.
    assert left_text(one) != left_text(two)
    shot(one, "labeler")
    shot(two, "labeler2")
    done = {one: 0, two: 0}
    for _ in range(n + 2):  # alternate until both queues are empty
        for page in (one, two):
            if not is_empty(page):
                judge(page, "a")
                done[page] += 1
        if is_empty(one) and is_empty(two):
            break
    assert is_empty(one) and is_empty(two)
    assert done[one] + done[two] == n
    assert done[one] > 0 and done[two] > 0
    assert len(prefs(server)) == n
    assert_overlap_respected(server, PAIRWISE)


# --- write --------------------------------------------------------------------------------


def test_write_draft_survives_a_reload_then_submits_once(serve, page):
    server = serve(extra=writing_project(2))
    login(page, server, *LABELER)
    open_write(page)
    editor = page.locator(EDITOR)
    editor.click()
    first_half = "Photosynthesis is how plants make food from light,"
    page.keyboard.type(first_half, delay=10)
    page.wait_for_timeout(1200)  # past the autosave debounce
    wait_idle(page)
    shot(page, "typed")
    labeler = user_id(server, "labeler")
    with server.Session() as s:
        drafts = [d.payload for d in s.scalars(select(Draft).where(Draft.user_id == labeler))]
    assert drafts == [{"text": first_half}]

    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"]')
    wait_idle(page)
    if not is_logged_in(page):  # the session did not survive the reload: log in again
        login(page, server, *LABELER)
        open_write(page)
    choose_project(page, WRITING)
    editor = page.locator(EDITOR)
    editor.wait_for()
    editor_shows(page, first_half)
    shot(page, "restored")

    editor.click()
    page.keyboard.press("End")
    rest = " water and air."
    page.keyboard.type(rest, delay=10)
    page.keyboard.press("Control+Enter")
    editor_shows(page, not_value=first_half + rest)
    wait_idle(page, settle_ms=600)
    no_exception(page)
    shot(page, "submitted")
    with server.Session() as s:
        demos = s.scalars(select(Demonstration).where(Demonstration.user_id == labeler)).all()
        assert [d.response.text for d in demos] == [first_half + rest]
    # the next task's editor starts empty
    assert editor_shows(page, "") == ""


def test_write_double_submit_writes_one_row(serve, page):
    server = serve(extra=writing_project(3))
    login(page, server, *LABELER)
    open_write(page)
    page.locator(EDITOR).click()
    page.keyboard.type("A short answer.", delay=5)
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")
    editor_shows(page, "")
    wait_idle(page, settle_ms=600)
    page.locator(EDITOR).click()
    page.keyboard.type("Another answer.", delay=5)
    page.wait_for_timeout(900)
    wait_idle(page)
    page.locator(".st-key-submit button").dblclick()
    editor_shows(page, "")
    wait_idle(page, settle_ms=600)
    shot(page, "after")
    with server.Session() as s:
        texts = sorted(
            d.response.text
            for d in s.scalars(
                select(Demonstration).where(Demonstration.user_id == user_id(server, "labeler"))
            )
        )
    assert texts == ["A short answer.", "Another answer."]


# --- hostile text -------------------------------------------------------------------------


def hostile_projects(s) -> None:
    p = projects.create_project(s, name=PAIRWISE, kind="pairwise", overlap=1)
    prompt = add_prompt(s, p, "Hostile prompt: " + " ".join(HOSTILE))
    a = add_response(s, prompt, "\n\n".join(HOSTILE))
    b = add_response(s, prompt, "Plain: " + " | ".join(reversed(HOSTILE)))
    add_compare_task(s, p, prompt, a, b)
    w = projects.create_project(s, name=WRITING, kind="sft", overlap=1)
    add_write_task(s, w, add_prompt(s, w, "Write about: " + " ".join(HOSTILE)))


def assert_inert(page, server, where: str) -> None:
    main = main_area(page)
    assert main.locator("script").count() == 0, where
    assert main.locator("[data-testid='stMainBlockContainer'] img").count() == 0, where
    links = main.locator("a[href^='javascript'], a[href*='example.invalid']")
    assert links.count() == 0, (
        f"{where}: untrusted text became links: "
        f"{links.evaluate_all('els => els.map(e => e.outerHTML)')}"
    )
    assert page.watch.dialogs == [], where
    foreign = page.watch.foreign_requests(server.allowed_origins)
    assert foreign == [], f"{where}: requests left for other hosts: {foreign}"


def test_hostile_text_in_a_comparison_is_shown_as_text(serve, page):
    server = serve(extra=hostile_projects)
    login(page, server, *LABELER)
    open_compare(page)
    page.locator(ANSWER_A).first.wait_for()
    page.wait_for_timeout(500)  # give any injected handler a chance to fire
    shot(page, "compare")
    text = main_area(page).inner_text()
    for payload in HOSTILE:
        assert payload in text, f"{payload!r} (in the prompt) is not shown as text"
    both = page.locator(ANSWER_A).inner_text() + page.locator(ANSWER_B).inner_text()
    for payload in HOSTILE:
        assert payload in both, f"{payload!r} (in an answer) is not shown as text"
    assert_inert(page, server, "compare page")
    judge(page, "a")
    assert len(prefs(server)) == 1
    assert_inert(page, server, "compare page after submit")


def test_hostile_text_in_writing_is_shown_as_text(serve, page):
    server = serve(extra=hostile_projects)
    login(page, server, *LABELER)
    open_write(page)
    answer = " ".join(HOSTILE)
    page.locator(EDITOR).click()
    page.keyboard.type(answer, delay=2)
    page.wait_for_timeout(1200)  # past the autosave debounce
    wait_idle(page)
    goto(page, server, "write")  # the draft comes back inert, as the editor's value
    if not is_logged_in(page):
        login(page, server, *LABELER)
        open_write(page)
    editor_shows(page, answer)
    page.wait_for_timeout(500)
    shot(page, "write")
    text = main_area(page).inner_text()
    for payload in HOSTILE:
        assert payload in text, f"{payload!r} (in the prompt) is not shown as text"
    assert_inert(page, server, "write page")
    page.locator(EDITOR).click()
    page.keyboard.press("Control+Enter")
    deadline = time.monotonic() + 15  # the queue may now be empty: wait on the database
    while time.monotonic() < deadline:
        with server.Session() as s:
            texts = [d.response.text for d in s.scalars(select(Demonstration))]
        if texts:
            break
        page.wait_for_timeout(100)
    wait_idle(page)
    assert texts == [answer]
    assert_inert(page, server, "write page after submit")


def test_after_picking_a_project_a_then_enter_labels(serve, page):
    """The selectbox keeps the focus after a pick: "a" must choose, not type into it."""
    other = "b-browser-pairs"

    def seed(s):
        pairwise_project(2)(s)
        pairwise_project(2, name=other)(s)

    server = serve(extra=seed)
    login(page, server, *LABELER)
    open_page(page, "Compare")
    choose_project(page, other)  # no unfocus(): the labeler goes straight on with the keys
    page.locator(ANSWER_A).first.wait_for()
    before = left_text(page)
    press(page, "a")
    page.keyboard.press("Enter")
    wait_next_task(page, before)
    shot(page, "after-project-change")
    rows = prefs(server, project=other)
    assert len(rows) == 1 and rows[0].choice in (Choice.a, Choice.b)
    assert prefs(server) == []  # nothing went to the first project
    box = main_area(page).locator('[data-testid="stSelectbox"]').filter(has_text="Project")
    picker = box.first.locator("input").first  # the picked name is in its accessible label
    shown = f"{box.first.inner_text()} {picker.input_value()} {picker.get_attribute('aria-label')}"
    assert other in shown and "a" != picker.input_value(), shown  # nothing typed into it
