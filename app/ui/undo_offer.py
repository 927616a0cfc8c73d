"""The "Undo" offer on the labeler pages (Compare, Write, Rank).

For a minute after a submit, an Undo button takes that label back (labeling.undo checks
every rule on the server: this only decides when to show the button) and puts the same task
on screen again, the answer filled in by the page's `prefill`, to correct and submit again.
The button sits in a fragment that redraws every few seconds, so it goes away on its own
when the minute is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from app.ui import state, widgets
from app.ui.actions import flash
from app.ui.db import transaction
from labeling import undo
from labeling.errors import RLHFError

REFRESH_S = 5  # how often the countdown is redrawn
MARGIN_S = 2  # hide the button a little early: the server's minute started at the submit


def offer(project_id: int, task_id: int, outcome) -> None:
    """After a submit (an Outcome from widgets.advance): offer undo if the label counted."""
    if outcome is not None and outcome.accepted:
        st.session_state[state.UNDO] = {
            "project_id": project_id,
            "task_id": task_id,
            "until": time.time() + undo.UNDO_SECONDS - MARGIN_S,
        }


def _live(project_id: int) -> dict | None:
    item = st.session_state.get(state.UNDO)
    if not item or item["project_id"] != project_id or time.time() >= item["until"]:
        return None
    return item


def undo_button(
    user_id: int,
    project_id: int,
    *,
    shortcut: str | None = None,
    prefill: Callable[[undo.UndoResult], None] | None = None,
) -> None:
    """The offer, while there is one for this project (call it before the task is shown)."""
    if _live(project_id) is not None:
        _offer(user_id, project_id, shortcut, prefill)


@st.fragment(run_every=REFRESH_S)
def _offer(user_id: int, project_id: int, shortcut: str | None, prefill) -> None:
    item = _live(project_id)
    if item is None:
        return  # the minute is over: nothing drawn (the next full run stops the timer)
    left = max(1, int(item["until"] - time.time()))
    with st.container(horizontal=True, key="undo-offer", vertical_alignment="center"):
        clicked = st.button("Undo", key="undo", shortcut=shortcut, icon=":material/undo:")
        st.caption(f"Label saved. Undo it within {left} s to correct it.")
    if clicked:
        _undo(user_id, project_id, item, prefill)
        st.rerun()  # the whole page: the task it gave back goes on screen


def _undo(user_id: int, project_id: int, item: dict, prefill) -> None:
    st.session_state.pop(state.UNDO, None)
    try:
        with transaction() as s:
            result = undo.undo_last(
                s, user_id=user_id, project_id=project_id, task_id=item["task_id"]
            )
    except RLHFError as exc:
        flash("error", str(exc))
        return
    widgets.start_form(result.assignment_id)
    if result.time_spent_ms:  # the correction's time adds to the time already spent
        st.session_state[state.SHOWN_AT] -= result.time_spent_ms / 1000
    st.session_state.pop(state.DONE_TODAY, None)  # recounted: the label is gone
    if prefill is not None:
        prefill(result)
    flash("success", "Your last label was taken back: correct it and submit again.")
