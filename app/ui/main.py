"""The Streamlit app: `rlhf serve` runs this file. The navigation shows a role the pages
whose action (labeling/accounts/policies.py) allows it, and every page checks the same
action again itself (app.ui.auth.require_action)."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, navigation, render
from app.ui.pages import login
from labeling.errors import RLHFError

# An emoji favicon is drawn locally; a :material/...: one is fetched from a font host.
st.set_page_config(page_title="RLHF feedback", page_icon="⚖️", layout="wide")

try:
    user = auth.current_user()
except RLHFError as exc:  # the database is unreachable or full: a sentence before any page
    st.error(render.inert_markdown(str(exc)))
    st.stop()
auth.sync_cookie()
if user is None:
    page = st.navigation(
        [st.Page(login.render, title="Log in", icon=":material/login:", url_path="login")]
    )
else:
    page = st.navigation(navigation.pages(user.role), expanded=True)
    with st.sidebar:
        st.caption(f"Signed in as **{render.inline(user.name)}** ({user.role.value})")
        if st.button("Log out", icon=":material/logout:"):
            auth.log_out()
            st.rerun()
try:
    page.run()
except RLHFError as exc:  # e.g. app.ui.db's Unavailable (disk full): a sentence, no traceback
    st.error(render.inert_markdown(str(exc)))
