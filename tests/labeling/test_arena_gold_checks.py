"""Gold checks on both databases, without a model: an RL run's checkpoints at chosen steps are
paired with the base alone (and left out of everyone else's pairs), labelers' votes become
win rates against the base with ties counted half and Wilson intervals; the Runs page
(AppTest, SQLite) shows them beside the watch's reward."""

from __future__ import annotations

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from app.ui import state
from labeling import arena, projects
from labeling.accounts import users, web_sessions
from labeling.arena import gold_checks
from labeling.errors import InvalidInput
from labeling.models import (
    AuthorKind,
    Checkpoint,
    CheckpointKind,
    Choice,
    Origin,
    Preference,
    Snapshot,
    Task,
)
from labeling.registry import training_records as tr
from labeling.tasks import add_prompt, add_response


def _ck(s, name: str, *, run_id=None, parent_id=None, step=None) -> int:
    # A registry row is enough here: these tests never load weights.
    ck = Checkpoint(kind=CheckpointKind.policy, name=name, path=f"checkpoints/{name}",
                    run_id=run_id, parent_id=parent_id,
                    config={} if step is None else {"gold_check_step": step})  # fmt: skip
    s.add(ck)
    s.flush()
    return ck.id


def _rl_run(s) -> int:
    project = projects.create_project(s, name="rl-data", kind="pairwise")
    snap = Snapshot(project_id=project.id, kind="preference", sha256="cd" * 32,
                    path="snapshots/y", rows=0, splits={}, stats={}, filters={})  # fmt: skip
    s.add(snap)
    s.flush()
    run = tr.start_run(s, kind="rl", snapshot_id=snap.id, config={"gold_check_steps": [1, 2]},
                       created_by=None)  # fmt: skip
    return run.id


def _setup(s, prompts: int = 6):
    """An arena where the base, the run's two gold checks, its final checkpoint and another
    model answered every prompt: ({name: id}, project, run_id)."""
    run_id = _rl_run(s)
    base = _ck(s, "base")
    ids = {
        "base": base,
        "step1": _ck(s, "rl-grpo-run1-step1", run_id=run_id, parent_id=base, step=1),
        "step2": _ck(s, "rl-grpo-run1-step2", run_id=run_id, parent_id=base, step=2),
        "final": _ck(s, "rl-grpo-run1", run_id=run_id, parent_id=base),
        "other": _ck(s, "other"),
    }
    project = projects.create_project(s, name="gold", kind="arena")
    for i in range(prompts):
        prompt = add_prompt(s, project, f"question {i}")
        for name, cid in ids.items():
            add_response(s, prompt, f"{name} answers {i}", author_kind=AuthorKind.checkpoint,
                         checkpoint_id=cid)  # fmt: skip
    return ids, project, run_id


def _pairs(s, project) -> set[frozenset]:
    tasks = s.scalars(select(Task).where(Task.project_id == project.id)).all()
    return {frozenset((t.response_a.checkpoint_id, t.response_b.checkpoint_id)) for t in tasks}


def test_gold_checks_are_paired_with_the_base_alone(Session):  # noqa: N803
    with Session.begin() as s:
        ids, project, run_id = _setup(s, prompts=3)
        names = {v: k for k, v in ids.items()}
        out = arena.schedule(s, project, checkpoint_id=ids["step1"], against=ids["base"])
        assert out["pairs"] == 1 and out["created"] == 3
        assert _pairs(s, project) == {frozenset((ids["step1"], ids["base"]))}
        # a gold check entering without `against` still meets only its base
        arena.schedule(s, project, checkpoint_id=ids["step2"], opponents="all")
        # the final checkpoint against everyone: not against the gold checks
        arena.schedule(s, project, checkpoint_id=ids["final"], opponents="all")
        pairs = {frozenset(names[c] for c in p) for p in _pairs(s, project)}
        assert pairs == {frozenset(p) for p in (("step1", "base"), ("step2", "base"),
                                                ("final", "base"), ("final", "other"))}  # fmt: skip
        # every pair of contestants: the gold checks still only with their base
        arena.schedule(s, project)
        pairs = {frozenset(names[c] for c in p) for p in _pairs(s, project)}
        assert all("base" in p for p in pairs if p & {"step1", "step2"})
        assert frozenset(("base", "other")) in pairs
        # against: an opponent without answers, or itself, is one sentence
        lone = _ck(s, "lone")
        with pytest.raises(InvalidInput, match="has no answers in arena 'gold'.*enter it first"):
            arena.schedule(s, project, checkpoint_id=ids["step1"], against=lone)
        with pytest.raises(InvalidInput, match="cannot be paired with itself"):
            arena.schedule(s, project, checkpoint_id=ids["step1"], against=ids["step1"])
        with pytest.raises(InvalidInput, match="pairs one checkpoint"):
            arena.schedule(s, project, against=ids["base"])
        assert [c["step"] for c in arena.run_gold_checks(s, run_id)] == [1, 2]


