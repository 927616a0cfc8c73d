"""Who is using this browser session, checked against the database on every run.

Only the user's id (and their login token) live in st.session_state; the role and the
active flag are read from the database each time, so a role change or a deactivation
applies at the next action. A login also sets a cookie holding a random token (its hash is
in the database, labeling.web_sessions), so a page reload keeps the user logged in; logging
out deletes the token server-side.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.ui import state
from app.ui.db import transaction
from labeling import users, web_sessions
from labeling.errors import PermissionDenied
from labeling.models import Role

COOKIE = "rlhf_session"
_COOKIE_JS = """
export default function(component) {
  const { data } = component;
  if (!data || !data.name) return;
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = data.name + "=" + encodeURIComponent(data.value) +
    "; Path=/; Max-Age=" + data.max_age + "; SameSite=Strict" + secure;
}
"""
_cookie_component = st.components.v2.component("rlhf_session_cookie", js=_COOKIE_JS)


@dataclass(frozen=True)
class CurrentUser:
    id: int
    name: str
    role: Role


def current_user() -> CurrentUser | None:
    user_id = st.session_state.get(state.USER_ID)
    if user_id is None:
        user_id = _from_cookie() or _from_oidc()
        if user_id is None:
            return None
    with transaction() as s:
        try:
            user = users.require_role(s, int(user_id))
        except PermissionDenied:
            st.session_state.pop(state.USER_ID, None)  # deactivated or deleted meanwhile
            return None
        return CurrentUser(user.id, user.name, user.role)


def oidc_configured() -> bool:
    """True when an [auth] section is in Streamlit's secrets (see README: single sign-on)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def oidc_identity() -> str | None:
    """The e-mail of the person signed in through OIDC (st.login), if any."""
    if not oidc_configured() or not st.user.is_logged_in:
        return None
    return st.user.get("email")


def _from_oidc() -> int | None:
    """Single sign-on maps to the local account named by the e-mail; roles stay local."""
    email = oidc_identity()
    if not email or st.session_state.get(state.LOGGED_OUT):
        return None
    with transaction() as s:
        try:
            user_id = users.require_role(s, email).id
        except PermissionDenied:
            return None
    st.session_state[state.USER_ID] = user_id
    return user_id


def _from_cookie() -> int | None:
    token = st.context.cookies.get(COOKIE) if st.context.cookies else None
    if not token or st.session_state.get(state.LOGGED_OUT):
        return None
    with transaction() as s:
        user_id = web_sessions.resolve(s, token)
    if user_id is not None:
        st.session_state[state.USER_ID] = user_id
        st.session_state[state.TOKEN] = token
    return user_id


def log_in(name: str, password: str) -> CurrentUser | None:
    with transaction() as s:
        user = users.authenticate(s, name.strip(), password)
        if user is None:
            return None
        current = CurrentUser(user.id, user.name, user.role)
        token = web_sessions.start(s, user_id=user.id)
    st.session_state.clear()  # nothing from before the login survives it
    st.session_state[state.USER_ID] = current.id
    st.session_state[state.TOKEN] = token
    return current


def log_out() -> None:
    with transaction() as s:
        web_sessions.end(s, st.session_state.get(state.TOKEN))
    st.session_state.clear()
    st.session_state[state.LOGGED_OUT] = True


def sync_cookie() -> None:
    """Keep the browser's cookie in step with this session: set after login, cleared after
    logout. Rendered once per run by main.py."""
    token = st.session_state.get(state.TOKEN)
    if token:
        data = {
            "name": COOKIE,
            "value": token,
            "max_age": int(web_sessions.DEFAULT_TTL.total_seconds()),
        }
    elif st.session_state.get(state.LOGGED_OUT):
        data = {"name": COOKIE, "value": "", "max_age": 0}
    else:
        return
    _cookie_component(data=data, key="session-cookie")


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
