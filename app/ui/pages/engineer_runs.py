"""Engineer · Runs and checkpoints: every training run, cancelling one, its metrics, its
checkpoint's arena entries ("arena entry demo-arena: 4/8 prompts", labeling/arena/entries.py),
and the checkpoints with their lineage (parent checkpoint, the run that made it, its snapshot).
An RL run's over-optimisation watch (training/watch.py): its held-out reward, judge, KL,
length and distinct-n against the step, the reward against the KL, divergence warnings, and
why the run stopped and which watch point it kept. Its gold checks (labeling/arena/
gold_checks.py): per checkpoint saved at a --gold_check_steps step, the watch's reward at
that step beside the labelers' win rate against the base, with its 95% interval, in a table
and a chart."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import auth, state
from app.ui import render as show
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from labeling import arena
from labeling.models import RunStatus
from labeling.registry import runs

LIVE = ("queued", "running")
# the checkpoint whose evaluation is shown (a session-state key; could join app/ui/state.py)
CHECKPOINT_KEY = "engineer_runs_checkpoint_id"
EVALUATION_COLUMNS = ["accuracy", "ci_low", "ci_high", "longer_wins_accuracy", "ece", "n"]
RUN_COLUMNS = ["id", "kind", "status", "project", "snapshot_id", "base_checkpoint_id",
               "reward_checkpoint_id", "created_by", "created_at", "started_at", "finished_at"]  # fmt: skip


def render() -> None:
    user = auth.require_action("runs.read")
    st.title("Runs and checkpoints")
    show_flash()
    with transaction() as s:
        rows = runs.describe_runs(s, runs.list_runs(s))
        checkpoints = runs.list_checkpoints(s)

    st.subheader("Training runs")
    if not rows:
        st.info("No training runs yet: queue one on Launch training.")
    else:
        table = pd.DataFrame(rows)
        table["status"] = [status_text(r) for r in rows]
        st.dataframe(table, hide_index=True, column_order=RUN_COLUMNS)
        run_details(user.id, rows)

    st.subheader("Checkpoints")
    if not checkpoints:
        st.caption("No checkpoints yet: runs record them when they finish.")
    else:
        table = pd.DataFrame(checkpoints).drop(columns=["evaluation"])
        for key in EVALUATION_COLUMNS:  # reward checkpoints: reward/evaluate.py's figures
            table[key] = pd.to_numeric(
                pd.Series([(c["evaluation"] or {}).get(key) for c in checkpoints]),
                errors="coerce",
            )
        st.dataframe(
            table,
            hide_index=True,
            column_order=[
                "id",
                "kind",
                "name",
                "parent",
                "parent_id",
                "run_id",
                "run_kind",
                "project",
                "snapshot_id",
                "snapshot_kind",
                "base_model",
                *EVALUATION_COLUMNS,
                "created_at",
            ],  # fmt: skip
            column_config={
                "parent": "parent checkpoint",
                "run_kind": "made by a",
                "accuracy": st.column_config.NumberColumn("held-out accuracy", format="%.3f"),
                "ci_low": st.column_config.NumberColumn("95% low", format="%.3f"),
                "ci_high": st.column_config.NumberColumn("95% high", format="%.3f"),
                "longer_wins_accuracy": st.column_config.NumberColumn(
                    "longer wins", format="%.3f",
                    help="the baseline 'the longer answer wins' on the same pairs",
                ),
                "ece": st.column_config.NumberColumn(
                    "ECE", format="%.3f", help="calibration error of sigmoid(score difference)"
                ),
                "n": st.column_config.NumberColumn("pairs", format="%d"),
            },
        )  # fmt: skip
        evaluation_details(checkpoints)


def evaluation_details(checkpoints: list[dict]) -> None:
    """One checkpoint's whole evaluation (by strength, ties, score mean / std ...)."""
    evaluated = [c for c in checkpoints if c["evaluation"]]
    if not evaluated:
        return
    by_id = {c["id"]: c for c in evaluated}
    checkpoint_id = st.selectbox(
        "Checkpoint evaluation", list(by_id), key=CHECKPOINT_KEY,
        format_func=lambda i: f"#{i} {by_id[i]['kind']} · {by_id[i]['name']}",
    )  # fmt: skip
    evaluation = by_id[checkpoint_id]["evaluation"]
    strengths = evaluation.get("accuracy_by_strength") or {}
    if strengths:
        st.dataframe(
            pd.DataFrame([{"strength": k, **v} for k, v in strengths.items()]),
            hide_index=True,
            column_config={"accuracy": st.column_config.NumberColumn(format="%.3f")},
        )
    st.json(evaluation, expanded=False)


