"""My progress: the caller's own numbers only."""

from __future__ import annotations

import streamlit as st

from app.ui import auth
from app.ui.db import transaction
from labeling import labeler_views as lv


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:g} s"


def render() -> None:
    user = auth.require_action("label")
    st.title("My progress", anchor=False)
    with transaction() as s:
        mine = lv.progress(s, user_id=user.id)
    cols = st.columns(3)
    cols[0].metric("Done today", mine.today)
    cols[1].metric("Done in total", mine.total)
    cols[2].metric("Median time per item", _seconds(mine.median_seconds))

    st.subheader("Labels per day", anchor=False)
    st.bar_chart(
        {"day": list(mine.per_day), "labels": list(mine.per_day.values())},
        x="day",
        y="labels",
        height=220,
    )

    st.subheader("By project", anchor=False)
    if not mine.projects:
        st.info("No projects with work for you yet.")
        return
    st.dataframe(
        [
            {
                "Project": p.name,
                "Kind": p.kind,
                "Today": p.today,
                "Total": p.total,
                "Left for you": p.remaining,
                "Median time": _seconds(p.median_seconds),
            }
            for p in mine.projects
        ],
        hide_index=True,
    )
