"""Who is using this browser session, checked against the database on every run.

The session holds a login token (st.session_state); every rerun looks it up in the
database (labeling.accounts.web_sessions.lookup, one indexed query), so logging out in another tab,
expiry, deactivation, a password change and a role change all apply at the next click,
in every tab and for every copy of the cookie. Single sign-on (st.login) gets a token too.

The browser keeps the token in an HttpOnly cookie (app/ui/web_security.py sets it from a
token the page posts once), so a page reload stays logged in but page scripts cannot
read the token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import streamlit as st

from app.ui import state, web_security
from app.ui.db import transaction
from app.ui.web_security import COOKIE, SESSION_PATH
from labeling.accounts import login_throttle, policies, users, web_sessions
from labeling.errors import InvalidInput, PermissionDenied
from labeling.models import Role

SESSION_ENDED = "Your session has ended (logged out, expired or changed): please log in again."

# Hands the token to the server, which sets it as an HttpOnly cookie (or clears it) and
# remembers the hand-over's key; the next run sees that and leaves the token out of the page.
# (No component state: setting one would rerun the page and wipe a one-run message.)
_COOKIE_JS = f"""
export default function(component) {{
  const {{ data }} = component;
  if (!data || typeof data.token !== "string") return;
  fetch("{SESSION_PATH}", {{
    method: "POST", credentials: "same-origin",
    headers: {{ "Content-Type": "application/json" }},
    body: JSON.stringify({{ token: data.token, key: data.key }}),
  }});
}}
"""
_cookie_component = st.components.v2.component("rlhf_session_cookie", js=_COOKIE_JS)


@dataclass(frozen=True)
class CurrentUser:
    id: int
    name: str
    role: Role


def current_user() -> CurrentUser | None:
    ss = st.session_state
    token = ss.get(state.TOKEN)
    if token is not None:
        found = _lookup(token)
        if found is None:  # ended while this tab was open: nothing of it may linger
            _forget(ended=True)
            return None
    elif ss.get(state.LOGGED_OUT):
        return None
    else:  # a new browser session: the cookie, else single sign-on
        # Once per session: st.context.cookies keeps the cookies the page loaded with, so a dead
        # one would still be there after the server cleared it, and be dropped again each run.
        token = None if ss.get(state.COOKIE_READ) else _cookie_token()
        ss[state.COOKIE_READ] = True
        found = _lookup(token) if token else None
        if found is None:
            if token:
                _hand_to_cookie("")  # a dead cookie: drop it
            token = _oidc_token()
            found = _lookup(token) if token else None
        if found is None:
            ss.pop(state.USER_ID, None)
            return None
        ss[state.TOKEN] = token
    ss[state.USER_ID] = found.id
    return CurrentUser(found.id, found.name, found.role)


def _lookup(token: str) -> web_sessions.SessionUser | None:
    with transaction() as s:
        # a plain read: on SQLite it need not queue behind writers for the write lock
        s.connection(execution_options={"sqlite_deferred": True})
        return web_sessions.lookup(s, token)


def _forget(*, ended: bool) -> None:
    """Clear everything this browser session knew; the cookie goes too."""
    st.session_state.clear()
    st.session_state[state.LOGGED_OUT] = True  # the old cookie or SSO must not log back in
    _hand_to_cookie("")
    if ended:
        st.session_state[state.SESSION_ENDED] = True


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


def _oidc_token() -> str | None:
    """Single sign-on maps to the local account named by the e-mail; roles stay local. It
    gets a token like a password login, so that logout and revocation apply to it too."""
    email = oidc_identity()
    if not email:
        return None
    with transaction() as s:
        try:
            user_id = users.require_role(s, email).id
        except PermissionDenied:
            return None
        token = web_sessions.start(s, user_id=user_id)
    _hand_to_cookie(token)
    return token


def _cookie_token() -> str | None:
    return st.context.cookies.get(COOKIE) if st.context.cookies else None


def client_address() -> str | None:
    """The client's address as the server saw it (None on localhost; behind a proxy, the
    proxy's: see the README's security model)."""
    try:
        address = st.context.ip_address
    except Exception:  # no client context (bare script runs)
        return None
    return address if isinstance(address, str) else None


def log_in(name: str, password: str) -> CurrentUser | None:
    """None for a wrong name or password; login_throttle.TooManyAttempts while locked."""
    with transaction() as s:
        user = login_throttle.log_in(
            s, name=name.strip(), password=password, address=client_address()
        )
        if user is None:
            return None  # the failure is recorded (this transaction commits)
        current = CurrentUser(user.id, user.name, user.role)
        token = web_sessions.start(s, user_id=user.id)
    _start(current, token)
    return current


def _start(current: CurrentUser, token: str) -> None:
    st.session_state.clear()  # nothing from before the login survives it
    st.session_state[state.USER_ID] = current.id
    st.session_state[state.TOKEN] = token
    _hand_to_cookie(token)


def change_password(current: CurrentUser, old: str, new: str, again: str) -> None:
    """The caller's own password. Ends every session of the account, then starts a fresh
    one for this tab. Raises RLHFError subclasses with the sentence to show."""
    if new != again:
        raise InvalidInput("the two new passwords differ")
    address = client_address()
    with transaction() as s:
        # a stolen session must not become a password-guessing oracle: same throttle as login
        wait = login_throttle.wait_seconds(s, name=current.name, address=address)
        if wait:
            raise login_throttle.TooManyAttempts(wait)
    try:
        with transaction() as s:
            users.set_password(s, current.name, new, current_password=old)
            token = web_sessions.start(s, user_id=current.id)
    except PermissionDenied:
        with transaction() as s:
            login_throttle.record_failure(s, name=current.name, address=address)
        raise
    _start(current, token)


def log_out() -> None:
    with transaction() as s:
        web_sessions.end(s, st.session_state.get(state.TOKEN))
    _forget(ended=False)
    if oidc_identity():
        st.logout()  # also end the single sign-on identity, or a reload would log back in


def _hand_to_cookie(token: str) -> None:
    """Queue `token` for the cookie ("" clears it); a fresh key tells this hand-over's
    acknowledgement apart from an earlier one's."""
    st.session_state[state.COOKIE_PENDING] = (token, f"session-cookie-{secrets.token_hex(8)}")


def sync_cookie() -> None:
    """Hand a new token to the server (it sets the HttpOnly cookie), or clear the cookie after
    logout. Rendered by main.py on every run until the server has acted on it: the run that
    rendered it may be cut short (st.switch_page, st.rerun) before the browser ran it, and a
    reload then would find no cookie."""
    # The slot is there on every run, so the page's own elements keep their places (and a login
    # form its typed text) whether or not the hand-over is rendered in it.
    slot = st.empty()
    pending = st.session_state.get(state.COOKIE_PENDING)
    if pending is None:
        return
    token, key = pending
    if web_security.acknowledged(key):
        st.session_state.pop(state.COOKIE_PENDING, None)
        return
    with slot:
        _cookie_component(data={"token": token, "key": key}, key=key)


def require_action(action: str) -> CurrentUser:
    """The top line of every page: stop rendering unless the caller may do `action`
    (labeling/accounts/policies.py), e.g. `user = auth.require_action("import")`."""
    return require(*policies.allowed(action))


def require(*roles: Role) -> CurrentUser:
    """Stop rendering unless someone is signed in with one of `roles` (any role if none);
    pages name their action instead (require_action)."""
    user = current_user()
    if user is None:
        st.warning("Please log in.")
        st.stop()
    if roles and user.role not in roles:
        st.error("You do not have access to this page.")
        st.stop()
    return user
