"""Log in with a local account."""

import streamlit as st

from app.ui import auth, state
from labeling.accounts.login_throttle import TooManyAttempts


def render() -> None:
    st.title("Log in")
    if st.session_state.get(state.SESSION_ENDED):
        st.info(auth.SESSION_ENDED)
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if auth.oidc_configured():
        email = auth.oidc_identity()
        if email and st.session_state.get(state.LOGGED_OUT):
            # a session that ended (here or elsewhere) does not resume by itself: ask first
            st.button(
                "Continue with single sign-on", on_click=st.session_state.pop,
                args=(state.LOGGED_OUT, None), icon=":material/key:",
            )  # fmt: skip
            st.button("Sign out of single sign-on", on_click=st.logout)
        elif email:
            st.error(
                "No active account here matches your single sign-on e-mail. "
                "Ask an admin to add it (rlhf users add EMAIL --role labeler)."
            )
            st.button("Sign out of single sign-on", on_click=st.logout)
        else:
            st.button("Sign in with single sign-on", on_click=st.login, icon=":material/key:")
    if submitted:
        try:
            user = auth.log_in(name, password)
        except TooManyAttempts as exc:  # said the same whether or not the account exists
            st.error(f"Too many attempts, try again in {exc.wait_s} s.")
            return
        if user is None:
            st.error("Wrong user name or password.")
        else:
            st.rerun()
