"""Rank k answers, best first: a rank per answer, checked before submit."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, state, widgets
from app.ui import render as show
from app.ui.actions import flash, show_flash
from labeling import labeler_views as lv

ANSWER_HEIGHT = 300


def _rank_key(assignment_id: int, position: int) -> str:
    return f"rank-{assignment_id}-{position}"


def _submit(user_id: int, project_id: int, assignment_id: int, k: int) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) != assignment_id:
        return  # a stale click from a task no longer on screen
    ranks = [st.session_state.get(_rank_key(assignment_id, i)) for i in range(k)]
    if any(r is None for r in ranks):
        flash("warning", "Give every answer a rank first.")
        return
    widgets.advance(
        user_id,
        project_id,
        lv.submit_rank,
        assignment_id=assignment_id,
        ranks=ranks,
        rationale=(st.session_state.get(f"rationale-{assignment_id}") or "").strip() or None,
        time_spent_ms=widgets.time_spent_ms(),
        idempotency_key=st.session_state.get(state.SUBMIT_KEY),
    )


def render() -> None:
    user = auth.require_action("label")
    project = widgets.pick_project("rank", lv.RANK_KINDS)
    if project is None:
        st.info("There are no ranking projects yet.")
        return
    show_flash()
    view = widgets.current_task(user, project.id)
    if view is None:
        widgets.empty_queue(user.id, project.id)
        return

    show.chat(view.messages)
    k = len(view.candidates)
    st.caption(f"Give each answer a rank from 1 (best) to {k} (worst), each rank once.")
    columns = st.columns(min(k, 3), gap="medium")
    for i, answer in enumerate(view.candidates):
        with columns[i % len(columns)]:
            st.subheader(f"Answer {i + 1}", anchor=False)
            with st.container(key=f"answer-{i + 1}", height=ANSWER_HEIGHT, border=True):
                show.untrusted(answer.text)
            st.selectbox(
                f"Rank of answer {i + 1}",
                list(range(1, k + 1)),
                index=None,
                placeholder="Rank…",
                key=_rank_key(view.assignment_id, i),
            )
    ranks = [st.session_state.get(_rank_key(view.assignment_id, i)) for i in range(k)]
    chosen = [r for r in ranks if r is not None]
    valid = len(chosen) == k and sorted(chosen) == list(range(1, k + 1))
    if len(set(chosen)) != len(chosen):
        st.warning("Each rank can be used only once.")
    st.text_area(
        "Rationale", key=f"rationale-{view.assignment_id}", placeholder="Optional: why?", height=80
    )
    st.button(
        "Submit",
        key="submit",
        type="primary",
        shortcut="Ctrl+Enter",
        icon=":material/send:",
        disabled=not valid,
        on_click=_submit,
        args=(user.id, project.id, view.assignment_id, k),
    )
    widgets.skip_and_flag(user.id, project.id, view.assignment_id)
    widgets.counter(user.id, project.id)
