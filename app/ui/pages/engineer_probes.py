"""Engineer · Probes: does the next checkpoint hallucinate less?

Per checkpoint probed (its latest finished probe, `rlhf probe report`): accuracy, abstention
rate and the share of questions it is confidently wrong on, with 95% intervals; then one
probe's per-question results and its sampled answers. Probes are run and exported from the
CLI (`rlhf probe`, `rlhf probe export`): generation needs the model, not a page.
Model answers and questions are untrusted: table cells, or app/ui/render.py.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import auth
from app.ui.actions import show_flash
from app.ui.db import transaction
from app.ui.pages.admin_dashboard import pick_project
from app.ui.render import inert_markdown, untrusted
from labeling import probes
from labeling.errors import RLHFError

SPLITS = list(probes.SPLITS)
REPORT_COLUMNS = {
    "checkpoint": st.column_config.TextColumn("checkpoint"),
    "checkpoint_id": st.column_config.NumberColumn("id"),
    "probe_id": st.column_config.NumberColumn("probe"),
    "questions": st.column_config.NumberColumn("questions"),
    "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
    "accuracy_ci": st.column_config.TextColumn("accuracy 95%"),
    "abstention_rate": st.column_config.NumberColumn("abstains", format="percent"),
    "abstention_rate_ci": st.column_config.TextColumn("abstains 95%"),
    "confidently_wrong_rate": st.column_config.NumberColumn(
        "confidently wrong", format="percent",
        help="questions wrong in at least 80% of their samples, with no abstention",
    ),
    "confidently_wrong_rate_ci": st.column_config.TextColumn("confidently wrong 95%"),
    "unjudged": st.column_config.NumberColumn("unjudged answers"),
}  # fmt: skip
QUESTION_COLUMNS = ["prompt_id", "question", "answer", "split", "samples", "correct",
                    "incorrect", "abstained", "unjudged", "accuracy", "confidently_wrong"]  # fmt: skip


def _interval(ci) -> str:
    low, high = ci
    return "-" if low is None else f"{100 * low:.0f}-{100 * high:.0f}%"


def report_frame(report: dict) -> pd.DataFrame:
    rows = [
        {**{k: r.get(k) for k in REPORT_COLUMNS},
         **{k: _interval(r[k]) for k in REPORT_COLUMNS if k.endswith("_ci")}}
        for r in report["checkpoints"]
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def render() -> None:
    auth.require_action("probe")
    st.title("Probes")
    show_flash()
    st.caption(
        "Where each checkpoint's knowledge ends: it answers the project's questions with gold "
        "answers several times (`rlhf probe`); `rlhf probe export` turns the confidently wrong "
        "ones into 'I don't know' training rows."
    )
    picked = pick_project()
    if picked is None:
        st.info("No projects yet: create one on the Projects page.")
        return
    project_id, _, _ = picked
    split = st.selectbox("Questions", SPLITS, key="probes-split", help="the prompts' split")
    try:
        with transaction() as s:
            report = probes.report(s, project_id, split=split)
            listed = probes.list_probes(s, project_id)
    except RLHFError as exc:
        st.info(inert_markdown(str(exc)))
        return
    st.subheader("Per checkpoint")
    if report["checkpoints"]:
        st.dataframe(report_frame(report), hide_index=True, column_config=REPORT_COLUMNS)
    else:
        st.caption(f"No finished probe has {split} questions yet.")
    if not listed:
        st.caption("No probes yet: `rlhf probe --checkpoint ID --project NAME --samples 5 --json`.")
        return

    st.subheader("One probe")
    by_id = {p["probe_id"]: p for p in listed}
    probe_id = st.selectbox(
        "Probe", list(by_id), key="probes-probe",
        format_func=lambda i: f"#{i} · checkpoint {by_id[i]['checkpoint_id']} · "
        f"{by_id[i]['status']} · {by_id[i]['samples']} samples at T={by_id[i]['temperature']:g}",
    )  # fmt: skip
    try:
        with transaction() as s:
            result = probes.probe_results(s, int(probe_id), project=project_id, texts=True)
    except RLHFError as exc:
        st.info(inert_markdown(str(exc)))
        return
    if result["error"]:
        st.warning(inert_markdown(f"This probe failed: {result['error']}"))
    cols = st.columns(4)
    cols[0].metric("Questions", f"{result['questions']:,}")
    for col, key, title in (
        (cols[1], "accuracy", "Accuracy"),
        (cols[2], "abstention_rate", "Abstains"),
        (cols[3], "confidently_wrong_rate", "Confidently wrong"),
    ):
        value = result[key]
        col.metric(title, "-" if value is None else f"{100 * value:.1f}%")
    frame = pd.DataFrame(
        [{k: q[k] for k in QUESTION_COLUMNS} for q in result["per_question"]],
        columns=QUESTION_COLUMNS,
    )
    st.dataframe(
        frame, hide_index=True,
        column_config={"accuracy": st.column_config.NumberColumn("accuracy", format="percent")},
    )  # fmt: skip
    questions = {q["prompt_id"]: q for q in result["per_question"]}
    if not questions:
        return
    chosen = st.selectbox(
        "Answers to", list(questions), key="probes-question",
        format_func=lambda i: f"#{i} · {questions[i]['question'][:80]}",
    )  # fmt: skip
    question = questions[chosen]
    st.caption("Question")
    untrusted(question["question"])
    st.caption("Gold answer")
    untrusted(question["answer"] or "")
    for answer in question["answers"]:
        st.caption(f"Sample {answer['sample']}: {answer['verdict']}")
        untrusted(answer["text"] or "(empty)")
