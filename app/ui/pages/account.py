"""Account: change one's own password (every role). Every other session of the account
ends; this tab stays logged in with a fresh token."""

from __future__ import annotations

import streamlit as st

from app.ui import auth
from app.ui.actions import flash, show_flash
from app.ui.render import inert_markdown, inline
from labeling.accounts import users
from labeling.errors import RLHFError

KEY = "account-"


def render() -> None:
    me = auth.require_action("users.own_password")
    st.title("Account")
    show_flash()
    st.caption(f"Signed in as **{inline(me.name)}** ({me.role.value}).")
    st.subheader("Change password")
    with st.form(KEY + "form", clear_on_submit=True):
        old = st.text_input(
            "Current password", type="password", key=KEY + "old", autocomplete="current-password"
        )
        new = st.text_input(
            "New password", type="password", key=KEY + "new", autocomplete="new-password",
            help=f"at least {users.MIN_PASSWORD} characters, not a common password",
        )  # fmt: skip
        again = st.text_input(
            "New password again", type="password", key=KEY + "again", autocomplete="new-password"
        )
        submitted = st.form_submit_button("Change password", type="primary")
    if submitted:
        try:
            auth.change_password(me, old, new, again)
        except RLHFError as exc:
            st.error(inert_markdown(str(exc)))
            return
        flash("success", "Password changed. Your other sessions have been logged out.")
        st.rerun()  # main.py hands the fresh token to the browser's cookie on this rerun
