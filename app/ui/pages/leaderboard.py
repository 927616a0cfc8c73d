"""Leaderboard (every role): Bradley–Terry ratings of an arena's contestants with confidence
intervals, how fragile the order is (flip votes, provisional models, sampling shares), a
win-rate heatmap, votes over time and a per-category view.

The maths is labeling/ratings/leaderboard.py and labeling/ratings/robustness.py;
labeling.arena.leaderboard_view turns the arena's votes into battles and fits them. Model names come from the checkpoint registry and are shown as
data (table cells, chart labels), never as Markdown or HTML.
"""

from __future__ import annotations

import hashlib

import altair as alt
import pandas as pd
import streamlit as st

from app.ui import auth
from app.ui.db import transaction
from app.ui.render import inert_markdown
from labeling import arena
from labeling import labeler_views as lv
from labeling.errors import RLHFError
from labeling.models import ProjectKind
from labeling.ratings.robustness import DEFAULT_PROVISIONAL_VOTES, robustness

ALL = "All categories"


def _settings() -> tuple[dict, int]:
    with st.expander("Settings", icon=":material/tune:"):
        cols = st.columns(4)
        ci = cols[0].selectbox("Intervals", ["bootstrap", "sandwich"], key="lb-ci")
        rounds = cols[1].number_input(
            "Bootstrap rounds", 10, 1000, 100, step=50, key="lb-rounds",
            disabled=ci != "bootstrap",
        )  # fmt: skip
        ties = cols[2].selectbox(
            "Ties", ["half", "davidson"], key="lb-ties",
            format_func={"half": "half a win", "davidson": "Davidson model"}.get,
        )  # fmt: skip
        min_votes = cols[3].number_input("Min. votes to rank", 1, 10_000, 1, key="lb-min")
        style = st.toggle(
            "Control for length and style", key="lb-style",
            help="Fits answer length, headers, lists and bold text as extra factors, so a "
            "model is not rated up just for writing longer or fancier answers.",
        )  # fmt: skip
        provisional = st.number_input(
            "Provisional below (votes)", 1, 100_000, DEFAULT_PROVISIONAL_VOTES, key="lb-provisional",
            help="Models with fewer votes are listed apart as provisional instead of being "
            "ranked.",
        )  # fmt: skip
    return dict(
        ci=ci, bootstrap=int(rounds) if ci == "bootstrap" else 0, ties=ties,
        min_votes=int(min_votes), style=style,
    ), int(provisional)  # fmt: skip


@st.cache_data(max_entries=16, show_spinner="Checking how fragile the ranking is...")
def _robustness(fingerprint: str, _board, provisional_votes: int):
    """robustness() once per fitted board: it refits the arena many times (seconds on a big
    one), and every click on this page reruns it. The fingerprint stands for the board."""
    return robustness(_board, provisional_votes=provisional_votes)


def _fingerprint(project_id: int, category: str, board) -> str:
    """What robustness reads of a fitted board: its rows, the battles between each two
    models and the fit's settings; a new vote changes them, so it is recomputed."""
    digest = hashlib.sha256(repr((project_id, category, board.rows, board.models,
                                  board.settings, board.n_battles)).encode())  # fmt: skip
    digest.update(board.battle_counts.tobytes())
    return digest.hexdigest()


