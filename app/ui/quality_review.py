"""The Label quality page's review part: the queue of labels that need a look, with accept /
reject / relabel for each, and pausing a labeler. Everything goes through
labeling.quality.review (the same service `rlhf review` calls) under the "review" action.

Labels, prompts and answers are untrusted text: shown through app/ui/render.py only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlalchemy import select

from app.ui import render
from app.ui.actions import act
from app.ui.db import transaction
from labeling.models import Response, Task, TaskCandidate, User
from labeling.quality import review

QUEUE_SHOWN = 20
REASONS = {
    "disagrees_with_gold": "differs from the gold answer",
    "disagrees_with_majority": "differs from the consensus (Dawid–Skene)",
    "flagged_labeler": "labeler is flagged",
    "uncertain_item": "the item itself is uncertain",
}
CHOICES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def _items(s, task_ids: list[int]) -> dict[int, dict[str, Any]]:
    """{task id: {"messages", "answers": {response id: text}, "a", "b"}} for the shown entries."""
    tasks = s.scalars(select(Task).where(Task.id.in_(task_ids))).all()
    response_ids = {r for t in tasks for r in (t.response_a_id, t.response_b_id) if r}
    candidates = s.execute(
        select(TaskCandidate.task_id, TaskCandidate.response_id)
        .where(TaskCandidate.task_id.in_(task_ids))
        .order_by(TaskCandidate.task_id, TaskCandidate.position)
    ).all()
    response_ids |= {r for _, r in candidates}
    texts = dict(
        s.execute(select(Response.id, Response.text).where(Response.id.in_(response_ids))).all()
    )
    out = {}
    for t in tasks:
        ranked = [r for task_id, r in candidates if task_id == t.id]
        ids = ranked or [t.response_a_id, t.response_b_id]
        out[t.id] = {
            "messages": list(t.prompt.messages),
            "answers": {r: texts.get(r, "") for r in ids if r},
            "a": t.response_a_id,
            "b": t.response_b_id,
        }
    return out


def _judgment(entry: dict[str, Any], item: dict[str, Any]) -> str:
    if entry["kind"] == "ranking":
        positions = {r: i + 1 for i, r in enumerate(item["answers"])}
        return "ranked " + " > ".join(f"#{positions.get(int(r), '?')}" for r in entry["order"])
    strength = f" (strength {entry['strength']})" if entry.get("strength") else ""
    return CHOICES.get(entry["choice"], str(entry["choice"])) + strength


def _review(user_id: int, entry: dict[str, Any], action: str, **judgment) -> None:
    """An on_click callback: record one review (the service re-checks everything)."""
    kind, label_id = entry["kind"], entry["label_id"]

    def work(s) -> str:
        review.review_label(
            s, reviewer_id=user_id, kind=kind, label_id=label_id, action=action, **judgment
        )
        return f"{kind.capitalize()} label #{label_id}: {action}ed."

    act(user_id, "review", work)


def _relabel(user_id: int, entry: dict[str, Any], widget_key: str) -> None:
    choice = st.session_state.get(widget_key)
    if choice is None:
        st.session_state["review-flash-missing"] = True
        return
    strength = st.session_state.get(f"{widget_key}-strength") if choice in ("a", "b") else None
    _review(user_id, entry, "relabel", choice=choice, strength=strength)


def review_queue(user_id: int, project_id: int, report: dict[str, Any]) -> None:
    st.subheader("Review queue")
    st.caption(
        "Labels that differ from the gold answer or from the consensus, labels of flagged "
        "labelers, and labels on uncertain items, most suspicious first. A rejected label leaves "
        "every later snapshot (it stays in the history); a relabel replaces its judgment there."
    )
    with transaction() as s:
        entries = review.review_queue(s, project_id, limit=QUEUE_SHOWN, report=report)
        items = _items(s, sorted({e["task_id"] for e in entries})) if entries else {}
    if not entries:
        st.caption("Nothing to review: no label is flagged, or every flagged one is reviewed.")
        return
    for entry in entries:
        item = items.get(entry["task_id"])
        if item is None:
            continue
        reasons = ", ".join(REASONS.get(r, r) for r in entry["reasons"])
        certainty = f", consensus {100 * entry['posterior']:.0f}%" if entry.get("posterior") else ""
        title = (
            f"{entry['kind']} #{entry['label_id']} by {render.inline(entry['labeler'] or '?')}: "
            f"{_judgment(entry, item)} ({reasons}{certainty})"
        )
        with st.expander(title):
            render.chat(item["messages"])
            answers = list(item["answers"].items())
            columns = st.columns(len(answers))
            for i, (column, (_, text)) in enumerate(zip(columns, answers, strict=True)):
                label = "AB"[i] if entry["kind"] == "preference" else f"#{i + 1}"
                column.markdown(f"**{label}**")
                render.untrusted(text, container=column)
            key = f"review-{entry['kind']}-{entry['label_id']}"
            left, middle, right = st.columns(3)
            left.button(
                "Accept", key=f"{key}-accept", icon=":material/check:",
                on_click=_review, args=(user_id, entry, "accept"),
            )  # fmt: skip
            middle.button(
                "Reject", key=f"{key}-reject", icon=":material/block:",
                on_click=_review, args=(user_id, entry, "reject"),
            )  # fmt: skip
            if entry["kind"] == "preference":
                with right:
                    st.radio(
                        "Your judgment", list(CHOICES), key=f"{key}-choice", index=None,
                        format_func=CHOICES.get, horizontal=True,
                    )  # fmt: skip
                    st.select_slider(
                        "Strength", [1, 2, 3], value=2, key=f"{key}-choice-strength",
                        help="1 slightly, 2 clearly, 3 much better (for A or B only)",
                    )  # fmt: skip
                    st.button(
                        "Relabel", key=f"{key}-relabel", icon=":material/edit:",
                        on_click=_relabel, args=(user_id, entry, f"{key}-choice"),
                    )  # fmt: skip
    if st.session_state.pop("review-flash-missing", False):
        st.warning("Pick your judgment before pressing Relabel.")


def _pause(user_id: int, name: str, pause: bool) -> None:
    def work(s) -> str:
        if pause:
            review.pause_labeler(s, by_user_id=user_id, name=name)
            return f"{name} is paused: no new tasks until unpaused."
        review.unpause_labeler(s, by_user_id=user_id, name=name)
        return f"{name} may claim tasks again."

    act(user_id, "review", work)


def pause_controls(user_id: int, labeler_names: list[str]) -> None:
    """Pause or unpause one of the project's labelers (flagged ones first in the list)."""
    if not labeler_names:
        return
    with transaction() as s:
        paused = set(
            s.scalars(
                select(User.name).where(User.name.in_(labeler_names), User.paused_at.is_not(None))
            )
        )
    st.subheader("Pause a labeler")
    st.caption(
        "A paused labeler keeps their account and history but gets no new tasks until "
        "unpaused; their labels stay (reject them in the queue above to drop them)."
    )
    if paused:
        st.caption("Paused now: " + ", ".join(render.inline(n) for n in sorted(paused)))
    name = st.selectbox("Labeler", labeler_names, key="quality-pause-name")
    if name in paused:
        st.button("Unpause", icon=":material/play_arrow:", on_click=_pause,
                  args=(user_id, name, False))  # fmt: skip
    else:
        st.button("Pause", icon=":material/pause:", on_click=_pause,
                  args=(user_id, name, True))  # fmt: skip