def test_votes_become_win_rates_against_the_base_with_wilson_intervals(Session):  # noqa: N803
    with Session.begin() as s:
        ids, project, run_id = _setup(s, prompts=6)
        before = arena.gold_check_results(s, run_id)
        assert [(g["step"], g["arena"], g["n"], g["win_rate"]) for g in before] == [
            (1, "gold", 0, None),
            (2, "gold", 0, None),
        ]  # entered, no votes yet
        assert before[0]["low"] is None and before[0]["base_checkpoint_id"] == ids["base"]
        for key in ("step1", "step2"):
            arena.schedule(s, project, checkpoint_id=ids[key], against=ids["base"])
        uid = users.add_user(s, name="lab", role="labeler", password=None).id
        # step 1: the base wins 4 of 6; step 2 wins 4, loses 1, one tie ("both bad" for one)
        plan = {"step1": ["base"] * 4 + ["step1"] * 2,
                "step2": ["step2"] * 4 + ["base", "both_bad"]}  # fmt: skip
        names = {v: k for k, v in ids.items()}
        tasks = s.scalars(select(Task).where(Task.project_id == project.id).order_by(Task.id))
        for task in tasks:
            a, b = names[task.response_a.checkpoint_id], names[task.response_b.checkpoint_id]
            (which,) = {a, b} - {"base"}
            prefer = plan[which].pop()
            choice = Choice.both_bad if prefer == "both_bad" else (
                Choice.a if prefer == a else Choice.b)  # fmt: skip
            s.add(Preference(task_id=task.id, user_id=uid, choice=choice))
            # an imported vote is nobody judging blind: left out
            s.add(Preference(task_id=task.id, user_id=None, origin=Origin.imported,
                             choice=Choice.a if which == a else Choice.b))  # fmt: skip
        s.flush()
        assert plan == {"step1": [], "step2": []}
        results = {g["step"]: g for g in arena.gold_check_results(s, run_id)}
    one, two = results[1], results[2]
    assert (one["wins"], one["losses"], one["ties"], one["n"]) == (2, 4, 0, 6)
    assert one["win_rate"] == pytest.approx(2 / 6, abs=1e-6)
    assert (two["wins"], two["losses"], two["ties"], two["n"]) == (4, 1, 1, 6)
    assert two["win_rate"] == pytest.approx(4.5 / 6, abs=1e-6)
    # 95% Wilson for 2 of 6: (0.0968, 0.7000); for 4.5 of 6 (a tie is half): (0.3648, 0.9400)
    assert (one["low"], one["high"]) == pytest.approx((0.0968, 0.7000), abs=1e-3)
    assert (two["low"], two["high"]) == pytest.approx((0.3648, 0.9400), abs=1e-3)
    assert gold_checks.win_rate(0, 0, 0) == {"n": 0, "win_rate": None, "low": None, "high": None}


# --- the Runs page (AppTest, SQLite) ----------------------------------------------------


@pytest.fixture
def ui(sqlite_url):
    from labeling.db import make_engine, make_sessionmaker

    st.cache_resource.clear()  # the UI's engine is process-wide: point it at this test's DB
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    st.cache_resource.clear()
    engine.dispose()


def test_the_runs_page_shows_win_rates_beside_the_reward(ui):
    from app.ui.db import transaction

    with ui.begin() as s:
        ids, project, run_id = _setup(s, prompts=2)
        tr.log_metrics(s, run_id, step=0, values={"watch/reward": 0.1, "watch/kl": 0.0})
        tr.log_metrics(s, run_id, step=1, values={"watch/reward": 0.4, "watch/kl": 0.2})
        arena.schedule(s, project, checkpoint_id=ids["step1"], against=ids["base"])
        uid = users.add_user(s, name="lab", role="labeler", password=None).id
        for task in s.scalars(select(Task).where(Task.project_id == project.id)):
            step1_is_a = task.response_a.checkpoint_id == ids["step1"]
            s.add(Preference(task_id=task.id, user_id=uid,
                             choice=Choice.a if step1_is_a else Choice.b))  # fmt: skip
        eng = users.add_user(s, name="eng", role="engineer", password=None).id
    at = AppTest.from_string(
        "from app.ui.pages import engineer_runs\nengineer_runs.render()\n", default_timeout=30
    )
    with transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=eng)
    at.session_state[state.RUN_ID] = run_id
    at.run()
    assert not at.exception
    assert any("Gold checks" in m.value for m in at.markdown)
    (table,) = [d.value for d in at.dataframe if "win rate vs base" in d.value.columns]
    rows = table.set_index("step")
    assert rows.loc[1, "win rate vs base"] == 1.0 and rows.loc[1, "reward (watch)"] == 0.4
    assert rows.loc[1, "votes"] == "2 (2 won, 0 lost, 0 tied)"
    assert rows.loc[1, "high"] == 1.0 and 0.3 < rows.loc[1, "low"] < 0.4  # Wilson, 2 of 2
    # step 2: no votes yet; the reward is the watch point nearest before it (step 1)
    assert rows.loc[2, "votes"] == "no votes yet" and rows.loc[2, "watch step"] == 1
    assert rows.loc[2, "arena"] == "gold"
