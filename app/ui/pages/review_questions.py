"""Questions (every role): review the questions a model drafted from a document before they
become probe questions (labeling/question_drafts.py). One draft at a time: the passage it
came from, the question and its short answer in editable boxes, then Accept (as shown,
edits included: it becomes a question of the project with its gold answer), Reject, or Skip
(put aside for this session). Two reviewers on one draft: the second is told. Document text
and model drafts are untrusted: app/ui/render.py, or plain input boxes."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, widgets
from app.ui import render as show
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from labeling import question_drafts as drafts

SKIPPED = "draft_skipped"  # draft ids put aside in this browser session
PROJECT = "draft_project"


def _box(draft_id: int, field: str) -> str:
    return f"draft-{draft_id}-{field}"


def _accept(user_id: int, project: str, draft_id: int) -> None:
    question = st.session_state.get(_box(draft_id, "question"))
    answer = st.session_state.get(_box(draft_id, "answer"))
    act(user_id, "label", lambda s: "Draft {draft_id} accepted: question {prompt_id}.".format(
        **drafts.accept_draft(s, project, draft_id, reviewed_by=user_id, question=question,
                              answer=answer)))  # fmt: skip


def _reject(user_id: int, project: str, draft_id: int) -> None:
    act(user_id, "label", lambda s: "Draft {draft_id} rejected.".format(
        **drafts.reject_draft(s, project, draft_id, reviewed_by=user_id)))  # fmt: skip


def _skip(draft_id: int) -> None:
    st.session_state[SKIPPED] = [*st.session_state.get(SKIPPED, []), draft_id]


def render() -> None:
    user = auth.require_action("label")
    st.title("Questions")
    show_flash()
    with transaction() as s:
        waiting = drafts.projects_with_drafts(s)
    if not waiting:
        st.info("No drafted questions are waiting for review.")
        return
    project = widgets.pick_waiting_project(waiting, PROJECT, "to review")
    with transaction() as s:
        found = drafts.list_drafts(s, project, skip=st.session_state.get(SKIPPED, []), limit=1)
    if not found["drafts"]:
        st.info("You skipped the rest of this project's drafts.")
        st.button("Show the skipped ones again", on_click=st.session_state.pop, args=(SKIPPED,))
        return
    item = found["drafts"][0]
    draft_id = item["draft_id"]
    st.caption(
        f"{found['counts']['pending']} drafts to review · from {show.inline(item['document'])}, "
        f"passage {item['passage_index'] + 1}"
    )
    with st.container(border=True):
        show.untrusted(item["passage"])
    st.write("Does the passage answer this question, with this answer? Edit either if needed.")
    st.text_input("Question", value=item["question"], key=_box(draft_id, "question"))
    st.text_input("Answer", value=item["answer"], key=_box(draft_id, "answer"),
                  max_chars=drafts.MAX_ANSWER_CHARS)  # fmt: skip
    left, middle, right = st.columns(3)
    left.button("Accept", icon=":material/check:", type="primary", key="draft-accept",
                on_click=_accept, args=(user.id, project, draft_id))  # fmt: skip
    middle.button("Reject", icon=":material/close:", key="draft-reject", on_click=_reject,
                  args=(user.id, project, draft_id))  # fmt: skip
    right.button("Skip", icon=":material/skip_next:", key="draft-skip", on_click=_skip,
                 args=(draft_id,))  # fmt: skip
