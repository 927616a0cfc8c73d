"""Judge: a person's verdict on the probe answers the automatic judge could not match (long
answers; labeling/probes.py). One answer at a time, blind (which checkpoint wrote it is not
shown): the question, the team's reference answer and the model's answer, then Correct,
Wrong or "Says it doesn't know". Skip puts it aside for this session. Two people judging the
same answer: the second is told it is already judged. Model answers are untrusted text:
app/ui/render.py only."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, widgets
from app.ui import render as show
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from labeling import probes

SKIPPED = "judge_skipped"  # answer ids put aside in this browser session
PROJECT = "judge_project"
BUTTONS = (
    ("correct", "Correct", ":material/check:"),
    ("incorrect", "Wrong", ":material/close:"),
    ("abstained", "Says it doesn't know", ":material/help:"),
)


def _judge(user_id: int, project: str, answer_id: int, verdict: str) -> None:
    act(user_id, "label", lambda s: _said(probes.judge_answer(
        s, answer_id, verdict, judged_by=user_id, project=project)))  # fmt: skip


def _said(result: dict) -> str:
    return f"Answer {result['answer_id']} judged {result['verdict']}."


def _skip(answer_id: int) -> None:
    st.session_state[SKIPPED] = [*st.session_state.get(SKIPPED, []), answer_id]


def render() -> None:
    user = auth.require_action("label")
    st.title("Judge")
    show_flash()
    with transaction() as s:
        waiting = probes.projects_to_judge(s)
    if not waiting:
        st.info("No model answers are waiting for a verdict.")
        return
    project = widgets.pick_waiting_project(waiting, PROJECT, "to judge")
    skipped = st.session_state.get(SKIPPED, [])
    with transaction() as s:
        found = probes.unjudged_answers(s, project, skip=skipped, limit=1)
    if not found["answers"]:
        st.info("You skipped the rest of this project's answers.")
        st.button("Show the skipped ones again", on_click=st.session_state.pop, args=(SKIPPED,))
        return
    item = found["answers"][0]
    st.caption(f"{found['remaining']} answers to judge in this project")
    st.subheader("Question")
    show.untrusted(item["question"])
    st.subheader("Reference answer")
    show.untrusted(item["reference"] or "")
    st.subheader("The model's answer")
    with st.container(border=True):
        show.untrusted(item["text"])
    columns = st.columns(len(BUTTONS) + 1)
    for column, (verdict, label, icon) in zip(columns, BUTTONS, strict=False):
        column.button(
            label, icon=icon, key=f"judge-{verdict}", type="primary" if verdict == "correct" else
            "secondary", on_click=_judge, args=(user.id, project, item["answer_id"], verdict),
        )  # fmt: skip
    columns[-1].button(
        "Skip", icon=":material/skip_next:", key="judge-skip", on_click=_skip,
        args=(item["answer_id"],),
    )  # fmt: skip
