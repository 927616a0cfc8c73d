"""The Runs page shows an RL run's over-optimisation watch (training/watch.py): what it was,
why the run stopped and which point it kept, divergence warnings, and its points as charts
and a table (Streamlit's AppTest)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import render as show
from app.ui import state
from app.ui.pages.engineer_runs import watch_frame, watch_text
from labeling import projects
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Snapshot
from labeling.registry import training_records as tr

WATCH = {"every": 2, "prompts": 8, "source": "heldout", "judge": "checkpoint:9",
         "kl_budget": 3.0, "stop_on_divergence": False}  # fmt: skip
POINTS = [  # step, reward, judge, kl, diverging
    (0, 0.1, 0.5, 0.0, 0.0), (2, 0.8, 0.45, 1.2, 0.0), (4, 1.6, 0.3, 2.5, 1.0),
    (6, 2.4, 0.2, 3.4, 1.0),
]  # fmt: skip


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def _metrics():
    out = []
    for step, reward, judge, kl, diverging in POINTS:
        values = {"watch/reward": reward, "watch/reward_se": 0.1, "watch/judge": judge,
                  "watch/judge_se": 0.05, "watch/kl": kl, "watch/kl_per_token": kl / 10,
                  "watch/length": 10.0 + step, "watch/distinct_1": 0.5,
                  "watch/distinct_2": 0.8, "watch/diverging": diverging}  # fmt: skip
        out.append({"step": step, **values, **({"loss": 0.3} if step else {})})
    out.insert(1, {"step": 1, "loss": 0.4})  # a step without a watch point
    return out


def test_watch_frame_and_text():
    frame = watch_frame(_metrics())
    assert frame.index.tolist() == [0, 2, 4, 6]  # the watch's points only
    assert frame.loc[6, "kl"] == 3.4 and "loss" not in frame
    assert watch_frame([{"step": 1, "loss": 0.2}]) is None
    final = {"steps": 6, "watch_stopped": "kl_budget", "watch_best_step": 4}
    text = watch_text(WATCH, final)
    judge = show.inline("checkpoint:9")  # typed text goes through the one renderer
    assert text.startswith(f"Watch: 8 held-out prompts every 2 steps, judge {judge}")
    assert "KL budget 3" in text and "Stopped after step 6: the KL budget was spent" in text
    assert "the policy of step 4" in text
    assert "Best watch point: step 4 (the checkpoint is the final policy)" in watch_text(
        WATCH, {"watch_best_step": 4}
    )


def test_the_runs_page_shows_the_watch(Session):  # noqa: N803
    with Session.begin() as s:
        engineer = users.add_user(s, name="eng", role="engineer", password="long-password").id
        project = projects.create_project(s, name="p", kind="sft")
        snap = Snapshot(project_id=project.id, kind="sft", sha256="ab" * 32, path="snapshots/x",
                        rows=0, splits={}, stats={}, filters={})  # fmt: skip
        s.add(snap)
        s.flush()
        run = tr.start_run(s, kind="rl", snapshot_id=snap.id, config={"watch": WATCH},
                           created_by=engineer)  # fmt: skip
        for row in _metrics():
            tr.log_metrics(s, run.id, step=row["step"], values=row)
        run.metrics = {"steps": 6, "watch_stopped": "kl_budget", "watch_best_step": 4}
    at = AppTest.from_string(
        "from app.ui.pages import engineer_runs\nengineer_runs.render()\n", default_timeout=30
    )
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=engineer)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any("Stopped after step 6: the KL budget was spent" in c for c in captions), captions
    assert any("Diverging at step 4, 6" in w.value for w in at.warning)
    table = at.dataframe[-1].value
    assert table["step"].tolist() == [0, 2, 4, 6] and table["judge"].tolist()[-1] == 0.2
