"""Arena entries on both databases, without a model: answers cut at the length limit are
marked and the compare view says so; the entry's progress is recorded on the checkpoint's
run; the per-device prompt caps are settings; a cap picks the same prompts for everyone.
The Compare and Runs pages in Streamlit's AppTest (SQLite). Generation itself, with a tiny
model, is in tests/training/test_arena_loop.py."""

from __future__ import annotations

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from app.ui import state
from labeling import arena, generations, projects
from labeling import labeler_views as lv
from labeling.accounts import users, web_sessions
from labeling.errors import InvalidInput
from labeling.models import Checkpoint, CheckpointKind, Response, Snapshot, TrainingRun
from labeling.registry import training_records as tr
from labeling.tasks import add_prompt

KEY = generations.sampling_key(temperature=0.7, top_p=0.95, max_new_tokens=4, seed=0)


def _checkpoint(s, name: str, run_id: int | None = None) -> int:
    # A registry row is enough here: these tests never load weights.
    ck = Checkpoint(kind=CheckpointKind.policy, name=name, path=f"checkpoints/{name}",
                    run_id=run_id)  # fmt: skip
    s.add(ck)
    s.flush()
    return ck.id


def _finished_run(s) -> int:
    """A succeeded SFT run with summary metrics, as a recipe leaves it."""
    project = projects.create_project(s, name="sft-data", kind="sft")
    snap = Snapshot(project_id=project.id, kind="sft", sha256="ab" * 32, path="snapshots/x",
                    rows=0, splits={}, stats={}, filters={})  # fmt: skip
    s.add(snap)
    s.flush()
    run = tr.start_run(s, kind="sft", snapshot_id=snap.id, config={}, created_by=None)
    tr.finish_run(s, run.id, metrics={"train_loss": 0.5})
    return run.id


def _arena_with_prompts(s, n: int):
    project = projects.create_project(s, name="entry-arena", kind="arena")
    prompts = [add_prompt(s, project, f"question {i}") for i in range(n)]
    return project, prompts


def test_truncated_answers_are_marked_and_the_compare_view_shows_it(Session):  # noqa: N803
    with Session.begin() as s:
        project, (prompt,) = _arena_with_prompts(s, 1)
        cut, whole = _checkpoint(s, "cut"), _checkpoint(s, "whole")
        params = {**KEY, "model": "m"}
        generations.store_generated(s, checkpoint_id=cut, answers=[(prompt.id, 0, "It was a")],
                                    sampling_params=params, truncated=[True])  # fmt: skip
        generations.store_generated(s, checkpoint_id=whole, answers=[(prompt.id, 0, "Done.")],
                                    sampling_params=params, truncated=[False])  # fmt: skip
        with pytest.raises(InvalidInput, match="one flag per answer"):
            generations.store_generated(s, checkpoint_id=whole, answers=[(prompt.id, 0, "x")],
                                        sampling_params=params, truncated=[])  # fmt: skip
        flags = dict(s.execute(select(Response.text, Response.sampling_params)).all())
        assert flags["It was a"]["truncated"] is True and flags["Done."]["truncated"] is False
        # The flag does not change what counts as the same request: both are answered.
        plan = generations.prompts_to_answer(s, project.id, split="all", checkpoint_id=cut,
                                             sampling_key=KEY)  # fmt: skip
        assert plan.pending == [] and plan.skipped == 1
        assert arena.schedule(s, project)["created"] == 1
        labeler = users.add_user(s, name="judge", role="labeler", password=None).id
        view = lv.next_task(s, user_id=labeler, project_id=project.id)
        shown = {view.left.text: view.left.truncated, view.right.text: view.right.truncated}
        assert shown == {"It was a": True, "Done.": False}
        # Rows stored before the flag existed read as not cut.
        assert generations.is_truncated({"temperature": 0.7}) is False
        assert generations.is_truncated(None) is False


def test_entry_progress_is_recorded_on_the_checkpoints_run(Session):  # noqa: N803
    with Session.begin() as s:
        run_id = _finished_run(s)
        trained = _checkpoint(s, "sft-run", run_id=run_id)
        added = _checkpoint(s, "baseline")  # `rlhf checkpoints add`: no run
    with Session.begin() as s:
        assert arena.record_entry(s, checkpoint_id=trained, project="a", answered=0, total=20,
                                  status="answering", cap=20) == run_id  # fmt: skip
    with Session.begin() as s:
        arena.record_entry(s, checkpoint_id=trained, project="a", answered=8, seconds=72.04)
        arena.record_entry(s, checkpoint_id=trained, project="b", answered=3, total=3,
                           status="entered", tasks_created=2)  # fmt: skip
        assert arena.record_entry(s, checkpoint_id=added, project="a", answered=1) is None
        with pytest.raises(InvalidInput, match="unknown arena entry fields: nonsense"):
            arena.record_entry(s, checkpoint_id=trained, project="a", nonsense=1)
        with pytest.raises(InvalidInput, match="status must be one of"):
            arena.record_entry(s, checkpoint_id=trained, project="a", status="done")
    with Session.begin() as s:
        entries = arena.entry_progress(s, run_id)
        assert [e["project"] for e in entries] == ["a", "b"]
        a = entries[0]
        assert (a["answered"], a["total"], a["status"], a["cap"], a["seconds"]) == (
            8, 20, "answering", 20, 72.0)  # fmt: skip
        assert entries[1]["tasks_created"] == 2
        # The run's own summary metrics are kept beside the entry.
        assert s.get(TrainingRun, run_id).metrics["train_loss"] == 0.5


