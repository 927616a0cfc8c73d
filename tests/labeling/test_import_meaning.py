"""Import never changes what a row means: every TRL dataset type, AlpacaFarm, column maps.

Each type is either imported faithfully into a project kind that can hold it or refused with
the reason; every refusal leaves what was already saved as it was. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import app.ui.db
from app.ui import state
from app.ui.pages import admin_import
from labeling import importer
from labeling.accounts import users, web_sessions
from labeling.models import Choice, Demonstration, Preference, Prompt, Response, Task, TaskStatus
from labeling.projects import create_project
from tests.import_rows import counts, write_jsonl

PASSWORD = "Import-tests-unusual-42"
SKY = [{"role": "user", "content": "What color is the sky?"}]


@pytest.fixture
def saved(Session):  # noqa: N803
    """Projects p (pairwise), s (sft), r (ranking) holding rows already, and an admin."""
    with Session.begin() as s:
        admin = users.add_user(s, name="admin", role="admin", password=PASSWORD).id
        pid = create_project(s, name="p", kind="pairwise").id
        create_project(s, name="s", kind="sft")
        create_project(s, name="r", kind="ranking")
        importer.import_rows(
            s, project="p", rows=[{"prompt": "Old?", "chosen": "Kept.", "rejected": "Also."}]
        )
        importer.import_rows(s, project="s", rows=[{"prompt": "Hi?", "completion": "Hello."}])
    return {"admin": admin, "project": pid, "before": counts(Session)}


def refused(cli, Session, saved, path, project, message):  # noqa: N803
    for extra in ((), ("--skip-invalid",)):
        out = cli("import", str(path), "--project", project, *extra, user="admin")
        assert out.code == 1 and out.err.startswith(f"error: {message}"), out.err
        assert out.err.count("\n") == 1  # one sentence
    assert counts(Session) == saved["before"]


# --------------------------------------------------------------------------- TRL types

KTO = [  # TRL's unpaired preference examples, standard and conversational
    {"prompt": "The sky is", "completion": " blue.", "label": True},
    {"prompt": "The sky is", "completion": " green.", "label": False},
]
KTO_CONV = [
    {
        "prompt": SKY,
        "completion": [{"role": "assistant", "content": "It is green."}],
        "label": False,
    }
]


def test_kto_rows_never_become_demonstrations(Session, saved, tmp_path, cli):
    kto = "error: unpaired preference (KTO) rows (prompt, completion, label) cannot be imported"
    for project in ("s", "p"):
        for rows in (KTO, KTO_CONV):
            path = write_jsonl(tmp_path / "kto.jsonl", rows)
            refused(cli, Session, saved, path, project, kto.removeprefix("error: "))
    # One KTO row in the middle of a prompt-completion file: that row, by line, with why.
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"prompt": "A?", "completion": "a."}, KTO[1], {"prompt": "B?", "completion": "b."}],
    )
    out = cli("import", str(mixed), "--project", "s", "--json", user="admin")
    assert out.code == 1 and out.json()["errors"][0]["where"] == "line 2"
    assert out.json()["errors"][0]["error"].startswith("unpaired preference (KTO) rows")
    assert counts(Session) == saved["before"]
    out = cli("import", str(mixed), "--project", "s", "--skip-invalid", "--json", user="admin")
    assert out.code == 0 and out.json()["labels_added"] == 2
    with Session() as s:
        demos = set(s.scalars(select(Response.text).join(Demonstration)))
    assert demos == {"Hello.", "a.", "b."}  # " green." (label false) is nowhere a demonstration


def test_stepwise_rows_are_refused_or_taken_as_prompts_on_purpose(Session, saved, tmp_path, cli):
    rows = [
        {
            "prompt": "Which number is larger, 9.8 or 9.11?",
            "completions": ["The fractional part of 9.8 is 0.8.", "Hence, 9.11 > 9.8."],
            "labels": [True, False],
        }
    ]
    path = write_jsonl(tmp_path / "step.jsonl", rows)
    refused(
        cli, Session, saved, path, "s", "stepwise-supervision rows (prompt, completions, labels)"
    )
    out = cli("import", str(path), "--project", "s", "--format", "prompts", "--json", user="admin")
    assert out.code == 0, out.err
    summary = out.json()
    assert (summary["prompts_added"], summary["tasks_added"], summary["labels_added"]) == (1, 1, 0)
    assert "columns completions, labels were left out" in " ".join(summary["notes"])


@pytest.mark.parametrize(
    "row, message",
    [
        ({"text": "The sky is blue."}, "language-modeling rows (a 'text' column)"),
        (
            {"prompt": SKY, "completion": [{"role": "assistant", "content": "Blue."}], "tools": []},
            "tool-calling rows",
        ),
        (
            {
                "messages": [
                    *SKY,
                    {"role": "assistant", "content": "", "tool_calls": [{"name": "look_up"}]},
                    {"role": "tool", "content": "blue"},
                    {"role": "assistant", "content": "Blue."},
                ]
            },
            "tool-calling rows",
        ),
        (
            {"images": ["sky.png"], "prompt": SKY, "chosen": "Blue.", "rejected": "Red."},
            "rows with images",
        ),
        (
            {
                "prompt": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}
                ],
                "completion": [{"role": "assistant", "content": "Blue."}],
            },
            "rows with images",
        ),
    ],
)
def test_types_no_project_can_hold_are_refused(Session, saved, tmp_path, cli, row, message):
    path = write_jsonl(tmp_path / "x.jsonl", [row])
    refused(cli, Session, saved, path, "s", message)


def test_standard_implicit_prompt_is_split_as_trl_does(Session, saved, tmp_path, cli):
    rows = [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Paris is the capital of France.", "rejected": "Paris is a city in Texas."},
    ]
    out = cli("import", str(write_jsonl(tmp_path / "i.jsonl", rows)), "--project", "p", "--json",
              user="admin")  # fmt: skip
    assert out.code == 0, out.err
    assert (out.json()["format"], out.json()["labels_added"]) == ("preference", 2)
    with Session() as s:
        got = {
            t.prompt.messages[0]["content"]: (t.response_a.text, t.response_b.text)
            for t in s.scalars(select(Task).join(Prompt).where(Prompt.source == "i.jsonl"))
        }
    # trl.extract_prompt: the common prefix, a space before the split going with the answers
    assert got == {
        "The sky is": (" blue.", " green."),
        "Paris is": (" the capital of France.", " a city in Texas."),
    }
    before = counts(Session)
    for bad, message in (
        ({"chosen": "Blue.", "rejected": "Green."}, "share no opening text"),
        ({"chosen": "The sky", "rejected": "The sky is green."}, "is the start of the other"),
    ):
        out = cli("import", str(write_jsonl(tmp_path / "b.jsonl", [bad])), "--project", "p",
                  user="admin")  # fmt: skip
        assert out.code == 1 and message in out.err, out.err
    assert counts(Session) == before


def test_system_column_is_kept_as_the_first_message(Session, saved, tmp_path):
    rows = [{"system": "Answer in French.", "prompt": "Hello?", "completion": "Bonjour."}]
    with Session.begin() as s:
        importer.import_file(s, project="s", path=write_jsonl(tmp_path / "sys.jsonl", rows))
    with Session() as s:
        prompt = s.scalar(select(Prompt).where(Prompt.source == "sys.jsonl"))
    assert prompt.messages == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello?"},
    ]


# --------------------------------------------------------------------------- AlpacaFarm


def alpaca(i: int, preference, **extra) -> dict:
    return {
        "instruction": f"Name a colour ({i}).",
        "input": "",
        "output_1": f"Red {i}.",
        "output_2": f"Blue {i}.",
        "preference": preference,
        **extra,
    }


def test_alpacafarm_pairwise_rows(Session, saved, tmp_path, cli):
    rows = [alpaca(1, 1), alpaca(2, 2), alpaca(3, 1.5), alpaca(4, 2, input="Pick a warm one.")]
    out = cli("import", str(write_jsonl(tmp_path / "af.jsonl", rows)), "--project", "p", "--json",
              user="admin")  # fmt: skip
    assert out.code == 0, out.err
    assert (out.json()["format"], out.json()["labels_added"]) == ("alpacafarm", 4)
    with Session() as s:
        tasks = s.scalars(select(Task).join(Prompt).where(Prompt.source == "af.jsonl"))
        got = {
            t.prompt.messages[0]["content"]: (
                t.response_a.text,
                t.response_b.text,
                s.scalar(select(Preference.choice).where(Preference.task_id == t.id)),
            )
            for t in tasks
        }
    assert got == {
        "Name a colour (1).": ("Red 1.", "Blue 1.", Choice.a),  # 1 = output_1 better
        "Name a colour (2).": ("Red 2.", "Blue 2.", Choice.b),  # 2 = output_2 better
        "Name a colour (3).": ("Red 3.", "Blue 3.", Choice.tie),  # 1.5 = a tie
        "Name a colour (4).\n\nPick a warm one.": ("Red 4.", "Blue 4.", Choice.b),
    }
    before = counts(Session)
    weighted = write_jsonl(tmp_path / "w.jsonl", [alpaca(5, 1.73)])
    out = cli("import", str(weighted), "--project", "p", user="admin")
    assert out.code == 1 and "'preference' is '1.73': AlpacaFarm uses 1 (output_1)" in out.err
    assert counts(Session) == before
    # Without a preference column (outputs still to be judged): unlabeled comparison tasks.
    unjudged = [{k: v for k, v in alpaca(i, 1).items() if k != "preference"} for i in (6, 7)]
    out = cli("import", str(write_jsonl(tmp_path / "u.jsonl", unjudged)), "--project", "p",
              "--json", user="admin")  # fmt: skip
    assert (out.json()["tasks_added"], out.json()["labels_added"]) == (2, 0)
    with Session() as s:
        statuses = set(
            s.scalars(select(Task.status).join(Prompt).where(Prompt.source == "u.jsonl"))
        )
    assert statuses == {TaskStatus.open}


# --------------------------------------------------------------------------- column maps


def test_column_and_value_maps(Session, saved, tmp_path, cli):
    rows = [  # a FineGrainedRLHF-like file: our fields under other names
        {"question": "Q1?", "answer_x": "X1", "answer_y": "Y1", "winner": "x", "topic": "t"},
        {"question": "Q2?", "answer_x": "X2", "answer_y": "Y2", "winner": "same", "topic": "t"},
    ]
    path = write_jsonl(tmp_path / "fg.jsonl", rows)
    out = cli("import", str(path), "--project", "p", user="admin")
    assert out.code == 1 and "other columns can be renamed with --map" in out.err
    args = ["--map", "prompt=question,a=answer_x,b=answer_y,choice=winner,category=topic"]
    out = cli("import", str(path), "--project", "p", *args, "--map-values",
              "choice:x=a,y=b,same=tie", "--json", user="admin")  # fmt: skip
    assert out.code == 0, out.err
    assert (out.json()["format"], out.json()["labels_added"]) == ("comparison", 2)
    with Session() as s:
        got = set(
            s.execute(
                select(Prompt.category, Preference.choice)
                .join(Task, Task.prompt_id == Prompt.id)
                .join(Preference, Preference.task_id == Task.id)
                .where(Prompt.source == "fg.jsonl")
            )
        )
    assert got == {("t", Choice.a), ("t", Choice.tie)}

    before = counts(Session)
    for extra, message in (
        (["--map", "prompt=nope"], "--map names column 'nope', which the file does not have"),
        (["--map", "prompt=question,a=answer_x,b=answer_y,choice=winner"], "'choice' is 'x'"),
        (["--map", "prompt"], "write FIELD=COLUMN"),
        (["--map-values", "choice:x=left"], "'left' is not a choice"),
    ):
        out = cli("import", str(path), "--project", "p", *extra, user="admin")
        assert out.code == 1 and message in out.err, out.err
    assert counts(Session) == before

    # Alpaca SFT rows: instruction / input / output into a write project, input appended.
    sft = write_jsonl(
        tmp_path / "alpaca.jsonl",
        [{"instruction": "Translate.", "input": "chat", "output": "cat"}],
    )
    out = cli("import", str(sft), "--project", "s", "--map", "prompt=instruction,completion=output",
              "--json", user="admin")  # fmt: skip
    assert out.code == 0 and out.json()["labels_added"] == 1, out.err
    # Candidates under another name, for a ranking project.
    ranked = write_jsonl(tmp_path / "k.jsonl", [{"q": "Pick.", "outs": ["x", "y", "z"]}])
    out = cli("import", str(ranked), "--project", "r", "--map", "prompt=q,responses=outs",
              "--json", user="admin")  # fmt: skip
    assert out.code == 0 and out.json()["tasks_added"] == 1, out.err
    with Session() as s:
        prompt = s.scalar(select(Prompt).where(Prompt.source == "alpaca.jsonl"))
    assert prompt.messages == [{"role": "user", "content": "Translate.\n\nchat"}]


@pytest.fixture
def ui_db(db_url):
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process: this test's db
    yield
    app.ui.db._sessionmaker.clear()


def test_the_import_page_takes_the_same_maps(Session, saved, ui_db):
    data = json.dumps({"q": "Page?", "x": "One", "y": "Two", "w": 2}).encode() + b"\n"
    common = dict(user_id=saved["admin"], project_id=saved["project"], filename="m.jsonl")
    bad = admin_import.import_upload(data=data, column_map="prompt", **common)
    assert not bad.ok and bad.message.startswith("Column mapping 'prompt': write FIELD=COLUMN")
    assert counts(Session) == saved["before"]
    done = admin_import.import_upload(
        data=data, column_map="prompt=q,a=x,b=y,choice=w", value_map="choice:1=a,2=b", **common
    )
    assert done.ok, done.message
    with Session() as s:
        task = s.scalar(select(Task).join(Prompt).where(Prompt.source == "m.jsonl"))
        choice = s.scalar(select(Preference.choice).where(Preference.task_id == task.id))
        assert (task.response_a.text, task.response_b.text, choice) == ("One", "Two", Choice.b)


def test_the_import_page_mapping_fields_in_streamlit(Session, saved, ui_db):
    from streamlit.testing.v1 import AppTest

    with app.ui.db.transaction() as s:
        token = web_sessions.start(s, user_id=saved["admin"])
    at = AppTest.from_string(
        "from app.ui.pages import admin_import\nadmin_import.render()\n", default_timeout=30
    )
    at.session_state[state.TOKEN] = token
    at.run()
    rows = [{"instruction": f"I{i}", "output_1": f"o{i}", "output_2": f"t{i}", "pref": i % 2 + 1}
            for i in range(3)]  # fmt: skip
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    at.file_uploader(key="import-file").set_value(("af.jsonl", data, "application/json"))
    at.text_input(key="import-map").input("prompt=instruction,a=output_1,b=output_2,choice=pref")
    at.text_input(key="import-map-values").input("choice:1=a,2=b")
    at.run()
    at.button(key="import-go").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Imported 3 of 3 rows (comparison)" in m.value for m in at.success), [
        m.value for m in (*at.success, *at.error)
    ]
    with Session() as s:
        choices = list(
            s.scalars(
                select(Preference.choice)
                .join(Task, Task.id == Preference.task_id)
                .join(Prompt, Prompt.id == Task.prompt_id)
                .where(Prompt.source == "af.jsonl")
                .order_by(Prompt.id)
            )
        )
    assert choices == [Choice.a, Choice.b, Choice.a]


def test_an_alpacafarm_label_reaches_the_snapshot_the_right_way_round(Session, saved, tmp_path):
    from collections import Counter

    from labeling import snapshots
    from labeling.projects import get_project

    rows = [alpaca(1, 2), alpaca(2, 1), alpaca(3, 1.5)]
    with Session.begin() as s:
        importer.import_file(s, project="p", path=write_jsonl(tmp_path / "af.jsonl", rows))
    with Session() as s:
        stats: Counter = Counter()
        pairs = snapshots._preference_rows(s, get_project(s, "p"), False, None, stats)
    got = {
        row["prompt"][-1]["content"]: (row["chosen"][0]["content"], row["rejected"][0]["content"])
        for _, row in pairs
        if row["prompt"][-1]["content"].startswith("Name a colour")
    }
    assert got == {
        "Name a colour (1).": ("Blue 1.", "Red 1."),  # 2: output_2 was better
        "Name a colour (2).": ("Red 2.", "Blue 2."),
    }
    assert stats["ties"] == 1  # the tie is counted, not turned into a pair


def test_ultrafeedback_style_prompt_with_whole_conversations(Session, saved, tmp_path):
    conversation = [*SKY, {"role": "assistant", "content": "Blue."}]
    wrong = [*SKY, {"role": "assistant", "content": "Green."}]
    rows = [{"prompt": SKY[0]["content"], "chosen": conversation, "rejected": wrong,
             "score_chosen": 9.0, "score_rejected": 2.0}]  # fmt: skip
    with Session.begin() as s:
        result = importer.import_file(s, project="p", path=write_jsonl(tmp_path / "uf.jsonl", rows))
    assert (result.format, result.labels_added) == ("preference", 1)
    with Session() as s:
        task = s.scalar(select(Task).join(Prompt).where(Prompt.source == "uf.jsonl"))
        assert task.prompt.messages == SKY
        assert (task.response_a.text, task.response_b.text) == ("Blue.", "Green.")
    before = counts(Session)
    rows[0]["prompt"] = "Something else?"
    with pytest.raises(importer.ImportFailed, match="'prompt' is not the last user turn"):
        with Session.begin() as s:
            importer.import_file(s, project="p", path=write_jsonl(tmp_path / "uf2.jsonl", rows))
    assert counts(Session) == before
