"""The Label quality page's active-learning part: re-order a pairwise project's open compare
tasks so that labelers are served first what teaches the reward model most, and the top of
the queue as claims will serve it. The button calls reward.prioritise.prioritise (what
`rlhf queue prioritise` runs) under the "queue.prioritise" action.

Prompts and answers are untrusted text: shown through app/ui/render.py only.
"""

from __future__ import annotations

import streamlit as st

from app.ui import render
from app.ui.actions import act, flash
from app.ui.db import transaction
from labeling import queue_priority
from labeling.errors import RLHFError
from labeling.registry import runs

K = "queue-order-"  # widget keys: K + field
SHOWN = 5
STRATEGIES = {
    "margin": "margin: the smallest predicted margin first",
    "disagreement": "disagreement: the ensemble's members disagree most first",
    "random": "random: a seeded shuffle",
}


def _prioritise(user_id: int, project_id: int) -> None:
    """An on_click callback: re-order the queue as the CLI does, in three steps, so that no
    transaction stays open while the model runs (reward/prioritise.py); each transaction
    re-checks the caller's role."""
    from reward import prioritise as service

    reward = st.session_state.get(K + "reward", "default")
    strategy = st.session_state.get(K + "strategy", "margin")
    read: dict = {}

    def gather(s) -> str:
        read["inputs"] = service.gather(s, project=project_id, reward=reward)
        return "Read the open pairs."

    if not act(user_id, "queue.prioritise", gather):
        return
    try:
        plan = service.rank(read["inputs"], strategy=strategy)
    except RLHFError as exc:
        flash("error", str(exc))
        return

    def write(s) -> str:
        out = service.apply(s, read["inputs"], plan, top=0)
        note = f" {out['note'][0].upper()}{out['note'][1:]}." if out["note"] else ""
        return (
            f"Re-ordered {out['reordered']} open tasks by {out['strategy']} "
            f"({out['members']} members, {out['labeled_pairs']} labeled pairs).{note}"
        )

    act(user_id, "queue.prioritise", write)


def controls(user_id: int, project_id: int, kind: str) -> None:
    st.subheader("What to label next")
    if kind != "pairwise":
        st.caption("Active learning orders the queue of pairwise projects only.")
        return
    st.caption(
        "An ensemble of reward heads on the reward model's backbone scores every open pair; "
        "the queue then serves first the pairs closest to a tie (or those the members disagree "
        "on most). Gold and finished tasks keep their place. Run it again after new labels."
    )
    with transaction() as s:
        rewards = {c["id"]: c for c in runs.list_checkpoints(s, kind="reward")}
        top = queue_priority.queue_top(s, project_id, limit=SHOWN)
    left, right = st.columns(2)
    left.selectbox(
        "Reward model", ["default", *rewards], key=K + "reward",
        format_func=lambda i: "default: the reward base, backbone only" if i == "default"
        else f"#{i} {rewards[i]['name']}",
    )  # fmt: skip
    right.selectbox("Strategy", list(STRATEGIES), key=K + "strategy", format_func=STRATEGIES.get)
    st.button("Re-order the queue", key=K + "go", icon=":material/swap_vert:",
              on_click=_prioritise, args=(user_id, project_id))  # fmt: skip
    if not top:
        st.caption("No open compare tasks: nothing to order.")
        return
    st.caption(f"The next {len(top)} tasks labelers will be served, in order")
    for row in top:
        with st.container(border=True):
            st.caption(f"Task #{row['task_id']} · priority {row['priority']}")
            render.chat(row["messages"])
            a, b = st.columns(2)
            a.markdown("**A**")
            render.untrusted(row["text_a"], container=a)
            b.markdown("**B**")
            render.untrusted(row["text_b"], container=b)
