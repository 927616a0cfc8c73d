"""Who is using this browser session, checked against the database on every run.

Only the user's id lives in st.session_state; the role and the active flag are read from
the database each time, so a role change or a deactivation applies at the next action.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.ui import state
from app.ui.db import transaction
from labeling import users
from labeling.errors import PermissionDenied
from labeling.models import Role


@dataclass(frozen=True)
class CurrentUser:
    id: int
    name: str
    role: Role


def current_user() -> CurrentUser | None:
    user_id = st.session_state.get(state.USER_ID)
    if user_id is None:
        return None
    with transaction() as s:
        try:
            user = users.require_role(s, int(user_id))
        except PermissionDenied:
            st.session_state.pop(state.USER_ID, None)  # deactivated or deleted meanwhile
            return None
        return CurrentUser(user.id, user.name, user.role)


def log_in(name: str, password: str) -> CurrentUser | None:
    with transaction() as s:
        user = users.authenticate(s, name.strip(), password)
        if user is None:
            return None
        current = CurrentUser(user.id, user.name, user.role)
    st.session_state.clear()  # nothing from before the login survives it
    st.session_state[state.USER_ID] = current.id
    return current


def log_out() -> None:
    st.session_state.clear()


def require(*roles: Role) -> CurrentUser:
    """The top line of every page: stop rendering unless the caller has one of `roles`."""
    user = current_user()
    if user is None:
        st.warning("Please log in.")
        st.stop()
    if roles and user.role not in roles:
        st.error("You do not have access to this page.")
        st.stop()
    return user
