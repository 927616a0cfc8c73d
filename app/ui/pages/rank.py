"""Rank k answers, best first, by picking them in order: press the number of the best answer,
then of the next best, and so on (each answer's button does the same as its key). The order
builds up on screen; Backspace takes back the last pick, Enter submits once every answer has
its place, and U undoes the last submit for a minute (the order comes back to correct).
Answers 1-9 have number keys; a tenth answer and beyond are picked with their buttons."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, state, undo_offer, widgets
from app.ui import render as show
from app.ui.actions import flash, show_flash
from labeling import labeler_views as lv

ANSWER_HEIGHT = 300
KEYED = 9  # answers with a number key


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def picked(assignment_id: int) -> list[int]:
    """The screen positions (0-based) picked so far for this task, best first."""
    held = st.session_state.get(state.RANK_ORDER)
    return list(held[1]) if held and held[0] == assignment_id else []


def _set(assignment_id: int, order: list[int]) -> None:
    st.session_state[state.RANK_ORDER] = (assignment_id, order)


def _pick(assignment_id: int, position: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) != assignment_id:
        return  # a stale key press from a task no longer on screen
    order = picked(assignment_id)
    if position not in order:
        _set(assignment_id, [*order, position])


def _take_back(assignment_id: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) == assignment_id:
        _set(assignment_id, picked(assignment_id)[:-1])


def _clear(assignment_id: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) == assignment_id:
        _set(assignment_id, [])


def _submit(user_id: int, project_id: int, assignment_id: int, task_id: int, k: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) != assignment_id:
        return  # a stale click from a task no longer on screen
    order = picked(assignment_id)
    if sorted(order) != list(range(k)):
        flash("warning", f"Put all {k} answers in order first ({len(order)} placed so far).")
        return
    ranks = [0] * k
    for place, position in enumerate(order):
        ranks[position] = place + 1
    outcome = widgets.advance(
        user_id,
        project_id,
        lv.submit_rank,
        assignment_id=assignment_id,
        ranks=ranks,
        rationale=(st.session_state.get(f"rationale-{assignment_id}") or "").strip() or None,
        time_spent_ms=widgets.time_spent_ms(),
        idempotency_key=st.session_state.get(state.SUBMIT_KEY),
    )
    undo_offer.offer(project_id, task_id, outcome)


def _prefill(result) -> None:
    """After an undo: the order that was taken back, on screen again to correct."""
    _set(result.assignment_id, list(result.previous["positions"]))
    st.session_state[f"rationale-{result.assignment_id}"] = result.previous.get("rationale") or ""


def render() -> None:
    user = auth.require_action("label")
    project = widgets.pick_project("rank", lv.RANK_KINDS)
    if project is None:
        st.info("There are no ranking projects yet.")
        return
    show_flash()
    undo_offer.undo_button(user.id, project.id, shortcut="u", prefill=_prefill)
    view = widgets.current_task(user, project.id)
    if view is None:
        widgets.empty_queue(user.id, project.id)
        return

    show.chat(view.messages)
    k = len(view.candidates)
    aid = view.assignment_id
    order = picked(aid)
    place = {position: n for n, position in enumerate(order, 1)}
    keys = f"1-{min(k, KEYED)}"
    st.caption(
        f"Pick the answers from best to worst: press the best one's number ({keys}), then the "
        "next best, and so on. Backspace takes back the last pick; Enter submits."
    )
    columns = st.columns(min(k, 3), gap="medium")
    for i, answer in enumerate(view.candidates):
        with columns[i % len(columns)]:
            st.subheader(f"Answer {i + 1}", anchor=False)
            with st.container(key=f"answer-{i + 1}", height=ANSWER_HEIGHT, border=True):
                show.untrusted(answer.text)
            st.button(
                f"{ordinal(place[i])} best" if i in place else f"Pick answer {i + 1}",
                key=f"pick-{i + 1}",
                shortcut=str(i + 1) if i < KEYED else None,
                type="primary" if i in place else "secondary",
                disabled=i in place,
                on_click=_pick,
                args=(aid, i),
                width="stretch",
            )

    with st.container(key="rank-order"):
        if order:
            steps = " › ".join(f"{ordinal(n)}: Answer {p + 1}" for n, p in enumerate(order, 1))
            status = "complete" if len(order) == k else f"{k - len(order)} left to place"
            st.markdown(f"**Your order** ({status}): {steps}")
        else:
            st.markdown(f"**Your order:** nothing picked yet ({k} answers to place).")
    with st.container(horizontal=True, key="rank-controls"):
        st.button(
            "Take back last pick",
            key="rank-back",
            shortcut="Backspace",
            icon=":material/backspace:",
            on_click=_take_back,
            args=(aid,),
        )
        st.button(
            "Clear", key="rank-clear", icon=":material/clear_all:", on_click=_clear, args=(aid,)
        )
    st.text_area("Rationale", key=f"rationale-{aid}", placeholder="Optional: why?", height=80)
    st.button(
        "Submit",
        key="submit",
        type="primary",
        shortcut="Enter",
        icon=":material/send:",
        # Never disabled, as on Compare: an Enter pressed right after the last number, before
        # the page has redrawn, must not be swallowed (the callback warns if the order is short).
        on_click=_submit,
        args=(user.id, project.id, aid, view.task_id, k),
    )
    widgets.skip_and_flag(user.id, project.id, aid)
    widgets.counter(user.id, project.id)