def status_text(run: dict) -> str:
    if run["stale"]:
        return (
            f"running? no heartbeat for {run['heartbeat_age_s'] / 60:.0f} min: the process "
            "has most likely died (rlhf train ... --resume RUN_ID, or the worker's reaper)"
        )
    if run["cancel_requested"] and run["status"] in LIVE:
        return f"{run['status']} (cancel requested)"
    return run["status"]


def default_metrics(kind: str, numeric: list[str]) -> list[str]:
    """What the chart shows first: reward and KL for online RL, the losses otherwise."""
    if kind == "rl":
        wanted = [c for c in numeric if c in ("reward", "kl") or c.startswith(("reward", "kl"))]
        if wanted:
            return wanted[:4]
    return [c for c in numeric if "loss" in c] or numeric[:1]


def run_details(user_id: int, rows: list[dict]) -> None:
    by_id = {r["id"]: r for r in rows}
    if st.session_state.get(state.RUN_ID) not in by_id:
        st.session_state[state.RUN_ID] = rows[0]["id"]
    run_id = st.selectbox(
        "Run", list(by_id), key=state.RUN_ID,
        format_func=lambda i: f"#{i} {by_id[i]['kind']} · {by_id[i]['status']}",
    )  # fmt: skip
    run = by_id[run_id]
    left, right = st.columns([3, 1])
    with left:
        st.json(run["config"], expanded=False)
    with right:
        if run["status"] in LIVE and not run["cancel_requested"]:
            st.button(
                "Cancel run", key=f"run-{run_id}-cancel", icon=":material/cancel:",
                on_click=_cancel, args=(user_id, run_id),
                help="queued: cancelled at once; running: the worker stops at its next check",
            )  # fmt: skip
        elif run["cancel_requested"] and run["status"] == "running":
            st.caption("Cancel requested: the worker stops the run at its next check.")
    if run["error"]:
        st.error("The run failed:")
        st.code(run["error"], language=None)  # worker output: shown verbatim, never as Markdown
    with transaction() as s:
        metrics = runs.run_metrics(s, run_id)
        stored = runs.get_run(s, run_id)
        log_tail, final = stored.log_tail, dict(stored.metrics or {})
        entries = arena.entry_progress(s, run_id)
        gold = arena.gold_check_results(s, run_id)
    for entry in entries:
        st.caption(entry_text(entry))
    if metrics:
        frame = pd.DataFrame(metrics).set_index("step")
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        shown = st.multiselect(
            "Metrics", numeric, default=default_metrics(run["kind"], numeric),
            key=f"run-{run_id}-metrics",
        )  # fmt: skip
        if shown:
            st.line_chart(frame[shown], x_label="step")
        watch_section(run["config"].get("watch"), final, metrics)
    else:
        st.caption("No metrics logged for this run yet.")
    if gold:
        gold_section(gold, metrics)
    if log_tail:
        with st.expander("Log (last lines)"):
            st.code(log_tail, language=None)


WATCH_PREFIX = "watch/"
STOP_REASONS = {"kl_budget": "the KL budget was spent", "divergence": "the reward climbed while "
                "the judge did not"}  # fmt: skip


