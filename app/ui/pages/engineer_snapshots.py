"""Engineer · Snapshots: the frozen label sets training reads, their files, and a new one.

A snapshot never changes once written (labeling.snapshots); the download buttons hand out
its Parquet files as they are on disk, resolved under the data root.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.ui import auth, state
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from app.ui.render import inert_markdown, inline
from labeling import projects, snapshot_quality, snapshots
from labeling.errors import RLHFError
from labeling.models import Origin, ProjectKind, SnapshotKind

KINDS = [k.value for k in SnapshotKind]
AGGREGATES = list(snapshot_quality.AGGREGATES)
ORIGINS = ["any", *(o.value for o in Origin)]
MAX_LISTED = 200


def create_snapshot_form(user_id: int, project_id: int, *, key: str) -> None:
    """Kind, gold and origin filters, the label-quality options, and a Create button (used
    here and on the dashboard)."""
    with transaction() as s:
        project_kind = projects.get_project(s, project_id).kind
        labelers = snapshot_quality.labeler_names(s, project_id)
    default = KINDS.index("sft" if project_kind == ProjectKind.sft else "preference")
    left, middle, right = st.columns(3)
    left.selectbox(
        "Snapshot kind", KINDS, index=default, key=f"{key}-kind",
        help="sft: demonstrations; preference: chosen/rejected pairs; kto: unpaired good/bad",
    )  # fmt: skip
    middle.selectbox(
        "Origin", ORIGINS, key=f"{key}-origin", help="only labels given by labelers, or imported"
    )
    right.checkbox(
        "Include gold items", key=f"{key}-gold", help="labels on quality-check items too"
    )
    with st.expander("Label quality: which labels to trust"):
        first, second = st.columns(2)
        first.selectbox(
            "Aggregate overlap", AGGREGATES, key=f"{key}-aggregate",
            help="none: every label its own row; majority / dawid-skene: one row per item with "
            "a confidence column (preference and kto snapshots of pairwise projects)",
        )  # fmt: skip
        second.number_input(
            "Minimum competence", min_value=0.0, max_value=1.0, value=None, step=0.05,
            key=f"{key}-min-competence",
            help="drop the labels of labelers whose Dawid–Skene competence (Label quality "
            "page) is below this; empty: no minimum",
        )  # fmt: skip
        st.multiselect(  # option labels are shown as plain text, never as Markdown
            "Leave out labelers", labelers, key=f"{key}-exclude",
            help="every label of these labelers leaves the snapshot",
        )  # fmt: skip
        first.checkbox(
            "Leave out rejected labels", value=True, key=f"{key}-exclude-rejected",
            help="labels a reviewer rejected; relabels apply either way",
        )  # fmt: skip
        second.checkbox(
            "Fold confidence into margin", key=f"{key}-confidence-margin",
            help="with aggregation: margin = the agreeing labels' median margin x confidence",
        )  # fmt: skip
    st.button(
        "Create snapshot", type="primary", key=f"{key}-create", icon=":material/inventory_2:",
        on_click=_create, args=(user_id, project_id, key),
    )  # fmt: skip


def _create(user_id: int, project_id: int, key: str) -> None:
    kind = st.session_state.get(f"{key}-kind") or "preference"
    origin = st.session_state.get(f"{key}-origin") or "any"
    include_gold = bool(st.session_state.get(f"{key}-gold"))
    quality = {
        "aggregate": st.session_state.get(f"{key}-aggregate") or "none",
        "min_competence": st.session_state.get(f"{key}-min-competence"),
        "exclude_labelers": list(st.session_state.get(f"{key}-exclude") or ()),
        "exclude_rejected": bool(st.session_state.get(f"{key}-exclude-rejected", True)),
        "confidence_margin": bool(st.session_state.get(f"{key}-confidence-margin")),
    }
    made: dict[str, int] = {}

    def action(s) -> str:
        snap, created = snapshots.create_snapshot(
            s, project=project_id, kind=kind, created_by=user_id, include_gold=include_gold,
            origin=None if origin == "any" else origin, **quality,
        )  # fmt: skip
        info = snapshots.describe(s, snap)
        made["id"] = info["id"]
        verb = "Created" if created else "Unchanged labels: the existing"
        stats = info["stats"]
        dropped = [
            f"{stats[k]} {k.replace('_', ' ')}" for k in snapshot_quality.LEFT_OUT if stats.get(k)
        ]  # fmt: skip
        return (
            f"{verb} snapshot {info['id']} ({info['kind']}): {info['rows']} rows, "
            f"{info['splits']['train']} train / {info['splits']['heldout']} held out; "
            f"sha256 {info['sha256']}" + (f"; left out: {', '.join(dropped)}" if dropped else "")
        )

    if act(user_id, "snapshot.create", action):
        st.session_state[state.SNAPSHOT_ID] = made["id"]


def _reader(path: Path):
    """The file's bytes, read only when the download is clicked."""

    def read() -> bytes:
        return path.read_bytes()

    return read


