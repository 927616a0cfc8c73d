"""What a button does, for every page: `act` runs its work in one transaction after
re-checking the caller against the action's policy, and `flash` / `show_flash` carry the
one-sentence outcome over the rerun.

    def _cancel(user_id: int, run_id: int) -> None:     # an on_click callback
        act(user_id, "train", lambda s: f"Run #{runs.cancel_run(s, run_id).id} cancelled.")

    show_flash()                                        # near the top of the page

The role is re-read inside the work's own transaction (labeling.accounts.policies names who
may do `action`), so a role changed or an account deactivated meanwhile applies at once.
Messages quote names and text people typed: show_flash renders them inertly, always.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import streamlit as st

from app.ui import render, state
from app.ui.db import transaction
from labeling.accounts import policies, users
from labeling.errors import RLHFError

Kind = Literal["success", "warning", "error"]


def flash(kind: Kind, message: str) -> None:
    """One message to show after the next rerun (by show_flash)."""
    st.session_state[state.FLASH] = (kind, message)


def show_flash() -> None:
    """Show the pending message once, through the inert renderer."""
    item = st.session_state.pop(state.FLASH, None)
    if item:
        kind, message = item
        show = st.warning if kind == "warning" else st.error if kind == "error" else st.success
        show(render.inert_markdown(message))


def act(user_id: int, action: str, work: Callable[[Any], str]) -> bool:
    """Run `work(session)` in one transaction once the caller may do `action`; flash the
    sentence it returns, or the error's. True when it succeeded."""
    try:
        with transaction() as s:
            users.require_role(s, user_id, *policies.allowed(action))
            message = work(s)
    except RLHFError as exc:
        flash("error", str(exc))
        return False
    flash("success", message)
    return True
