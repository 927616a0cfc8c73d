"""Log in with a local account."""

import streamlit as st

from app.ui import auth


def render() -> None:
    st.title("Log in")
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        if auth.log_in(name, password) is None:
            st.error("Wrong user name or password.")
        else:
            st.rerun()
