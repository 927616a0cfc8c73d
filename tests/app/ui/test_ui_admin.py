"""The admin and engineer pages through Streamlit's AppTest, on a migrated SQLite database.

Each test renders one page (its render() function) as a logged-in user, clicks what a
person would click, and checks the database afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from app.ui.pages import admin_import
from labeling import projects, queue
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import (
    Checkpoint,
    CheckpointKind,
    Project,
    RunMetric,
    RunStatus,
    Snapshot,
    Task,
    TrainingRun,
    User,
)
from labeling.registry import runs
from labeling.tasks import add_compare_task, add_prompt, add_response

ADMIN_ONLY = ["admin_projects", "admin_users", "admin_dashboard"]
ENGINEER = ["admin_import", "engineer_snapshots", "engineer_training", "engineer_runs"]
PAIRS = "\n".join(
    json.dumps({"prompt": f"question {i}?", "chosen": f"good {i}", "rejected": f"bad {i}"})
    for i in range(3)
).encode()


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


@pytest.fixture
def people(Session) -> dict[str, int]:
    with Session.begin() as s:
        return {
            role: users.add_user(s, name=role, role=role, password="long-password").id
            for role in ("admin", "engineer", "labeler")
        }


def page(module: str, user_id: int | None) -> AppTest:
    at = AppTest.from_string(
        f"from app.ui.pages import {module}\n{module}.render()\n", default_timeout=30
    )
    if user_id is not None:
        at.session_state[state.TOKEN] = login_token(user_id)
    return run(at)


def login_token(user_id: int) -> str:
    """What a login leaves in the session: a token the pages look up on every run."""
    with app.ui.db.transaction() as s:
        return web_sessions.start(s, user_id=user_id)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click()
    return run(at)


def messages(at: AppTest) -> list[str]:
    return [m.value for m in (*at.success, *at.error, *at.warning)]


def pairwise_project(Session, *, labeled: bool = True) -> int:
    """A pairwise project with 3 tasks, labeled by one labeler (a, tie, b)."""
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", guidelines="Be kind.")
        for i in range(3):
            prompt = add_prompt(s, p, f"q{i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            add_compare_task(s, p, prompt, a, b)
        pid = p.id
        lab = users.add_user(s, name="ann", role="labeler", password="long-password").id
    if labeled:
        for choice in ("a", "tie", "b"):
            with Session.begin() as s:
                assignment = queue.claim_next(s, project_id=pid, user_id=lab)
                queue.submit_preference(s, task_id=assignment.task_id, user_id=lab, choice=choice)
    return pid


def test_pages_refuse_the_wrong_roles(Session, people):
    for module in ADMIN_ONLY + ENGINEER:
        at = page(module, None)
        assert [w.value for w in at.warning] == ["Please log in."], module
        assert not at.title and not at.button and not at.dataframe, module
        at = page(module, people["labeler"])
        assert [e.value for e in at.error] == ["You do not have access to this page."], module
        assert not at.title and not at.button and not at.dataframe, module
    for module in ADMIN_ONLY:
        at = page(module, people["engineer"])
        assert [e.value for e in at.error] == ["You do not have access to this page."], module
        assert not at.title
    for module in ENGINEER:
        assert page(module, people["engineer"]).title, module
    for module in ADMIN_ONLY + ENGINEER:
        assert page(module, people["admin"]).title, module
    with Session.begin() as s:  # a deactivated admin is logged out on their next action
        users.set_active(s, "admin", False)
    assert [w.value for w in page("admin_users", people["admin"]).warning] == ["Please log in."]


def test_project_create_edit_and_errors(Session, people):
    at = page("admin_projects", people["admin"])
    at.text_input(key="project-new-name").input("helpful")
    at.selectbox(key="project-new-kind").set_value("pairwise")
    at.number_input(key="project-new-overlap").set_value(2)
    at.text_area(key="project-new-guidelines").input("# Be helpful\n<img src=x> [link](http://x)")
    run(at)
    preview = [m.value for m in at.markdown if "Be helpful" in m.value]
    assert preview and "&lt;img" in preview[0] and "`[link](http://x)`" in preview[0]  # inert
    click(at, "project-new-create")
    assert any("Created project helpful" in m for m in messages(at)), messages(at)
    assert at.text_input(key="project-new-name").value == ""  # a fresh form
    with Session() as s:
        p = projects.get_project(s, "helpful")
        assert p.overlap == 2 and p.guidelines.startswith("# Be helpful")
        pid = p.id

    at.text_input(key="project-new-name").input("helpful")  # a duplicate name: refused
    at.number_input(key="project-new-lease_seconds").set_value(120)
    click(at, "project-new-create")
    assert any("already exists" in e.value for e in at.error)
    assert at.text_input(key="project-new-name").value == "helpful"  # nothing lost
    assert at.number_input(key="project-new-lease_seconds").value == 120

    at.selectbox(key=state.ADMIN_PROJECT_ID).set_value(pid)
    at.number_input(key=f"project-{pid}-overlap").set_value(3)
    at.number_input(key=f"project-{pid}-gold_rate").set_value(0.25)
    run(at)
    click(at, f"project-{pid}-save")
    assert any("Saved helpful" in m for m in messages(at)), messages(at)
    with Session() as s:
        p = s.get(Project, pid)
        assert (p.overlap, p.gold_rate, p.lease_seconds) == (3, 0.25, 1800)
        assert s.scalar(select(func.count()).select_from(Project)) == 1


def test_import_through_the_page(Session, people):
    with Session.begin() as s:
        projects.create_project(s, name="pairs", kind="pairwise")
    at = page("admin_import", people["engineer"])
    at.file_uploader(key="import-file").set_value(("pairs.jsonl", PAIRS, "application/json"))
    run(at)
    click(at, "import-go")
    assert any("Imported 3 of 3 rows" in s.value for s in at.success), messages(at)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 3

    bad = PAIRS + b'\n{"prompt": "q?", "chosen": "same"}\nnot json\n'
    at.file_uploader(key="import-file").set_value(("more.jsonl", bad, "application/json"))
    run(at)
    click(at, "import-go")
    assert at.error and "nothing was imported" in at.error[0].value
    errors = at.dataframe[-1].value
    assert errors["where"].tolist() == ["line 4", "line 5"]
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 3  # all or nothing

    at.checkbox(key="import-skip-invalid").check()
    new = bad + json.dumps({"prompt": "new?", "chosen": "y", "rejected": "n"}).encode()
    at.file_uploader(key="import-file").set_value(("more.jsonl", new, "application/json"))
    run(at)
    click(at, "import-go")
    assert any("Imported 1 of 6 rows" in s.value for s in at.success), messages(at)
    assert at.dataframe[-1].value["where"].tolist() == ["line 4", "line 5"]
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(Task)) == 4

    # the helper behind the page refuses other types and oversized files itself
    with Session() as s:
        pid = projects.get_project(s, "pairs").id
    common = dict(user_id=people["admin"], project_id=pid)
    assert not admin_import.import_upload(filename="x.exe", data=b"{}", **common).ok
    too_big = admin_import.import_upload(filename="a.jsonl", data=PAIRS, max_bytes=10, **common)
    assert not too_big.ok and "limit" in too_big.message
    labeler = admin_import.import_upload(
        user_id=people["labeler"], project_id=pid, filename="a.jsonl", data=PAIRS
    )
    assert not labeler.ok and "labeler" in labeler.message


def test_users_add_role_deactivate_and_not_oneself(Session, people):
    at = page("admin_users", people["admin"])
    at.text_input(key="user-new-name").input("zoe")
    at.selectbox(key="user-new-role").set_value("engineer")
    at.text_input(key="user-new-password").input("short")
    click(at, "user-new-add")
    assert any("too short" in e.value for e in at.error)
    assert at.text_input(key="user-new-name").value == "zoe"
    at.text_input(key="user-new-password").input("long-enough-1")
    click(at, "user-new-add")
    assert any("Added zoe (engineer)" in s.value for s in at.success), messages(at)
    with Session() as s:
        zoe = users.get_user(s, "zoe")
        assert zoe.role.value == "engineer" and users.authenticate(s, "zoe", "long-enough-1")

    at.selectbox(key="user-change-id").set_value(zoe.id)
    run(at)
    at.selectbox(key=f"user-{zoe.id}-role").set_value("labeler")
    run(at)
    click(at, f"user-{zoe.id}-set-role")
    click(at, f"user-{zoe.id}-deactivate")
    with Session() as s:
        zoe = s.get(User, zoe.id)
        assert zoe.role.value == "labeler" and not zoe.active
    click(at, f"user-{zoe.id}-activate")
    with Session() as s:
        assert s.get(User, zoe.id).active

    me = people["admin"]
    at.selectbox(key="user-change-id").set_value(me)
    run(at)
    click(at, f"user-{me}-deactivate")
    assert any("cannot deactivate yourself" in e.value for e in at.error)
    at.selectbox(key=f"user-{me}-role").set_value("engineer")
    run(at)
    click(at, f"user-{me}-set-role")
    assert any("cannot demote yourself" in e.value for e in at.error)
    with Session() as s:
        admin = s.get(User, me)
        assert admin.active and admin.role.value == "admin"


def test_dashboard_shows_a_project_and_creates_a_snapshot(Session, people):
    pid = pairwise_project(Session)
    at = page("admin_dashboard", people["admin"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tasks"] == "3" and metrics["Done"] == "3" and metrics["Labels"] == "3"
    assert metrics["Tie rate"] == "33.3%" and metrics["Labelers"] == "1"
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the charts
    assert at.dataframe[0].value["labeler"].tolist() == ["ann"]
    at.selectbox(key="dashboard-snapshot-kind").set_value("preference")
    click(at, "dashboard-snapshot-create")
    assert any("Created snapshot" in s.value and "2 rows" in s.value for s in at.success), messages(
        at
    )
    with Session() as s:
        snap = s.scalar(select(Snapshot))
        assert snap.project_id == pid and snap.rows == 2 and snap.created_by == people["admin"]
    click(at, "dashboard-snapshot-create")  # same labels: the same snapshot
    assert any("existing snapshot" in s.value for s in at.success)


def test_snapshots_page_lists_creates_and_offers_downloads(Session, people):
    pairwise_project(Session)
    at = page("engineer_snapshots", people["engineer"])
    assert any("No snapshots yet" in i.value for i in at.info)
    at.selectbox(key="snapshots-create-kind").set_value("kto")
    click(at, "snapshots-create-create")
    assert any("Created snapshot 1 (kto)" in s.value for s in at.success), messages(at)
    table = at.dataframe[0].value
    assert table["kind"].tolist() == ["kto"] and table["project"].tolist() == ["pairs"]
    labels = [b.label for b in at.get("download_button")]
    assert [label.split(" ")[0] for label in labels] == ["train", "heldout", "manifest"]


def test_queue_a_training_run_then_cancel_it(Session, people):
    pid = pairwise_project(Session)
    with Session.begin() as s:
        from labeling import snapshots

        snap, _ = snapshots.create_snapshot(s, project=pid, kind="preference")
        snap_id = snap.id
        s.add(Checkpoint(kind=CheckpointKind.policy, name="base", path="checkpoints/base"))
    at = page("engineer_training", people["engineer"])
    assert any("rlhf worker" in c.value for c in at.caption)
    at.selectbox(key="train-kind").set_value("dpo")
    run(at)
    click(at, "train-queue")  # a dpo run needs a base checkpoint
    assert any("needs a base" in e.value for e in at.error), messages(at)
    at.selectbox(key="train-base").set_value(1)
    at.number_input(key="train-steps-dpo-cpu-demo").set_value(5)
    at.text_area(key="train-extra").input('{"beta": 0.2}')
    run(at)
    click(at, "train-queue")
    assert any("a worker will pick it up" in s.value for s in at.success), messages(at)
    with Session() as s:
        run_ = s.scalar(select(TrainingRun))
        assert run_.status == RunStatus.queued and run_.snapshot_id == snap_id
        assert run_.base_checkpoint_id == 1 and run_.created_by == people["engineer"]
        assert run_.config["max_steps"] == 5 and run_.config["beta"] == 0.2
        preset = yaml.safe_load(Path("training/presets/cpu-demo.yaml").read_text())["dpo"]
        assert run_.config["learning_rate"] == float(preset["learning_rate"])  # the preset's
        assert run_.config["preset"] == "cpu-demo"
        s.add(RunMetric(run_id=run_.id, step=1, values={"loss": 0.7}))
        s.commit()
        run_id = run_.id

    at = page("engineer_runs", people["engineer"])
    assert at.dataframe[0].value["status"].tolist() == ["queued"]
    assert at.dataframe[1].value["name"].tolist() == ["base"]  # checkpoints
    click(at, f"run-{run_id}-cancel")
    assert any(f"Run #{run_id} cancelled" in s.value for s in at.success), messages(at)
    with Session() as s:
        assert runs.get_run(s, run_id).status == RunStatus.cancelled
    assert at.dataframe[0].value["status"].tolist() == ["cancelled"]
    assert not at.button  # nothing left to cancel


def test_arena_settings_on_the_projects_page(Session, people):  # noqa: N803
    from labeling import arena

    with Session.begin() as s:
        project_id = projects.create_project(s, name="the-arena", kind="arena").id
    at = page("admin_projects", people["admin"])
    prefix = f"arena-{project_id}-"
    at.toggle(key=prefix + "auto_enter").set_value(False)
    at.selectbox(key=prefix + "opponents").set_value("all")
    at.number_input(key=prefix + "min_pair_votes").set_value(2)
    assert at.number_input(key=prefix + "cpu_max_prompts").value == 8  # the default cap
    at.number_input(key=prefix + "cpu_max_prompts").set_value(0)  # every prompt, on CPU too
    at.number_input(key=prefix + "cuda_max_prompts").set_value(500)
    at = click(run(at), prefix + "save")
    assert "Saved the arena settings" in at.success[0].value
    with Session.begin() as s:
        conf = arena.settings(projects.get_project(s, project_id))
        assert conf["auto_enter"] is False and conf["opponents"] == "all"
        assert conf["min_pair_votes"] == 2 and conf["max_prompts"] is None
        assert (conf["cpu_max_prompts"], conf["cuda_max_prompts"]) == (0, 500)


def test_leaderboard_page_for_every_role(Session, people):  # noqa: N803
    from labeling import arena

    with Session.begin() as s:
        project = projects.create_project(s, name="the-arena", kind="arena")
        cks = []
        for name in ("alpha", "beta"):
            ck = Checkpoint(kind=CheckpointKind.policy, name=name, path=f"checkpoints/{name}")
            s.add(ck)
            s.flush()
            cks.append(ck.id)
        for i in range(4):
            prompt = add_prompt(s, project, f"q{i}", category="chat" if i % 2 else "code")
            for name, cid in zip(("alpha", "beta"), cks, strict=True):
                add_response(s, prompt, f"{name} {i}", author_kind="checkpoint", checkpoint_id=cid)
        arena.schedule(s, project)
    # Nobody voted yet: the page says so.
    at = page("leaderboard", people["labeler"])
    assert any("no votes" in i.value for i in at.info)
    with Session.begin() as s:
        for choice in ("a", "b", "tie", "a"):
            assignment = queue.claim_next(s, project_id=project.id, user_id=people["labeler"])
            queue.submit_preference(s, task_id=assignment.task_id, user_id=people["labeler"],
                                    choice=choice)  # fmt: skip
    for role in ("labeler", "engineer", "admin"):
        at = page("leaderboard", people[role])
        table = at.dataframe[0].value
        assert set(table["Model"]) == {"alpha", "beta"} and table["Votes"].tolist() == [4, 4]
    # the win-rate heatmap writes its numbers in the cells, not only a colour
    charts = [c.proto.spec for c in at.get("vega_lite_chart")]
    heatmap = next(spec for spec in charts if '"rect"' in spec)
    assert '"text"' in heatmap and '".0%"' in heatmap
    # 4 votes each, under the default 30: both listed apart as provisional, with a warning;
    # the sampling shares are a bar chart.
    assert any("Provisional" in h.value for h in at.subheader)
    assert set(table["Note"]) == {"4 votes, fewer than 30"} and "Flip votes" not in table
    assert any("2 provisional models" in w.value for w in at.warning)
    assert any('"bar"' in spec and "share" in spec for spec in charts)
    at.number_input(key="lb-provisional").set_value(1)
    at = run(at)
    ranked = at.dataframe[0].value
    assert ranked["Rank"].tolist()[0] == 1 and ranked["Flip votes"].iloc[0] >= 1
    assert ranked["Share of battles"].tolist() == ["50.0%", "50.0%"]
    assert not any("Provisional" in h.value for h in at.subheader)
    at.selectbox(key="lb-category").set_value("code")
    at = run(at)
    assert at.dataframe[0].value["Votes"].sum() == 4  # 2 votes each, in "code" only
    at.selectbox(key="lb-ci").set_value("sandwich")
    at.selectbox(key="lb-ties").set_value("davidson")
    run(at)
    # robustness is cached per fitted board: a new vote is seen at once
    with Session.begin() as s:
        project = s.merge(project)
        prompt = add_prompt(s, project, "q4", category="code")
        for name, cid in zip(("alpha", "beta"), cks, strict=True):
            add_response(s, prompt, f"{name} 4", author_kind="checkpoint", checkpoint_id=cid)
        arena.schedule(s, project)
        assignment = queue.claim_next(s, project_id=project.id, user_id=people["labeler"])
        queue.submit_preference(s, task_id=assignment.task_id, user_id=people["labeler"],
                                choice="b")  # fmt: skip
    assert page("leaderboard", people["labeler"]).dataframe[0].value["Votes"].tolist() == [5, 5]
    assert page("leaderboard", None).warning  # logged out: asked to log in
