"""Compare two answers: the labeler's main screen. Keyboard: A / B / T / X to choose,
1 / 2 / 3 for strength, Enter to submit, S to skip, U to undo the last submit (for a minute:
the same task comes back with the choice, strength and rationale given, to correct)."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, state, undo_offer, widgets
from app.ui import render as show
from app.ui.actions import flash, show_flash
from labeling import labeler_views as lv

CHOICES = [  # (screen choice, label, shortcut)
    ("a", "A is better", "a"),
    ("b", "B is better", "b"),
    ("tie", "Tie", "t"),
    ("both_bad", "Both bad", "x"),
]
STRENGTH_KEYS = {1: "1", 2: "2", 3: "3"}
ANSWER_HEIGHT = 420  # the most an answer box takes before it scrolls
MIN_ANSWER_HEIGHT = 90
CHARS_PER_LINE = 60  # a half-width column at the default font, roughly
LINE_PX = 26


def answer_height(*texts: str) -> int:
    """One height for both boxes (they line up), sized to the longer answer: a one-line answer
    gets a small box, a long one scrolls inside ANSWER_HEIGHT."""
    lines = max(
        sum(max(1, -(-len(line) // CHARS_PER_LINE)) for line in text.splitlines() or [""])
        for text in texts
    )
    return max(MIN_ANSWER_HEIGHT, min(ANSWER_HEIGHT, lines * LINE_PX + 40))


def _choose(choice: str) -> None:
    st.session_state[state.CHOICE] = choice


def _strength(value: int) -> None:
    st.session_state[state.STRENGTH] = value


def _submit(user_id: int, project_id: int, assignment_id: int, task_id: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) != assignment_id:
        return  # a stale click from a task no longer on screen
    choice = st.session_state.get(state.CHOICE)
    if choice is None:
        flash("warning", "Pick A, B, Tie or Both bad first.")
        return
    outcome = widgets.advance(
        user_id,
        project_id,
        lv.submit_compare,
        assignment_id=assignment_id,
        screen_choice=choice,
        strength=st.session_state.get(state.STRENGTH, 2) if choice in ("a", "b") else None,
        rationale=(st.session_state.get(f"rationale-{assignment_id}") or "").strip() or None,
        time_spent_ms=widgets.time_spent_ms(),
        idempotency_key=st.session_state.get(state.SUBMIT_KEY),
    )
    undo_offer.offer(project_id, task_id, outcome)


def _prefill(result) -> None:
    """After an undo: the judgment that was taken back, on screen again to correct."""
    previous = result.previous
    st.session_state[state.CHOICE] = previous["screen_choice"]
    st.session_state[state.STRENGTH] = previous.get("strength") or 2
    st.session_state[f"rationale-{result.assignment_id}"] = previous.get("rationale") or ""


def render() -> None:
    user = auth.require_action("label")
    project = widgets.pick_project("compare", lv.COMPARE_KINDS)
    if project is None:
        st.info("There are no comparison projects yet.")
        return
    show_flash()
    undo_offer.undo_button(user.id, project.id, shortcut="u", prefill=_prefill)
    view = widgets.current_task(user, project.id)
    if view is None:
        widgets.empty_queue(user.id, project.id)
        return

    show.chat(view.messages)
    columns = st.columns(2, gap="medium")
    height = answer_height(view.left.text, view.right.text)
    for column, side, answer in ((columns[0], "a", view.left), (columns[1], "b", view.right)):
        with column:
            st.subheader(side.upper(), anchor=False)
            with st.container(key=f"answer-{side}", height=height, border=True):
                show.untrusted(answer.text)
            if answer.truncated:
                st.caption("(cut at the length limit)")

    chosen = st.session_state.get(state.CHOICE)
    with st.container(horizontal=True, key="choices"):
        for value, label, key in CHOICES:
            st.button(
                label,
                key=f"choice-{value}",
                shortcut=key,
                type="primary" if chosen == value else "secondary",
                on_click=_choose,
                args=(value,),
            )
    if chosen in ("a", "b"):
        strength = st.session_state.get(state.STRENGTH, 2)
        with st.container(horizontal=True, key="strengths"):
            st.caption(f"How much better is {chosen.upper()}?")
            for value, label in lv.STRENGTHS.items():
                st.button(
                    label,
                    key=f"strength-{value}",
                    shortcut=STRENGTH_KEYS[value],
                    type="primary" if strength == value else "secondary",
                    on_click=_strength,
                    args=(value,),
                )
    st.text_area(
        "Rationale",
        key=f"rationale-{view.assignment_id}",
        placeholder="Optional: why?",
        height=80,
    )
    st.button(
        "Submit",
        key="submit",
        type="primary",
        shortcut="Enter",
        icon=":material/send:",
        # Never disabled: an Enter pressed right after "a", before the highlight is painted,
        # must not be swallowed by a disabled button (the callback warns if nothing is chosen).
        on_click=_submit,
        args=(user.id, project.id, view.assignment_id, view.task_id),
    )
    widgets.skip_and_flag(user.id, project.id, view.assignment_id)
    widgets.counter(user.id, project.id)
