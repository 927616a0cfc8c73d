"""Admin / engineer · Import: upload a JSONL, JSON, CSV or Parquet file into a project.

The upload is written to a temporary file and handed to the same importer the CLI uses
(`rlhf import`), in one transaction: all or nothing unless "skip invalid rows" is ticked.
The page is a thin wrapper around `import_upload`, which takes bytes and a file name.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.ui import auth
from app.ui.db import transaction
from app.ui.render import inert_markdown
from labeling import importer, projects
from labeling.accounts import policies, users
from labeling.errors import RLHFError
from labeling.import_formats import FORMATS, ColumnMap
from labeling.models import ProjectKind

EXTENSIONS = ("jsonl", "json", "csv", "parquet")
FORMAT_CHOICES = ["auto", *FORMATS]
DEFAULT_MAX_MB = 50  # `rlhf serve --max-upload-mb` sets Streamlit's server.maxUploadSize
MAX_ERRORS_SHOWN = 200


@dataclass
class ImportOutcome:
    ok: bool
    message: str
    summary: dict[str, Any] | None = None  # ImportResult.as_dict()
    problems: list[dict[str, Any]] = field(default_factory=list)  # per-line errors or skips


def max_upload_bytes() -> int:
    try:
        mb = int(st.get_option("server.maxUploadSize"))
    except Exception:
        mb = DEFAULT_MAX_MB
    return max(1, mb) * 1024 * 1024


def import_upload(
    *,
    user_id: int,
    project_id: int,
    filename: str,
    data: bytes,
    format: str = "auto",
    skip_invalid: bool = False,
    unlabeled: bool = False,
    max_bytes: int | None = None,
    column_map: str = "",
    value_map: str = "",
) -> ImportOutcome:
    """Check the upload (extension, size, mapping), then import it in one transaction.

    `column_map` and `value_map` are the CLI's --map and --map-values texts; reading is
    capped by labeling.import_formats' default Limits."""
    name = Path((filename or "").replace("\\", "/")).name
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    limit = max_bytes if max_bytes is not None else max_upload_bytes()
    if extension not in EXTENSIONS:
        return ImportOutcome(
            False, f"{name or 'the file'}: upload a .{', .'.join(EXTENSIONS)} file"
        )
    if len(data) > limit:
        return ImportOutcome(
            False, f"{name} is {len(data) / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB"
        )
    if not data:
        return ImportOutcome(False, f"{name} is empty")
    try:
        mapping = ColumnMap.parse(column_map, value_map)
    except RLHFError as exc:
        return ImportOutcome(False, str(exc).replace("--map-values", "Value mapping")
                             .replace("--map", "Column mapping"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rlhf-upload-") as tmp:
        path = Path(tmp) / f"upload.{extension}"
        try:
            path.write_bytes(data)
        except OSError as exc:
            return ImportOutcome(False, f"cannot store the upload: {exc.strerror or exc}")
        try:
            with transaction() as s:
                users.require_role(s, user_id, *policies.allowed("import"))
                result = importer.import_file(
                    s, project=int(project_id), path=path, format=format,
                    skip_invalid=skip_invalid, unlabeled=unlabeled, source=name[:200],
                    mapping=mapping,
                )  # fmt: skip
        except importer.ImportFailed as exc:
            summary = exc.result.as_dict()
            head = str(exc).split("\n", 1)[0].replace("--skip-invalid", '"Skip invalid rows"')
            return ImportOutcome(False, head, summary, summary["errors"][:MAX_ERRORS_SHOWN])
        except RLHFError as exc:
            return ImportOutcome(False, str(exc))
    summary = result.as_dict()
    message = (
        f"Imported {result.imported} of {result.rows_read} rows ({result.format}) into "
        f"{result.project}: {result.prompts_added} prompts, {result.responses_added} responses, "
        f"{result.tasks_added} tasks, {result.labels_added} labels; "
        f"{result.duplicates} duplicates skipped."
    )
    return ImportOutcome(True, message, summary, summary["skipped"][:MAX_ERRORS_SHOWN])


def render() -> None:
    user = auth.require_action("import")
    st.title("Import")
    with transaction() as s:
        choices = {p.id: (p.name, p.kind.value) for p in projects.list_projects(s)}
    if not choices:
        st.info("No projects yet: an admin creates one on the Projects page first.")
        return
    project_id = st.selectbox(
        "Project", list(choices), format_func=lambda i: f"{choices[i][0]} ({choices[i][1]})",
        key="import-project",
    )  # fmt: skip
    accepts = importer.ACCEPTS[ProjectKind(choices[project_id][1])]
    st.caption(f"A {choices[project_id][1]} project takes: {', '.join(accepts)}.")
    upload = st.file_uploader(
        "File (JSON lines, JSON array, CSV or Parquet)", type=list(EXTENSIONS), key="import-file"
    )
    left, middle, right = st.columns(3)
    fmt = left.selectbox("Format", FORMAT_CHOICES, key="import-format",
                         help="auto: detected from the keys of the rows")  # fmt: skip
    skip_invalid = middle.checkbox(
        "Skip invalid rows", key="import-skip-invalid",
        help="import the good rows and list the bad ones (otherwise: all or nothing)",
    )  # fmt: skip
    unlabeled = right.checkbox(
        "Unlabeled", key="import-unlabeled",
        help="preference pairs become comparison tasks for labelers, without the imported choice",
    )  # fmt: skip
    mapped, values = st.columns(2)
    column_map = mapped.text_input(
        "Column mapping", key="import-map", placeholder="prompt=instruction,a=output_1,b=output_2",
        help="rename the file's columns to our fields (FIELD=COLUMN, comma-separated)",
    )  # fmt: skip
    value_map = values.text_input(
        "Value mapping", key="import-map-values", placeholder="choice:1=a,2=b,0=tie",
        help="translate a field's values (FIELD:FROM=TO,...; several fields with ';')",
    )  # fmt: skip
    if not st.button("Import", type="primary", key="import-go", disabled=upload is None):
        return
    with st.spinner("Importing..."):
        outcome = import_upload(
            user_id=user.id, project_id=int(project_id), filename=upload.name,
            data=upload.getvalue(), format=fmt, skip_invalid=skip_invalid, unlabeled=unlabeled,
            column_map=column_map, value_map=value_map,
        )  # fmt: skip
    show_outcome(outcome)


def show_outcome(outcome: ImportOutcome) -> None:
    (st.success if outcome.ok else st.error)(inert_markdown(outcome.message))
    summary = outcome.summary
    if summary:
        cols = st.columns(5)
        for col, key in zip(cols, ("rows_read", "imported", "duplicates", "tasks_added",
                                   "labels_added"), strict=True):  # fmt: skip
            col.metric(key.replace("_", " "), summary[key])
        for note in summary["notes"]:
            st.info(inert_markdown(note))
    if outcome.problems:
        total = len(summary["errors"] if not outcome.ok else summary["skipped"]) if summary else 0
        st.subheader("Invalid rows" if not outcome.ok else "Skipped rows")
        if total > len(outcome.problems):
            st.caption(f"The first {len(outcome.problems)} of {total}.")
        st.dataframe(
            pd.DataFrame(outcome.problems, columns=["where", "error"]),
            hide_index=True,
            width="stretch",
        )