def watch_frame(metrics: list[dict]) -> pd.DataFrame | None:
    """The watch's points (steps with watch/* values), one column per number without the
    prefix (reward, kl, judge, ...), indexed by step; None when the run has none."""
    rows = [
        {"step": m["step"], **{k[len(WATCH_PREFIX):]: v for k, v in m.items()
                               if k.startswith(WATCH_PREFIX)}}
        for m in metrics if any(k.startswith(WATCH_PREFIX) for k in m)
    ]  # fmt: skip
    if not rows:
        return None
    return pd.DataFrame(rows).set_index("step").apply(pd.to_numeric, errors="coerce")


def watch_text(watch: dict | None, final: dict) -> str:
    """What the watch was and did: 'Watch: 8 held-out prompts every 5 steps, judge
    checkpoint:9, KL budget 20. Stopped at step 12: the KL budget was spent; the checkpoint
    is the policy of step 10.'"""
    watch = watch or {}
    source = {"heldout": "held-out", "train": "held back from training"}.get(
        watch.get("source"), ""
    )
    text = (
        f"Watch: {watch.get('prompts', '?')} {source} prompts every {watch.get('every', '?')} steps"
    )
    if watch.get("judge"):
        text += f", judge {show.inline(str(watch['judge']))}"
    if watch.get("kl_budget"):
        text += f", KL budget {watch['kl_budget']:g}"
    if watch.get("stop_on_divergence"):
        text += ", stops on divergence"
    text += "."
    stopped, best = final.get("watch_stopped"), final.get("watch_best_step")
    if stopped:
        text += (f" Stopped after step {final.get('steps', '?')}: "
                 f"{STOP_REASONS.get(stopped, show.inline(str(stopped)))}; the checkpoint is "
                 f"the policy of step {best} (the best watch point).")  # fmt: skip
    elif best is not None:
        text += f" Best watch point: step {best} (the checkpoint is the final policy)."
    return text


def watch_section(watch: dict | None, final: dict, metrics: list[dict]) -> None:
    """The over-optimisation watch of an RL run: charts against the step and the KL."""
    frame = watch_frame(metrics)
    if frame is None:
        return
    st.markdown("**Over-optimisation watch**")
    st.caption(watch_text(watch, final))
    if "diverging" in frame and (frame["diverging"] > 0).any():
        steps = ", ".join(str(s) for s in frame.index[frame["diverging"] > 0])
        st.warning(
            f"Diverging at step {steps}: the reward model's score rose over the last watch "
            "points while the judge's did not. The policy may be gaming the reward model."
        )
    if "human_diverging" in frame and (frame["human_diverging"] > 0).any():
        steps = ", ".join(str(s) for s in frame.index[frame["human_diverging"] > 0])
        st.warning(
            f"Diverging at step {steps}: the reward model's score rose while the labelers' win "
            "rate against the base on the gold checks did not."
        )
    left, right = st.columns(2)
    with left:
        scores = [c for c in ("reward", "judge") if c in frame]
        st.line_chart(frame[scores], x_label="step", y_label="mean score (held-out)")
        st.line_chart(frame[[c for c in ("kl",) if c in frame]], x_label="step",
                      y_label="KL to the base (nats)")  # fmt: skip
    with right:
        st.scatter_chart(frame.reset_index(), x="kl", y="reward", x_label="KL to the base",
                         y_label="reward (held-out)")  # fmt: skip
        shape = [c for c in ("distinct_1", "distinct_2") if c in frame]
        st.line_chart(frame[shape], x_label="step", y_label="distinct-n")
    st.dataframe(
        frame.reset_index(), hide_index=True,
        column_order=[c for c in ("step", "reward", "reward_se", "judge", "judge_se", "kl",
                                  "kl_per_token", "length", "distinct_1", "distinct_2",
                                  "diverging") if c == "step" or c in frame],
    )  # fmt: skip


