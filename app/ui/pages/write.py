"""Write the ideal answer (SFT demonstrations). The answer autosaves to the server while the
labeler types; a reload brings back the draft of the task they hold. Ctrl+Enter submits;
for a minute after, Undo takes the answer back and shows it again in the editor, to correct.

Problems with checkable answers (verifiable rewards): a prompt's gold final answer, where it
has one, is shown above the editor (inert, like all text here), and "Write a new problem"
adds a problem with its final answer to the project (a new item to answer)."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, state, undo_offer, widgets
from app.ui import render as show
from app.ui.actions import act, flash, show_flash
from app.ui.db import transaction
from labeling import labeler_views as lv
from labeling import projects, tasks
from labeling.errors import RLHFError

MODEL_ANSWER_HEIGHT = 240
PROBLEM = "write-problem-"  # widget keys of the new-problem form: PROBLEM + field


def _submit(
    user_id: int, project_id: int, assignment_id: int, task_id: int, text: str | None = None
) -> None:
    if st.session_state.get(state.ASSIGNMENT_ID) != assignment_id:
        return  # a stale click from a task no longer on screen
    if text is None:
        text = widgets.editor_text(assignment_id)
    if text is None:
        text = st.session_state.get(state.SAVED_TEXT) or ""
    if not text.strip():
        flash("warning", "Write an answer first.")
        return
    outcome = widgets.advance(
        user_id,
        project_id,
        lv.submit_write,
        assignment_id=assignment_id,
        text=text,
        time_spent_ms=widgets.time_spent_ms(),
        idempotency_key=st.session_state.get(state.SUBMIT_KEY),
    )
    if outcome is not None and not outcome.accepted:
        st.session_state[state.REFUSED_TEXT] = text
    undo_offer.offer(project_id, task_id, outcome)


def _prefill(result) -> None:
    """After an undo: the editor starts afresh from the answer taken back (now the draft)."""
    widgets.replace_editor_text(result.assignment_id)


def _use_model_answer(user_id: int, assignment_id: int, response_id: int) -> None:
    try:
        with transaction() as s:
            text = lv.copy_model_answer(
                s, assignment_id=assignment_id, user_id=user_id, response_id=response_id
            )
    except RLHFError as exc:
        flash("error", str(exc))
        return
    st.session_state[state.SAVED_TEXT] = text
    widgets.replace_editor_text(assignment_id)


def _autosave(user_id: int, assignment_id: int, text: str) -> None:
    try:
        with transaction() as s:
            kept = lv.save_write_draft(s, assignment_id=assignment_id, user_id=user_id, text=text)
    except RLHFError as exc:
        st.error(show.inert_markdown(f"Could not save your draft: {exc}"))
        return
    st.session_state[state.SAVED_TEXT] = text
    if not kept:
        st.warning("Your lease on this item lapsed; your draft is saved.")


def _add_problem(user_id: int, project_id: int) -> None:
    text = st.session_state.get(PROBLEM + "text") or ""
    answer = st.session_state.get(PROBLEM + "answer") or None

    def work(s) -> str:
        project = projects.get_project(s, project_id)
        prompt, _task = tasks.add_problem(s, project, text, answer=answer)
        with_answer = " with its final answer" if prompt.answer is not None else ""
        return f"Problem added{with_answer}: it is in the queue to be answered."

    if act(user_id, "label", work):
        for key in ("text", "answer"):
            st.session_state.pop(PROBLEM + key, None)  # a fresh form for the next one


def new_problem_form(user_id: int, project_id: int) -> None:
    """A problem and (optionally) the final answer a correct solution reaches."""
    with st.expander("Write a new problem", icon=":material/add_circle:"):
        st.text_area(
            "Problem", key=PROBLEM + "text", height=120, max_chars=tasks.MAX_PROBLEM_CHARS,
            placeholder="e.g. A shop sells 3 pens for 45 cents. How much do 7 pens cost?",
        )  # fmt: skip
        st.text_input(
            "Final answer (optional)", key=PROBLEM + "answer", max_chars=10_000,
            placeholder="e.g. 105", help="the exact final answer a correct solution reaches: "
            "a verifier checks model answers against it",
        )  # fmt: skip
        st.button(
            "Add problem", key=PROBLEM + "add", icon=":material/add:", on_click=_add_problem,
            args=(user_id, project_id),
        )  # fmt: skip


def render() -> None:
    user = auth.require_action("label")
    project = widgets.pick_project("write", lv.WRITE_KINDS)
    if project is None:
        st.info("There are no writing projects yet.")
        return
    show_flash()
    undo_offer.undo_button(user.id, project.id, prefill=_prefill)
    refused = st.session_state.pop(state.REFUSED_TEXT, None)
    if refused:
        with st.expander("Your answer that was not counted (copy it if you need it)"):
            st.code(refused, language=None, wrap_lines=True)
    view = widgets.current_task(user, project.id)
    if view is None:
        widgets.empty_queue(user.id, project.id)
        new_problem_form(user.id, project.id)
        return

    show.chat(view.messages)
    if view.answer is not None:
        st.markdown(f":material/task_alt: **Final answer to reach:** {show.inline(view.answer)}")
    draft = (view.draft or {}).get("text") or ""
    if state.SAVED_TEXT not in st.session_state:
        st.session_state[state.SAVED_TEXT] = draft
    st.markdown("**Your answer**")
    text, ctrl_enter = widgets.answer_editor(
        view.assignment_id, draft, placeholder="Write the answer you would want to receive."
    )
    if text != st.session_state[state.SAVED_TEXT]:
        _autosave(user.id, view.assignment_id, text)
    if ctrl_enter:
        _submit(user.id, project.id, view.assignment_id, view.task_id, text)
        st.rerun()
    st.caption(
        f":material/cloud_done: Draft saved as you type ({len(text)} characters)."
        if text
        else "Your draft saves as you type."
    )

    if view.model_answers:
        with st.expander("Start from a model answer", icon=":material/smart_toy:"):
            for i, answer in enumerate(view.model_answers, 1):
                st.caption(f"Model answer {i} ({show.inline(answer.source)})")
                with st.container(height=MODEL_ANSWER_HEIGHT, border=True):
                    show.untrusted(answer.text)
                st.button(
                    f"Use model answer {i}",
                    key=f"use-model-{answer.response_id}",
                    icon=":material/content_copy:",
                    on_click=_use_model_answer,
                    args=(user.id, view.assignment_id, answer.response_id),
                )

    st.button(
        "Submit",
        key="submit",
        type="primary",
        shortcut="Ctrl+Enter",
        icon=":material/send:",
        on_click=_submit,
        args=(user.id, project.id, view.assignment_id, view.task_id),
    )
    widgets.skip_and_flag(user.id, project.id, view.assignment_id)
    widgets.counter(user.id, project.id)
    new_problem_form(user.id, project.id)
