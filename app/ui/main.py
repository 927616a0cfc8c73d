"""The Streamlit app: `rlhf serve` runs this file. Pages are chosen by the caller's role,
and every page checks the role again itself (app.ui.auth.require)."""

from __future__ import annotations

import streamlit as st

from app.ui import auth, render
from app.ui.pages import login
from labeling.errors import RLHFError
from labeling.models import Role

# An emoji favicon is drawn locally; a :material/...: one is fetched from a font host.
st.set_page_config(page_title="RLHF feedback", page_icon="⚖️", layout="wide")


def labeler_pages() -> list:
    from app.ui.pages import compare, progress, rank, write

    return [
        st.Page(compare.render, title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page(write.render, title="Write", icon=":material/edit_note:", url_path="write"),
        st.Page(rank.render, title="Rank", icon=":material/format_list_numbered:", url_path="rank"),
        st.Page(
            progress.render, title="My progress", icon=":material/insights:", url_path="progress"
        ),
    ]


def everyone_pages() -> list:
    from app.ui.pages import account, leaderboard

    return [
        st.Page(
            leaderboard.render,
            title="Leaderboard",
            icon=":material/leaderboard:",
            url_path="leaderboard",
        ),
        st.Page(account.render, title="Account", icon=":material/person:", url_path="account"),
    ]


def admin_pages() -> list:
    from app.ui.pages import admin_dashboard, admin_projects, admin_users

    return [
        st.Page(
            admin_projects.render,
            title="Projects",
            icon=":material/folder:",
            url_path="admin_projects",
        ),
        st.Page(admin_users.render, title="Users", icon=":material/group:", url_path="admin_users"),
        st.Page(
            admin_dashboard.render,
            title="Dashboard",
            icon=":material/monitoring:",
            url_path="admin_dashboard",
        ),
    ]


def engineer_pages() -> list:
    from app.ui.pages import admin_import, engineer_runs, engineer_snapshots, engineer_training

    # Engineers import too; admins see this section as well, so Import lives here once.
    return [
        st.Page(
            admin_import.render, title="Import", icon=":material/upload:", url_path="admin_import"
        ),
        st.Page(
            engineer_snapshots.render,
            title="Snapshots",
            icon=":material/inventory_2:",
            url_path="snapshots",
        ),
        st.Page(
            engineer_training.render,
            title="Launch training",
            icon=":material/rocket_launch:",
            url_path="training",
        ),
        st.Page(
            engineer_runs.render,
            title="Runs and checkpoints",
            icon=":material/model_training:",
            url_path="runs",
        ),
    ]


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
    sections: dict[str, list] = {"Label": labeler_pages(), "Results": everyone_pages()}
    if user.role in (Role.admin, Role.engineer):
        sections["Engineer"] = engineer_pages()
    if user.role == Role.admin:
        sections["Admin"] = admin_pages()
    # an admin has 13 pages: past 12 Streamlit would fold the last ones behind "View more"
    page = st.navigation(sections, expanded=True)
    with st.sidebar:
        st.caption(f"Signed in as **{render.inline(user.name)}** ({user.role.value})")
        if st.button("Log out", icon=":material/logout:"):
            auth.log_out()
            st.rerun()
try:
    page.run()
except RLHFError as exc:  # e.g. app.ui.db's Unavailable (disk full): a sentence, no traceback
    st.error(render.inert_markdown(str(exc)))