def render() -> None:
    auth.require_action("leaderboard")
    st.title("Leaderboard")
    with transaction() as s:
        projects = lv.labeler_projects(s, (ProjectKind.arena,))
    if not projects:
        st.info("There are no arena projects yet.")
        return
    names = {p.id: p.name for p in projects}
    project_id = st.selectbox("Arena", list(names), format_func=names.__getitem__, key="lb-arena")
    fit_kwargs, provisional_votes = _settings()
    category = st.session_state.get("lb-category", ALL)
    try:
        with transaction() as s:
            view = arena.leaderboard_view(
                s, project_id, category=None if category == ALL else category, **fit_kwargs
            )
        fragility = _robustness(
            _fingerprint(project_id, category, view.board), view.board, provisional_votes
        )
    except RLHFError as exc:
        st.error(inert_markdown(str(exc)))
        return
    if view.categories:
        st.selectbox("Category", [ALL, *view.categories], key="lb-category")
    board = view.board
    for message in board.messages:
        st.info(inert_markdown(message))
    if not board.rows:
        return

    for warning in fragility.warnings:
        st.warning(inert_markdown(warning))
    fitted = {r.model: r for r in board.rows}

    def row(r) -> dict:
        f = fitted[r.model]
        return {
            "Rank": r.rank,
            "Model": r.model,
            "Rating": None if r.rating is None else round(r.rating, 1),
            "95% CI": None if r.ci_low is None else f"{r.ci_low:.1f} – {r.ci_high:.1f}",
            "Votes": r.votes,
            "Flip votes": r.flip_votes,
            "Share of battles": f"{r.battle_share:.1%}",
            "Wins": f.wins,
            "Losses": f.losses,
            "Ties": f.ties,
            "Note": (r.provisional_reason if r.provisional else r.note) or "",
        }

    main = [row(r) for r in fragility.rows if not r.provisional]
    if main:
        st.dataframe(pd.DataFrame(main), hide_index=True, width="stretch", key="lb-table")
        st.caption(
            "Flip votes: the fewest votes whose removal puts the next model below level with or "
            "above this one (an upper bound found greedily; exact on small arenas)."
        )
    apart = [row(r) for r in fragility.rows if r.provisional]
    if apart:
        st.subheader("Provisional (not ranked yet)")
        table = pd.DataFrame(apart).drop(columns=["Rank", "Flip votes"])
        st.dataframe(table, hide_index=True, width="stretch", key="lb-provisional-table")

    ranked = [r for r in board.rows if r.ranked and r.rating is not None]
    if ranked:
        st.subheader("Ratings with confidence intervals")
        bars = pd.DataFrame(
            [
                {"model": r.model, "rating": r.rating, "low": r.ci_low, "high": r.ci_high}
                for r in ranked
            ]  # fmt: skip
        )
        order = list(bars["model"])
        base = alt.Chart(bars).encode(y=alt.Y("model:N", sort=order, title=None))
        chart = base.mark_rule().encode(
            x=alt.X("low:Q", scale=alt.Scale(zero=False), title="rating"), x2="high:Q"
        ) + base.mark_point(filled=True, size=60).encode(
            x="rating:Q", tooltip=["model", "rating", "low", "high"]
        )
        st.altair_chart(chart, width="stretch")

    shares = pd.DataFrame(
        [{"model": r.model, "share": r.battle_share, "votes": r.votes} for r in fragility.rows]
    )
    if len(shares) >= 2:
        st.subheader("Share of battles (sampling)")
        ratio = fragility.sampling_ratio
        st.caption(
            f"Largest share / smallest: {ratio:.1f}x" if ratio is not None else "One model only"
        )
        bar = (
            alt.Chart(shares)
            .mark_bar()
            .encode(
                x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of battle places"),
                y=alt.Y("model:N", sort="-x", title=None),
                tooltip=["model", alt.Tooltip("share:Q", format=".1%"), "votes"],
            )
        )
        st.altair_chart(bar, width="stretch")

    if len(board.models) >= 2:
        st.subheader("Win rate (row model against column model)")
        counts = {m: i for i, m in enumerate(board.models)}
        cells = [
            {"row": row["model"], "column": other, "win rate": rate,
             "battles": int(board.battle_counts[counts[row["model"]], counts[other]])}
            for row in board.win_rate_table()
            for other, rate in row.items()
            if other != "model" and rate is not None
        ]  # fmt: skip
        if cells:
            grid = alt.Chart(pd.DataFrame(cells)).encode(
                x=alt.X("column:N", sort=board.models, title=None),
                y=alt.Y("row:N", sort=board.models, title=None),
                tooltip=["row", "column", "win rate", "battles"],
            )  # fmt: skip
            heat = grid.mark_rect().encode(
                color=alt.Color("win rate:Q", scale=alt.Scale(domain=[0, 1], scheme="redblue"))
            ) + grid.mark_text(baseline="middle").encode(  # the numbers, not only the colour
                text=alt.Text("win rate:Q", format=".0%"),
                color=alt.condition(
                    "abs(datum['win rate'] - 0.5) > 0.3", alt.value("white"), alt.value("black")
                ),
            )
            st.altair_chart(heat, width="stretch")

    if view.votes_per_day:
        st.subheader("Votes over time")
        st.bar_chart(pd.DataFrame(view.votes_per_day).set_index("day"))
