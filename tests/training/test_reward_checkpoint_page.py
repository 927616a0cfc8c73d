"""The engineer's Runs and checkpoints page shows a reward checkpoint's evaluation: accuracy
with its 95% interval, "longer wins", ECE, and accuracy by strength (Streamlit's AppTest)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Checkpoint, CheckpointKind

EVALUATION = {
    "split": "heldout", "accuracy": 0.625, "ci_low": 0.219, "ci_high": 0.908, "n": 4,
    "ties": 1, "ece": 0.12, "longer_wins_accuracy": 0.5, "score_mean": 0.1, "score_std": 1.2,
    "accuracy_by_strength": {"1": {"accuracy": 0.75, "n": 2}, "none": {"accuracy": 0.5, "n": 2}},
}  # fmt: skip


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def test_reward_checkpoint_evaluation_is_shown(Session):  # noqa: N803
    with Session.begin() as s:
        engineer = users.add_user(s, name="eng", role="engineer", password="long-password").id
        s.add(Checkpoint(kind=CheckpointKind.policy, name="base", path="checkpoints/base"))
        s.add(Checkpoint(kind=CheckpointKind.reward, name="rm", path="checkpoints/rm",
                         evaluation=EVALUATION))  # fmt: skip
    at = AppTest.from_string(
        "from app.ui.pages import engineer_runs\nengineer_runs.render()\n", default_timeout=30
    )
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=engineer)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["rm", "accuracy"] == 0.625 and table.loc["rm", "ci_high"] == 0.908
    assert table.loc["rm", "longer_wins_accuracy"] == 0.5 and table.loc["rm", "ece"] == 0.12
    assert table["accuracy"].isna().tolist() == [False, True]  # the policy has none
    strengths = at.dataframe[1].value
    assert strengths["strength"].tolist() == ["1", "none"]
    assert strengths["n"].tolist() == [2, 2]
    assert at.json[0].value and '"score_std": 1.2' in at.json[0].value