def gold_rows(gold: list[dict], metrics: list[dict]) -> list[dict]:
    """The gold checks' table: step, the watch's reward at that step (the watch point at or
    nearest before it), the arena (inert text), the win rate against the base and its 95%
    interval, and the votes ("no votes yet" while there are none)."""
    frame = watch_frame(metrics)
    points = [] if frame is None or "reward" not in frame else list(frame["reward"].items())
    rows = []
    for g in gold:
        before = [(step, r) for step, r in points if step <= g["step"]]
        at = before[-1] if before else None
        rows.append({
            # a dataframe's cells are plain text, never Markdown (as the checkpoints table)
            "step": g["step"], "checkpoint": str(g["name"]),
            "reward (watch)": None if at is None else round(float(at[1]), 4),
            "watch step": None if at is None else int(at[0]),
            "arena": str(g["arena"]) if g["arena"] else "not entered yet",
            "win rate vs base": g["win_rate"], "low": g["low"], "high": g["high"],
            "votes": (f"{g['n']} ({g['wins']} won, {g['losses']} lost, {g['ties']} tied)"
                      if g["n"] else "no votes yet"),
        })  # fmt: skip
    return rows


def gold_section(gold: list[dict], metrics: list[dict]) -> None:
    """The run's gold checks: the labelers' win rate against the base with its interval,
    against the step, beside the reward model's view (the watch's reward)."""
    st.markdown("**Gold checks: the labelers' verdict against the base**")
    st.caption(
        "Each checkpoint saved at a gold-check step is judged blind against the run's base in "
        "the arena. Win rate: ties count half; the bars are 95% Wilson intervals."
    )
    rows = gold_rows(gold, metrics)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    judged = [r for r in rows if r["win rate vs base"] is not None]
    left, right = st.columns(2)
    with left:
        if judged:
            st.vega_lite_chart(
                pd.DataFrame(judged).rename(columns={"win rate vs base": "win_rate"}),
                {
                    "layer": [
                        {"mark": "rule", "encoding": {
                            "x": {"field": "step", "type": "quantitative"},
                            "y": {"field": "low", "type": "quantitative",
                                  "scale": {"domain": [0, 1]},
                                  "title": "win rate vs the base (labelers)"},
                            "y2": {"field": "high"}}},
                        {"mark": {"type": "point", "filled": True}, "encoding": {
                            "x": {"field": "step", "type": "quantitative"},
                            "y": {"field": "win_rate", "type": "quantitative"}}},
                        {"mark": {"type": "rule", "strokeDash": [4, 4]},
                         "encoding": {"y": {"datum": 0.5}}},
                    ],
                },
                use_container_width=True,
            )  # fmt: skip
        else:
            st.caption("No votes yet: the win rates appear as labelers judge the pairs.")
    with right:
        frame = watch_frame(metrics)
        if frame is not None and "reward" in frame:
            st.line_chart(frame[["reward"]], x_label="step", y_label="reward (held-out)")


def entry_text(entry: dict) -> str:
    """'arena entry demo-arena: 4/8 prompts answered, 1.2 min' (the arena's name is inert)."""
    text = (f"arena entry {show.inline(entry['project'])}: {entry.get('answered', 0)}/"
            f"{entry.get('total', '?')} prompts")  # fmt: skip
    status = entry.get("status")
    if status == "entered":
        text += f" · entered, {entry.get('tasks_created') or 0} new tasks"
    elif status == "failed":
        text += f" · did not enter: {show.inline(entry.get('error') or 'unknown error')}"
    else:
        text += " answered so far"
    if entry.get("cap"):
        text += f" (capped at {entry['cap']})"
    if isinstance(entry.get("seconds"), int | float):
        text += f", {entry['seconds'] / 60:.1f} min"
    return text


def _cancel(user_id: int, run_id: int) -> None:
    def action(s) -> str:
        run = runs.cancel_run(s, run_id)
        if RunStatus(run.status) == RunStatus.cancelled:
            return f"Run #{run_id} cancelled."
        return f"Run #{run_id}: cancel requested; the worker stops it at its next check."

    act(user_id, "train", action)
