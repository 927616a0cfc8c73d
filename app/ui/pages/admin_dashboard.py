"""Admin · Dashboard: one project's queue and labels at a glance, and a snapshot button.

Every number comes from labeling.stats, which aggregates in SQL (fine on a million tasks).
"""

from __future__ import annotations

import streamlit as st

from app.ui import auth, state
from app.ui.actions import show_flash
from app.ui.db import transaction
from app.ui.pages.engineer_snapshots import create_snapshot_form
from app.ui.render import inline
from labeling import projects, stats
from labeling.models import ProjectKind

PAIRWISE = (ProjectKind.pairwise.value, ProjectKind.arena.value)


def pick_project() -> tuple[int, str, str] | None:
    """A project selectbox (remembered across the admin pages): (id, name, kind)."""
    with transaction() as s:
        choices = {p.id: (p.name, p.kind.value) for p in projects.list_projects(s)}
    if not choices:
        return None
    ids = list(choices)
    if st.session_state.get(state.ADMIN_PROJECT_ID) not in ids:
        st.session_state[state.ADMIN_PROJECT_ID] = ids[0]
    project_id = st.selectbox(
        "Project", ids, key=state.ADMIN_PROJECT_ID,
        format_func=lambda i: f"{choices[i][0]} ({choices[i][1]})",
    )  # fmt: skip
    return int(project_id), *choices[project_id]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render() -> None:
    user = auth.require_action("dashboard")
    st.title("Dashboard")
    show_flash()
    picked = pick_project()
    if picked is None:
        st.info("No projects yet: create one on the Projects page.")
        return
    project_id, name, kind = picked
    with transaction() as s:
        over = stats.overview(s, project_id)
        per_day = stats.labels_per_day(s, project_id)
        per_labeler = stats.labels_per_labeler(s, project_id)
        burn = stats.burndown(s, project_id)
        rates = stats.choice_rates(s, project_id) if kind in PAIRWISE else None

    cols = st.columns(6)
    cols[0].metric("Tasks", f"{over['tasks']:,}", help=f"{over['gold']:,} of them gold checks")
    cols[1].metric("Done", f"{over['done']:,}", help=f"{over['open']:,} open")
    cols[2].metric("Labels", f"{over['labels']:,}")
    cols[3].metric("Labels wanted", f"{over['labels_wanted']:,}")
    cols[4].metric("Live leases", f"{over['active_leases']:,}")
    cols[5].metric("Labelers", f"{over['labelers']:,}")
    if rates is not None:
        cols = st.columns(3)
        cols[0].metric("Judgments", f"{rates['preferences']:,}")
        cols[1].metric("Tie rate", _percent(rates["tie_rate"]) if rates["preferences"] else "-")
        cols[2].metric(
            "Both-bad rate", _percent(rates["both_bad_rate"]) if rates["preferences"] else "-"
        )

    left, right = st.columns(2)
    with left:
        st.subheader("Labels per day")
        if per_day.empty:
            st.caption("No labels yet.")
        else:
            st.bar_chart(per_day, x="day", y="labels", x_label="day (UTC)", y_label="labels")
    with right:
        st.subheader("Queue burn-down")
        if burn.empty:
            st.caption("No tasks yet.")
        else:
            st.line_chart(burn, x="day", y=["open", "done"], x_label="day (UTC)",
                          y_label="tasks")  # fmt: skip

    st.subheader("Labelers")
    if per_labeler.empty:
        st.caption("No labels from labelers yet.")
    else:
        st.bar_chart(per_labeler, x="labeler", y="labels", horizontal=True)
        columns = ["labeler", "labels", "mean_seconds", "last_label_at"]
        if kind in PAIRWISE:
            columns[2:2] = ["tie_rate", "both_bad_rate", "gold_answered", "gold_accuracy"]
        st.dataframe(
            per_labeler,
            hide_index=True,
            column_order=columns,
            column_config={
                "tie_rate": st.column_config.NumberColumn("tie rate", format="percent"),
                "both_bad_rate": st.column_config.NumberColumn("both-bad rate", format="percent"),
                "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="percent"),
                "mean_seconds": st.column_config.NumberColumn("s / label", format="%.1f"),
            },
        )

    st.subheader("Create a snapshot")
    st.caption(
        f"Freeze the labels of **{inline(name)}** into Parquet for training (same labels, same "
        "snapshot: creating it again returns the existing one)."
    )
    create_snapshot_form(user.id, project_id, key="dashboard-snapshot")