def render() -> None:
    user = auth.require_action("snapshot.read")
    st.title("Snapshots")
    show_flash()
    with transaction() as s:
        listed = [snapshots.describe(s, snap) for snap in snapshots.list_snapshots(s)[:MAX_LISTED]]
        names = {p.id: p.name for p in projects.list_projects(s)}

    if listed:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "id": r["id"],
                        "project": r["project"],
                        "kind": r["kind"],
                        "aggregate": r["filters"].get("aggregate", "none"),
                        "rows": r["rows"],
                        "train": r["splits"]["train"],
                        "heldout": r["splits"]["heldout"],
                        "sha256": r["sha256"][:12],
                        "created_by": r["created_by"],
                        "created_at": r["created_at"],
                    }  # fmt: skip
                    for r in listed
                ]
            ),
            hide_index=True,
        )
        details(listed)
    else:
        st.info("No snapshots yet: create one below.")

    st.subheader("Create a snapshot")
    if not names:
        st.caption("No projects yet.")
        return
    ids = list(names)
    if st.session_state.get(state.ADMIN_PROJECT_ID) not in ids:
        st.session_state[state.ADMIN_PROJECT_ID] = ids[0]
    project_id = st.selectbox(
        "Project", ids, format_func=names.__getitem__, key=state.ADMIN_PROJECT_ID
    )
    create_snapshot_form(user.id, int(project_id), key="snapshots-create")


def details(listed: list[dict]) -> None:
    st.subheader("Details")
    by_id = {r["id"]: r for r in listed}
    if st.session_state.get(state.SNAPSHOT_ID) not in by_id:
        st.session_state[state.SNAPSHOT_ID] = listed[0]["id"]
    snapshot_id = st.selectbox(
        "Snapshot", list(by_id), key=state.SNAPSHOT_ID,
        format_func=lambda i: f"#{i} {by_id[i]['project']} {by_id[i]['kind']} "
        f"({by_id[i]['rows']} rows)",
    )  # fmt: skip
    info = by_id[snapshot_id]
    st.markdown(f"sha256 `{info['sha256']}`")
    st.caption(inert_markdown(f"path: {info['path']}"))
    left, right = st.columns(2)
    left.write("Stats")
    left.json(info["stats"], expanded=False)
    right.write("Filters")
    right.json(info["filters"], expanded=False)
    try:
        with transaction() as s:
            files = snapshots.snapshot_files(snapshots.get_snapshot(s, snapshot_id))
    except (RLHFError, ValueError) as exc:
        st.error(inert_markdown(str(exc)))
        return
    cols = st.columns(3)
    for col, (split, path) in zip(cols, files.items(), strict=True):
        stem = f"snapshot-{snapshot_id}-{info['kind']}-{split}"
        if not path.is_file():
            col.caption(f"{inline(path.name)}: missing on disk")
            continue
        json_file = split == "manifest"
        col.download_button(
            f"{split} ({path.stat().st_size / 1024:.0f} KiB)",
            data=_reader(path),
            file_name=f"{stem}.json" if json_file else f"{stem}.parquet",
            mime="application/json" if json_file else "application/vnd.apache.parquet",
            key=f"snapshot-{snapshot_id}-{split}-download",
            icon=":material/download:",
            on_click="ignore",
        )
