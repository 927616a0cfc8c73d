"""Admin · Projects: progress per project, a new project, an existing project's settings.

Buttons run callbacks (before the page re-renders), and each callback re-checks the
caller's role inside its own transaction: a role changed meanwhile applies at once.
Errors keep every field as typed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.ui import auth, state
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from app.ui.render import untrusted
from labeling import arena, projects, stats
from labeling.models import ProjectKind

KINDS = [k.value for k in ProjectKind]
KIND_HELP = {
    "sft": "labelers write ideal answers (demonstrations)",
    "pairwise": "labelers compare two answers",
    "ranking": "labelers order k answers, best first",
    "arena": "side-by-side comparisons of checkpoints",
}
NEW = "project-new-"  # widget keys of the new-project form: NEW + field
SETTINGS = ("overlap", "lease_seconds", "gold_rate", "heldout_fraction", "rank_k", "guidelines",
            "answer_pattern")  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "overlap": 1,
    "lease_seconds": 1800,
    "gold_rate": 0.0,
    "heldout_fraction": 0.1,
    "rank_k": None,
    "guidelines": "",
    "answer_pattern": None,
}


def render() -> None:
    user = auth.require_action("projects.manage")
    st.title("Projects")
    show_flash()
    with transaction() as s:
        rows = stats.project_progress(s)
    if rows:
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            column_order=[
                "name",
                "kind",
                "overlap",
                "tasks",
                "gold",
                "open",
                "done",
                "labels",
                "labels_wanted",
                "progress",
                "created_at",
            ],  # fmt: skip
            column_config={
                "progress": st.column_config.ProgressColumn(
                    "progress", help="labels done / labels wanted", min_value=0.0, max_value=1.0
                ),
                "labels_wanted": st.column_config.NumberColumn(
                    "wanted", help="labels still wanted on open tasks"
                ),
            },
        )
    else:
        st.info("No projects yet: create the first one below.")

    new_tab, edit_tab = st.tabs(["New project", "Edit settings"])
    with new_tab:
        new_project_form(user.id)
    with edit_tab:
        if rows:
            edit_project_form(user.id, {r["id"]: r["name"] for r in rows})
        else:
            st.caption("No project to edit yet.")


def _settings_widgets(prefix: str, values: dict[str, Any]) -> None:
    """The shared settings fields; their values live under prefix + field in session state."""
    left, middle, right = st.columns(3)
    left.number_input(
        "Overlap (labels per item)", min_value=1, max_value=100, step=1,
        value=int(values["overlap"]), key=prefix + "overlap",
        help="how many different labelers label each item",
    )  # fmt: skip
    middle.number_input(
        "Lease (seconds)", min_value=10, step=60, value=int(values["lease_seconds"]),
        key=prefix + "lease_seconds", help="how long a labeler holds an item before it goes back",
    )  # fmt: skip
    right.number_input(
        "Rank k", min_value=2, max_value=20, step=1, value=values["rank_k"],
        key=prefix + "rank_k", placeholder="any", help="answers per ranking item (ranking projects)",
    )  # fmt: skip
    left.number_input(
        "Gold rate", min_value=0.0, max_value=1.0, step=0.01, format="%.2f",
        value=float(values["gold_rate"]), key=prefix + "gold_rate",
        help="share of served items that are gold (known-answer) checks",
    )  # fmt: skip
    middle.number_input(
        "Held-out fraction", min_value=0.0, max_value=0.5, step=0.01, format="%.2f",
        value=float(values["heldout_fraction"]), key=prefix + "heldout_fraction",
        help="share of prompts kept out of training (new prompts only)",
    )  # fmt: skip
    st.text_input(
        "Answer pattern (regex, optional)", value=values["answer_pattern"] or "",
        key=prefix + "answer_pattern", max_chars=500, placeholder=r"e.g. Answer: (\S+)",
        help="where a model answer states its final answer, for verifiable rewards: the first "
        "group of the last match; empty = the last \\boxed{...}, else the last number",
    )  # fmt: skip
    st.text_area(
        "Guidelines (Markdown)", value=values["guidelines"] or "", height=200,
        key=prefix + "guidelines", help="shown to labelers beside every item",
    )  # fmt: skip
    text = st.session_state.get(prefix + "guidelines") or ""
    with st.expander("Guidelines preview", expanded=bool(text), icon=":material/visibility:"):
        if text.strip():
            untrusted(text)  # shown exactly as labelers will see it
        else:
            st.caption("Nothing written yet.")


def _read_settings(prefix: str) -> dict[str, Any]:
    ss = st.session_state
    values = {key: ss.get(prefix + key, DEFAULTS[key]) for key in SETTINGS}
    for key in ("overlap", "lease_seconds"):
        values[key] = int(values[key])
    for key in ("gold_rate", "heldout_fraction"):
        values[key] = float(values[key])
    if values["rank_k"] is not None:
        values["rank_k"] = int(values["rank_k"])
    values["guidelines"] = values["guidelines"] or ""
    pattern = values["answer_pattern"] or ""
    values["answer_pattern"] = pattern if pattern.strip() else None  # spaces may be meant
    return values


def new_project_form(user_id: int) -> None:
    left, right = st.columns(2)
    left.text_input("Name", key=NEW + "name", max_chars=128, placeholder="e.g. helpfulness-v1")
    right.selectbox("Kind", KINDS, key=NEW + "kind", format_func=lambda k: f"{k}: {KIND_HELP[k]}")
    _settings_widgets(NEW, DEFAULTS)
    st.button(
        "Create project", type="primary", key=NEW + "create", on_click=_create, args=(user_id,)
    )


def _create(user_id: int) -> None:
    name = (st.session_state.get(NEW + "name") or "").strip()
    kind = st.session_state.get(NEW + "kind") or KINDS[0]
    values = _read_settings(NEW)

    def action(s) -> str:
        project = projects.create_project(s, name=name, kind=kind, **values)
        return f"Created project {project.name} ({project.kind.value})."

    if act(user_id, "projects.manage", action):
        for key in [NEW + "name", *(NEW + k for k in SETTINGS)]:
            st.session_state.pop(key, None)  # a fresh form for the next one


def edit_project_form(user_id: int, names: dict[int, str]) -> None:
    ids = list(names)
    if st.session_state.get(state.ADMIN_PROJECT_ID) not in ids:
        st.session_state[state.ADMIN_PROJECT_ID] = ids[0]
    project_id = st.selectbox(
        "Project", ids, format_func=names.__getitem__, key=state.ADMIN_PROJECT_ID
    )
    with transaction() as s:
        project = projects.get_project(s, int(project_id))
        current = {key: getattr(project, key) for key in SETTINGS}
        kind = project.kind.value
    st.caption(f"Kind: **{kind}** (fixed once created)")
    prefix = f"project-{project_id}-"
    _settings_widgets(prefix, current)
    st.button(
        "Save settings", type="primary", key=prefix + "save", on_click=_save,
        args=(user_id, int(project_id), prefix),
    )  # fmt: skip
    st.caption(
        "Changing the overlap applies to existing items at once: a higher one reopens done "
        "items, a lower one closes items that already have enough labels."
    )
    if kind == "arena":
        arena_settings_form(user_id, int(project_id))


ARENA_FIELDS = ("auto_enter", "opponents", "include_human", "max_prompts", "min_pair_votes",
                "max_new_tokens", "temperature", "cpu_max_prompts", "cuda_max_prompts")  # fmt: skip


def arena_settings_form(user_id: int, project_id: int) -> None:
    """Arena settings (labeling.arena.DEFAULTS): who enters, against whom, how answers are
    sampled, and how many votes every pair gets before matchmaking favours uncertain pairs."""
    with transaction() as s:
        conf = arena.settings(projects.get_project(s, project_id))
    prefix = f"arena-{project_id}-"
    st.subheader("Arena")
    left, middle, right = st.columns(3)
    left.toggle("New checkpoints enter on their own", value=bool(conf["auto_enter"]),
                key=prefix + "auto_enter")  # fmt: skip
    middle.selectbox(
        "Opponents of a new checkpoint", ["best", "all"], key=prefix + "opponents",
        index=["best", "all"].index(conf["opponents"]),
        format_func={"best": "the current leader", "all": "every contestant"}.get,
    )  # fmt: skip
    right.toggle("Labelers' demonstrations enter as 'human'", value=bool(conf["include_human"]),
                 key=prefix + "include_human")  # fmt: skip
    left.number_input("Votes per pair before matchmaking", min_value=0, step=1,
                      value=int(conf["min_pair_votes"]), key=prefix + "min_pair_votes")  # fmt: skip
    middle.number_input("Max prompts per pair", min_value=1, step=10, value=conf["max_prompts"],
                        placeholder="all", key=prefix + "max_prompts")  # fmt: skip
    right.number_input("Max new tokens", min_value=1, step=16, value=int(conf["max_new_tokens"]),
                       key=prefix + "max_new_tokens")  # fmt: skip
    left.number_input("Temperature", min_value=0.0, max_value=5.0, step=0.1, format="%.2f",
                      value=float(conf["temperature"]), key=prefix + "temperature")  # fmt: skip
    middle.number_input(
        "Prompts an entry answers on CPU", min_value=0, step=1, value=int(conf["cpu_max_prompts"]),
        key=prefix + "cpu_max_prompts", help="0: all of them. A CPU answers slowly; every "
        "contestant answers the same first prompts, so they stay comparable.",
    )  # fmt: skip
    right.number_input(
        "Prompts an entry answers on a GPU", min_value=0, step=1,
        value=int(conf["cuda_max_prompts"]), key=prefix + "cuda_max_prompts", help="0: all.",
    )  # fmt: skip
    st.button("Save arena settings", key=prefix + "save", on_click=_save_arena,
              args=(user_id, project_id, prefix))  # fmt: skip


def _save_arena(user_id: int, project_id: int, prefix: str) -> None:
    values = {key: st.session_state.get(prefix + key) for key in ARENA_FIELDS}

    def action(s) -> str:
        project = projects.get_project(s, project_id)
        arena.configure(s, project, **values)
        if values["max_prompts"] is None:  # "all": configure() skips None, so clear it here
            project.settings = {
                **project.settings, "arena": {**project.settings["arena"], "max_prompts": None}
            }  # fmt: skip
        return f"Saved the arena settings of {project.name}."

    act(user_id, "projects.manage", action)


def _save(user_id: int, project_id: int, prefix: str) -> None:
    wanted = _read_settings(prefix)

    def action(s) -> str:
        project = projects.get_project(s, project_id)
        changed = {k: v for k, v in wanted.items() if getattr(project, k) != v}
        if not changed:
            return f"No changes to {project.name}."
        projects.update_project(s, project, **changed)
        return f"Saved {project.name}: {', '.join(sorted(changed))}."

    act(user_id, "projects.manage", action)
