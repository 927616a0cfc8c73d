"""Log in with a local account."""

import streamlit as st

from app.ui import auth


def render() -> None:
    st.title("Log in")
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if auth.oidc_configured():
        email = auth.oidc_identity()
        if email:
            st.error(
                "No active account here matches your single sign-on e-mail. "
                "Ask an admin to add it (rlhf users add EMAIL --role labeler)."
            )
            st.button("Sign out of single sign-on", on_click=st.logout)
        else:
            st.button("Sign in with single sign-on", on_click=st.login, icon=":material/key:")
    if submitted:
        if auth.log_in(name, password) is None:
            st.error("Wrong user name or password.")
        else:
            st.rerun()
