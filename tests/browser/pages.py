"""Driving the labeler's pages in the browser: shared by the browser tests (not a test file)."""

from __future__ import annotations

import time

from tests.browser.conftest import main_area, no_exception, wait_idle

ANSWER_A, ANSWER_B = ".st-key-answer-a", ".st-key-answer-b"
EMPTY = "Nothing left to label in this project."
# nothing left for me, but others hold leases on the rest (they may come back)
HELD_BY_OTHERS = "being labeled by others right now"


def choose_project(page, name: str) -> None:
    """Pick `name` in the page's "Project" selectbox (shown only with several projects)."""
    box = main_area(page).locator('[data-testid="stSelectbox"]').filter(has_text="Project")
    if box.count() == 0 or name in box.first.inner_text():
        return
    box.first.locator('[role="combobox"], input').first.click()
    page.locator('[role="option"]').filter(has_text=name).first.click()
    wait_idle(page)
    no_exception(page)


def unfocus(page) -> None:
    """Keyboard shortcuts act when no text box has the focus."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")


def left_text(page) -> str | None:
    box = page.locator(ANSWER_A)
    return box.first.inner_text() if box.count() else None


def wait_next_task(page, before: str | None) -> None:
    """Until the left answer is no longer `before` (or nothing is left for me), then idle."""
    page.wait_for_function(
        """([sel, before, empty, held]) => {
            const text = document.body.innerText;
            if (text.includes(empty) || text.includes(held)) return true;
            const el = document.querySelector(sel);
            return !!el && !el.closest('[data-stale="true"]') && el.innerText !== before;
        }""",
        arg=[ANSWER_A, before, EMPTY, HELD_BY_OTHERS],
        polling=50,
    )
    wait_idle(page)
    no_exception(page)


def press(page, key: str) -> None:
    page.keyboard.press(key)
    wait_idle(page)


def judge(page, choice_key: str, strength_key: str | None = None) -> str:
    """Choose with the keyboard, submit with Enter, wait for the next task. Returns the left
    answer that was judged."""
    page.locator(ANSWER_A).first.wait_for()
    before = left_text(page)
    press(page, choice_key)
    if strength_key:
        press(page, strength_key)
    page.keyboard.press("Enter")
    wait_next_task(page, before)
    return before


# --- undo and rank (app/ui/undo_offer.py, app/ui/pages/rank.py) ---------------------------

UNDO = ".st-key-undo"  # the Undo button, offered for a minute after a submit (key U)
RANK_ORDER = ".st-key-rank-order"  # "Your order ...": the picks so far, best first


def undo_last(page) -> None:
    """Press U once the Undo offer is on screen; wait until it has gone and the page idles."""
    page.locator(UNDO).first.wait_for(state="visible")
    unfocus(page)
    page.keyboard.press("u")
    page.locator(UNDO).first.wait_for(state="detached")
    wait_idle(page)
    no_exception(page)


def rank_order(page) -> str:
    return page.locator(RANK_ORDER).first.inner_text()


def pick_in_order(page, keys: list[str]) -> None:
    """Number keys (and Backspace) on the Rank page, one at a time, idle after each."""
    unfocus(page)
    for key in keys:
        press(page, key)
        no_exception(page)


WRITE_EDITOR = ".st-key-answer-editor textarea"


def wait_editor(page, value: str, timeout_s: float = 15) -> None:
    """Until exactly one answer editor is on screen (a finished task's lingers while the page
    reruns) and it holds `value`; then idle. (Locators reach into the component's shadow
    root, where document.querySelector does not.)"""
    deadline = time.monotonic() + timeout_s
    values: list[str] = []
    while time.monotonic() < deadline:
        values = page.locator(WRITE_EDITOR).evaluate_all("els => els.map(e => e.value)")
        if values == [value]:
            wait_idle(page)
            no_exception(page)
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the answer editor shows {values!r}, expected {value!r}")