def test_prompt_caps_are_settings_and_pick_the_first_prompts_for_everyone(Session):  # noqa: N803
    with Session.begin() as s:
        project, prompts = _arena_with_prompts(s, 6)
        conf = arena.settings(project)
        assert conf["cpu_max_prompts"] >= 1 and conf["cuda_max_prompts"] == 0
        assert arena.configure(s, project, cpu_max_prompts=0)["cpu_max_prompts"] == 0
        assert arena.configure(s, project, cuda_max_prompts=3)["cuda_max_prompts"] == 3
        for bad in (-1, 1.5, "many"):
            with pytest.raises(InvalidInput, match="cpu_max_prompts must be"):
                arena.configure(s, project, cpu_max_prompts=bad)
        assert arena.settings(project)["cpu_max_prompts"] == 0  # nothing changed by refusals
        assert generations.count_prompts(s, project.id, split="all") == 6
        first, second = _checkpoint(s, "first"), _checkpoint(s, "second")
        # `second` already answered prompt 2 (an earlier, uncapped entry, say).
        generations.store_generated(s, checkpoint_id=second, answers=[(prompts[1].id, 0, "b")],
                                    sampling_params={**KEY, "model": "second"})  # fmt: skip
        plans = [
            generations.prompts_to_answer(
                s, project.id, split="all", checkpoint_id=ck, sampling_key=KEY, limit=3
            )  # fmt: skip
            for ck in (first, second)
        ]
        wanted = [p.id for p in prompts[:3]]
        assert [p.prompt_id for p in plans[0].pending] == wanted
        assert [p.prompt_id for p in plans[1].pending] == [wanted[0], wanted[2]]
        assert plans[1].skipped == 1


def test_rlhf_arena_config_sets_the_caps(cli, admin, Session):  # noqa: N803
    assert cli("projects", "create", "caps", "--kind", "arena", user=admin).code == 0
    r = cli("arena", "config", "--project", "caps", "--cpu-max-prompts", "0",
            "--cuda-max-prompts", "50", "--json", user=admin)  # fmt: skip
    assert r.code == 0, r.err
    assert (r.json()["cpu_max_prompts"], r.json()["cuda_max_prompts"]) == (0, 50)
    bad = cli("arena", "config", "--project", "caps", "--cpu-max-prompts", "-2", user=admin)
    assert bad.code == 1 and "cpu_max_prompts must be from 0" in bad.err
    with Session.begin() as s:
        assert arena.settings(projects.get_project(s, "caps"))["cuda_max_prompts"] == 50


# --- the pages (AppTest, SQLite) -------------------------------------------------------------


@pytest.fixture
def ui(sqlite_url):
    from labeling.db import make_engine, make_sessionmaker

    st.cache_resource.clear()  # the UI's engine is process-wide: point it at this test's DB
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    st.cache_resource.clear()
    engine.dispose()


def _page(name: str, uid: int) -> AppTest:
    from app.ui.db import transaction

    at = AppTest.from_string(
        f"from app.ui.pages import {name}\n{name}.render()\n", default_timeout=30
    )
    with transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=uid)
    return at.run()


def test_the_compare_page_captions_only_the_cut_answer(ui):
    with ui.begin() as s:
        project, (prompt,) = _arena_with_prompts(s, 1)
        params = {**KEY, "model": "m"}
        for name, text, cut in (("cut", "It was a", True), ("whole", "Done.", False)):
            generations.store_generated(s, checkpoint_id=_checkpoint(s, name),
                                        answers=[(prompt.id, 0, text)], sampling_params=params,
                                        truncated=[cut])  # fmt: skip
        arena.schedule(s, project)
        uid = users.add_user(s, name="judge", role="labeler", password=None).id
    at = _page("compare", uid)
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert captions.count("(cut at the length limit)") == 1


def test_the_runs_page_shows_the_arena_entry(ui):
    with ui.begin() as s:
        run_id = _finished_run(s)
        ck = _checkpoint(s, "sft-run", run_id=run_id)
        arena.record_entry(s, checkpoint_id=ck, project="demo-arena", answered=4, total=8,
                           status="answering", cap=8, seconds=66.0)  # fmt: skip
        arena.record_entry(s, checkpoint_id=ck, project="*other*", answered=2, total=2,
                           status="failed", error="no space left")  # fmt: skip
        uid = users.add_user(s, name="eng", role="engineer", password=None).id
    at = _page("engineer_runs", uid)
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "arena entry demo-arena: 4/8 prompts answered so far (capped at 8), 1.1 min" in captions
    failed = next(c for c in captions if "did not enter" in c)
    assert "\\*other\\*" in failed and "no space left" in failed  # the name stays inert
