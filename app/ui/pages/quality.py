"""Label quality (admins and engineers): who to trust in one project, and acting on it.

Agreement with 95% intervals and over time, one row per labeler with the flags (position
bias, too fast, low competence, low gold accuracy), the left-answer win rate per labeler
against 1/2; then the review queue and pausing a labeler (app/ui/quality_review.py).
The figures come from labeling.quality.quality_report (what `rlhf quality --json` prints).
Labeler and project names are shown as data (table cells, chart labels) or through
app/ui/render.py, never as Markdown.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from app.ui import auth, quality_review, queue_order
from app.ui.actions import show_flash
from app.ui.db import transaction
from app.ui.pages.admin_dashboard import pick_project
from app.ui.render import inert_markdown
from labeling.accounts import policies
from labeling.errors import RLHFError
from labeling.quality import quality_report

STATISTICS = {
    "raw": "Raw agreement",
    "fleiss_kappa": "Fleiss' kappa",
    "alpha_nominal": "Krippendorff's alpha (choice)",
    "alpha_ordinal": "Krippendorff's alpha (strength)",
    "kendall_tau": "Kendall's tau between labelers",
    "kendall_tau_to_consensus": "Kendall's tau to the consensus",
}
COLUMNS = {
    "name": st.column_config.TextColumn("labeler"),
    "flags": st.column_config.ListColumn("flags"),
    "labels": st.column_config.NumberColumn("labels"),
    "competence": st.column_config.NumberColumn("competence", format="%.2f",
                                                help="Dawid–Skene: P(label = true answer)"),
    "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="percent"),
    "gold_n": st.column_config.NumberColumn("gold items"),
    "left_win_rate": st.column_config.NumberColumn("left wins", format="percent"),
    "left_p_value": st.column_config.NumberColumn("p (left)", format="%.2g"),
    "median_seconds": st.column_config.NumberColumn("median s", format="%.1f"),
    "too_fast_share": st.column_config.NumberColumn("too fast", format="percent"),
    "kappa_with_others": st.column_config.NumberColumn("kappa with others", format="%.2f"),
    "kendall_tau_to_consensus": st.column_config.NumberColumn("tau to consensus", format="%.2f"),
}  # fmt: skip


def _agreement_frame(agreement: dict) -> pd.DataFrame:
    rows = [
        {"statistic": title, "value": agreement[key]["value"],
         "ci_low": agreement[key]["ci_low"], "ci_high": agreement[key]["ci_high"]}
        for key, title in STATISTICS.items()
        if agreement.get(key) and agreement[key]["value"] is not None
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["statistic", "value", "ci_low", "ci_high"])


def _interval_chart(frame: pd.DataFrame, y: str, x_title: str, reference: float | None):
    base = alt.Chart(frame).encode(y=alt.Y(f"{y}:N", sort=None, title=None))
    chart = base.mark_rule().encode(
        x=alt.X("ci_low:Q", title=x_title, scale=alt.Scale(zero=False)), x2="ci_high:Q"
    ) + base.mark_point(filled=True, size=60).encode(
        x="value:Q", tooltip=[f"{y}:N", alt.Tooltip("value:Q", format=".3f")]
    )  # fmt: skip
    if reference is not None:
        chart += (
            alt.Chart(pd.DataFrame({"x": [reference]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
        )
    return chart


def render() -> None:
    user = auth.require_action("quality")
    st.title("Label quality")
    show_flash()
    picked = pick_project()
    if picked is None:
        st.info("No projects yet: create one on the Projects page.")
        return
    project_id, _, kind = picked
    rounds = st.number_input("Bootstrap rounds", 0, 10_000, 200, step=100, key="quality-rounds")
    try:
        with transaction() as s:
            report = quality_report(s, project_id, bootstrap=int(rounds))
    except RLHFError as exc:  # an sft project: one sentence
        st.info(inert_markdown(str(exc)))
        return
    for note in report["notes"]:
        st.caption(inert_markdown(note))
    if not report["labelers"]:
        if user.role in policies.allowed("queue.prioritise"):
            queue_order.controls(user.id, project_id, kind)
        return

    cols = st.columns(4)
    cols[0].metric("Labels", f"{report['labels']:,}")
    cols[1].metric("Items with 2+ labels", f"{report['items']['with_overlap']:,}")
    position = report.get("position_bias")
    if position and position["left_win_rate"] is not None:
        cols[2].metric(
            "Left answer wins", f"{100 * position['left_win_rate']:.1f}%",
            help=f"of {position['decisive']:,} decisive labels; p = {position['p_value']:.2g}",
        )  # fmt: skip
    flagged = sum(bool(r["flags"]) for r in report["labelers"])
    cols[3].metric("Flagged labelers", f"{flagged} of {len(report['labelers'])}")

    st.subheader("Agreement")
    if report["agreement"] is None:
        st.caption("No item has two labels yet.")
    else:
        frame = _agreement_frame(report["agreement"])
        st.altair_chart(
            _interval_chart(frame, "statistic", "value (95% interval)", None), width="stretch"
        )
        st.dataframe(frame, hide_index=True)
        _over_time(report.get("over_time") or [])
        pairs = report["agreement"].get("cohen_kappa_pairs") or report["agreement"].get(
            "kendall_tau_pairs"
        )
        if pairs:
            st.caption("Pairs of labelers with enough shared items, least agreeing first")
            st.dataframe(pd.DataFrame(pairs), hide_index=True)

    st.subheader("Labelers")
    labelers = pd.DataFrame(report["labelers"])
    labelers = labelers.assign(flagged=labelers["flags"].map(len)).sort_values(
        ["flagged", "labels"], ascending=[False, False]
    )
    st.dataframe(
        labelers, hide_index=True, column_config=COLUMNS,
        column_order=[c for c in COLUMNS if c in labelers and labelers[c].notna().any()],
    )  # fmt: skip

    if "left_ci_low" in labelers and labelers["left_win_rate"].notna().any():
        st.subheader("Left answer win rate")
        st.caption(
            "Share of decisive labels where the answer shown on the left won, with a 95% "
            "interval: an unbiased labeler sits near 50%."
        )
        bars = labelers.rename(columns={"left_win_rate": "value", "left_ci_low": "ci_low",
                                        "left_ci_high": "ci_high"})  # fmt: skip
        bars = bars[bars["value"].notna()][["name", "value", "ci_low", "ci_high"]]
        st.altair_chart(
            _interval_chart(bars, "name", "left wins (95% interval)", 0.5), width="stretch"
        )

    if user.role in policies.allowed("review"):
        quality_review.review_queue(user.id, project_id, report)  # the report read above
        flagged_first = labelers.sort_values("flagged", ascending=False, kind="stable")
        quality_review.pause_controls(user.id, list(flagged_first["name"]))
    if user.role in policies.allowed("queue.prioritise"):
        queue_order.controls(user.id, project_id, kind)


def _over_time(trend: list[dict]) -> None:
    """Raw agreement per day or week with its Wilson interval (labeling/quality/trend.py)."""
    frame = pd.DataFrame([t for t in trend if t["agreement"] is not None])
    if len(frame) < 2:
        return  # one point is no trend
    st.caption(f"Agreement over time: pairs of labels on one item, per {frame['period_kind'][0]}")
    band = alt.Chart(frame).mark_area(opacity=0.25).encode(
        x=alt.X("period:T", title=None), y=alt.Y("ci_low:Q", title="raw agreement",
        scale=alt.Scale(domain=[0, 1])), y2="ci_high:Q",
    )  # fmt: skip
    line = alt.Chart(frame).mark_line(point=True).encode(
        x="period:T", y="agreement:Q",
        tooltip=["period:T", alt.Tooltip("agreement:Q", format=".2f"), "pairs:Q", "labels:Q"],
    )  # fmt: skip
    st.altair_chart(band + line, width="stretch")
