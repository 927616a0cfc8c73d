"""Importing existing annotations (labels from another tool) on SQLite and PostgreSQL.

Preference rows may carry `labeler`, `shown_left`, `strength`, `seconds` and `created_at`:
each row with a labeler is that labeler's label (one per item and labeler), unknown names
become inactive accounts, re-importing adds nothing, and the labels are then audited by
`quality_report` like labels given in the app.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from labeling import importer
from labeling.accounts import users
from labeling.import_formats import ColumnMap
from labeling.models import Choice, Origin, Preference, Response, Role, Task, TaskStatus, User
from labeling.projects import create_project
from labeling.quality import quality_report
from tests import import_rows
from tests.import_rows import pairs, write_jsonl


def counts(Session) -> dict[str, int]:  # noqa: N803
    return import_rows.counts(Session, (*import_rows.TABLES, User))


def project(Session, name="p", kind="pairwise", **values):  # noqa: N803
    with Session.begin() as s:
        return create_project(s, name=name, kind=kind, **values).id


def run_import(Session, path, name="p", **kw):  # noqa: N803
    with Session.begin() as s:
        return importer.import_file(s, project=name, path=path, **kw)


def labels_of(Session, prompt_text: str) -> dict[str | None, dict]:  # noqa: N803
    """{labeler name (None: no labeler): what their label on the prompt's task says}, with
    the winner and the left answer as texts (so A/B order does not matter)."""
    with Session() as s:
        rows = s.execute(
            select(Preference, Task, User.name)
            .join(Task, Task.id == Preference.task_id)
            .outerjoin(User, User.id == Preference.user_id)
        ).all()
        texts = dict(s.execute(select(Response.id, Response.text)).all())
        out = {}
        for pref, task, name in rows:
            if task.prompt.messages[-1]["content"] != prompt_text:
                continue
            a, b = texts[task.response_a_id], texts[task.response_b_id]
            out[name] = {
                "winner": {Choice.a: a, Choice.b: b}.get(pref.choice, pref.choice.value),
                "left": texts.get(pref.left_response_id),
                "strength": pref.strength,
                "ms": pref.time_spent_ms,
                "created_at": pref.created_at,
                "origin": pref.origin,
                "task": (task.id, task.labels_count, task.overlap, task.status),
            }
        return out


def row(i, labeler=None, flip=False, **fields):
    chosen, rejected = f"Good answer {i}.", f"Bad answer {i}."
    if flip:
        chosen, rejected = rejected, chosen
    out = {"prompt": f"Question {i}?", "chosen": chosen, "rejected": rejected}
    if labeler is not None:
        out["labeler"] = labeler
    return out | fields


# --------------------------------------------------------------------------- JSONL


def test_several_labelers_per_item_and_reimport_adds_nothing(Session, tmp_path):
    project(Session, overlap=1)
    with Session.begin() as s:
        users.add_user(s, name="alice", role="labeler", password="a-long-passphrase-1")
    rows = [
        row(0, "alice", strength=2, shown_left="chosen", seconds=4.5,
            created_at="2024-05-01T12:30:00Z"),
        row(0, "bob", shown_left="rejected", created_at="2024-05-01 10:00:00"),  # naive: UTC
        row(0, "carol", flip=True, shown_left="chosen", strength=1,  # carol prefers the other
            created_at="2024-05-01T14:00:00+02:00"),
        row(1, "bob", seconds=0),
        row(1, "bob"),  # the same label again: a duplicate
        row(2),  # no labeler: one imported label, as before
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "labels.jsonl", rows)
    result = run_import(Session, path)
    assert (result.imported, result.duplicates, result.tasks_added) == (5, 1, 3)
    assert (result.labels_added, result.labelers_created) == (5, 2)
    assert result.as_dict()["labelers_created"] == 2

    got = labels_of(Session, "Question 0?")
    assert set(got) == {"alice", "bob", "carol"}
    assert got["alice"]["winner"] == "Good answer 0." and got["alice"]["left"] == "Good answer 0."
    assert (got["alice"]["strength"], got["alice"]["ms"]) == (2, 4500)
    assert got["alice"]["created_at"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert got["bob"]["winner"] == "Good answer 0." and got["bob"]["left"] == "Bad answer 0."
    assert got["bob"]["created_at"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert got["bob"]["strength"] is None and got["bob"]["ms"] is None
    assert got["carol"]["winner"] == "Bad answer 0." and got["carol"]["left"] == "Bad answer 0."
    assert got["carol"]["created_at"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert {g["origin"] for g in got.values()} == {Origin.imported}
    # one task with three labels: the overlap is raised so that they all fit
    (task,) = {g["task"] for g in got.values()}
    assert task[1:] == (3, 3, TaskStatus.done)
    assert labels_of(Session, "Question 1?")["bob"]["ms"] == 0
    plain = labels_of(Session, "Question 2?")
    assert list(plain) == [None] and plain[None]["left"] is None
    assert plain[None]["task"][1:] == (1, 1, TaskStatus.done)

    with Session() as s:
        accounts = {u.name: u for u in s.scalars(select(User))}
        assert accounts["alice"].active is True  # an existing account is used as it is
        for name in ("bob", "carol"):
            u = accounts[name]
            assert (u.role, u.active, u.password_hash) == (Role.labeler, False, None)
            assert users.authenticate(s, name, "") is None
            assert users.authenticate(s, name, "a-long-passphrase-1") is None

    before = counts(Session)
    again = run_import(Session, path)
    assert (again.imported, again.duplicates, again.labels_added) == (0, 6, 0)
    assert again.labelers_created == 0
    assert counts(Session) == before


def test_labels_on_existing_tasks_follow_their_a_and_b(Session, tmp_path):
    """Tasks imported unlabeled (A/B by a coin, so some are the other way round) then get
    labelers' labels: each winner is the answer the row chose; an existing (item, labeler)
    label makes a row a duplicate whatever its choice; task counters stay consistent."""
    project(Session, overlap=2)
    run_import(Session, write_jsonl(tmp_path / "tasks.jsonl", pairs(20)), unlabeled=True)
    with Session() as s:
        a_texts = {
            t.response_a.text for t in s.scalars(select(Task))
        }  # the coin put both orders in
    assert any(t.startswith("Good") for t in a_texts) and any(t.startswith("Bad") for t in a_texts)

    rows = []
    for i in range(20):
        rows.append(row(i, "ann", shown_left="chosen" if i % 2 else "rejected", seconds=i))
        rows.append(row(i, "ben", flip=True, shown_left="chosen"))
    first = run_import(Session, write_jsonl(tmp_path / "labels.jsonl", rows))
    assert (first.imported, first.duplicates, first.tasks_added, first.labels_added) == (
        40, 0, 0, 40,
    )  # fmt: skip
    for i in range(20):
        got = labels_of(Session, f"Question {i}?")
        assert got["ann"]["winner"] == f"Good answer {i}."
        assert got["ann"]["left"] == (f"Good answer {i}." if i % 2 else f"Bad answer {i}.")
        assert got["ann"]["ms"] == i * 1000
        assert got["ben"]["winner"] == got["ben"]["left"] == f"Bad answer {i}."
        assert got["ann"]["task"][1:] == (2, 2, TaskStatus.done)

    # A third labeler on some items raises their overlap; ann again with another choice is
    # a duplicate (the label exists), not an error.
    more = [row(i, "cid") for i in range(5)] + [row(0, "ann", flip=True)]
    third = run_import(Session, write_jsonl(tmp_path / "more.jsonl", more))
    assert (third.imported, third.duplicates, third.labels_added) == (5, 1, 5)
    got = labels_of(Session, "Question 0?")
    assert got["ann"]["winner"] == "Good answer 0."  # unchanged
    assert got["cid"]["task"][1:] == (3, 3, TaskStatus.done)
    assert labels_of(Session, "Question 9?")["ann"]["task"][1:] == (2, 2, TaskStatus.done)


def test_rows_without_a_labeler_and_with_one_on_the_same_item(Session, tmp_path):
    """A file's own imported label (no labeler) and labelers' labels on one new item: both
    are kept, whichever row comes first; an imported label may carry a strength too."""
    project(Session, overlap=1)
    rows = [row(0), row(0, "dora"), row(1, "dora"), row(1, strength=3), row(1)]
    result = run_import(Session, write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert (result.imported, result.duplicates, result.labels_added) == (4, 1, 4)
    for i in (0, 1):
        got = labels_of(Session, f"Question {i}?")
        assert set(got) == {None, "dora"}
        assert got[None]["task"][1:] == (2, 2, TaskStatus.done)
    assert labels_of(Session, "Question 1?")[None]["strength"] == 3


def test_comparison_and_alpacafarm_rows(Session, tmp_path):
    project(Session)
    rows = [
        {"prompt": "Q0?", "a": "x0", "b": "y0", "choice": "b", "labeler": "eve",
         "shown_left": "a", "strength": 3},
        {"prompt": "Q0?", "a": "x0", "b": "y0", "choice": "a", "labeler": "fay",
         "shown_left": "chosen"},
        {"prompt": "Q1?", "a": "x1", "b": "y1", "choice": "tie", "labeler": "eve",
         "shown_left": "b"},
    ]  # fmt: skip
    result = run_import(Session, write_jsonl(tmp_path / "cmp.jsonl", rows))
    assert (result.format, result.labels_added, result.labelers_created) == ("comparison", 3, 2)
    got = labels_of(Session, "Q0?")
    assert (got["eve"]["winner"], got["eve"]["left"], got["eve"]["strength"]) == ("y0", "x0", 3)
    assert (got["fay"]["winner"], got["fay"]["left"]) == ("x0", "x0")
    assert labels_of(Session, "Q1?")["eve"]["winner"] == "tie"
    assert labels_of(Session, "Q1?")["eve"]["left"] == "y1"

    alpaca = [
        {"instruction": "Q2?", "input": "", "output_1": "o1", "output_2": "o2", "preference": 2,
         "labeler": "eve", "shown_left": "output_1", "seconds": 12},
    ]  # fmt: skip
    result = run_import(Session, write_jsonl(tmp_path / "alpaca.jsonl", alpaca))
    assert (result.format, result.labels_added, result.labelers_created) == ("alpacafarm", 1, 0)
    got = labels_of(Session, "Q2?")["eve"]
    assert (got["winner"], got["left"], got["ms"]) == ("o2", "o1", 12_000)


def test_column_map_names_the_label_columns(Session, tmp_path):
    project(Session)
    rows = [
        {"prompt": "Question 0?", "chosen": "Good answer 0.", "rejected": "Bad answer 0.",
         "annotator": "gus", "side": "L", "time": 3.25, "when": "2023-01-02T03:04:05"},
    ]  # fmt: skip
    mapping = ColumnMap.parse(
        "labeler=annotator,shown_left=side,seconds=time,created_at=when", "shown_left:L=chosen"
    )
    result = run_import(Session, write_jsonl(tmp_path / "m.jsonl", rows), mapping=mapping)
    assert result.labelers_created == 1
    got = labels_of(Session, "Question 0?")["gus"]
    assert (got["left"], got["ms"]) == ("Good answer 0.", 3250)
    assert got["created_at"] == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_unlabeled_leaves_the_label_columns_out(Session, tmp_path):
    project(Session)
    before = counts(Session)["users"]
    result = run_import(
        Session, write_jsonl(tmp_path / "u.jsonl", [row(0, "hal", strength=2)]), unlabeled=True
    )
    assert (result.tasks_added, result.labels_added) == (1, 0)
    assert any("labeler" in note for note in result.notes)
    assert counts(Session)["users"] == before


# --------------------------------------------------------------------------- CSV, Parquet


def test_csv_file_with_label_columns(Session, tmp_path, cli, admin):
    import pandas as pd

    project(Session)
    df = pd.DataFrame(
        {
            "prompt": ["Question 0?", "Question 0?", "Question 1?"],
            "chosen": ["Good answer 0.", "Good answer 0.", "Good answer 1."],
            "rejected": ["Bad answer 0.", "Bad answer 0.", "Bad answer 1."],
            "labeler": ["ivy", "jon", "ivy"],
            "shown_left": ["rejected", "", "chosen"],
            "strength": ["3", "", "1"],
            "seconds": ["2.5", "7", ""],
            "created_at": ["2024-02-03T04:05:06Z", "", "2024-02-03"],
        }
    )
    path = tmp_path / "labels.csv"
    df.to_csv(path, index=False)
    out = cli("import", str(path), "--project", "p", "--json", user=admin)
    assert out.code == 0, out.err
    summary = out.json()
    assert (summary["labels_added"], summary["labelers_created"]) == (3, 2)
    got = labels_of(Session, "Question 0?")
    assert (got["ivy"]["left"], got["ivy"]["strength"], got["ivy"]["ms"]) == (
        "Bad answer 0.", 3, 2500,
    )  # fmt: skip
    assert got["ivy"]["created_at"] == datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (got["jon"]["left"], got["jon"]["strength"], got["jon"]["ms"]) == (None, None, 7000)
    one = labels_of(Session, "Question 1?")["ivy"]
    assert one["created_at"] == datetime(2024, 2, 3, tzinfo=UTC) and one["ms"] is None
    out = cli("import", str(path), "--project", "p", "--json", user=admin)
    assert (out.json()["labels_added"], out.json()["duplicates"]) == (0, 3)
    path.with_name("more.csv").write_text(  # the text summary names the accounts it made
        "prompt,chosen,rejected,labeler\nQuestion 2?,Good 2.,Bad 2.,kim\n"
    )
    out = cli("import", str(path.with_name("more.csv")), "--project", "p", user=admin)
    assert out.code == 0 and "1 labelers created (inactive: they cannot log in)" in out.out


def test_parquet_file_with_label_columns(Session, tmp_path):
    import pandas as pd

    project(Session)
    df = pd.DataFrame(
        {
            "prompt": ["Question 0?", "Question 0?", "Question 1?"],
            "chosen": ["Good answer 0.", "Bad answer 0.", "Good answer 1."],
            "rejected": ["Bad answer 0.", "Good answer 0.", "Bad answer 1."],
            "labeler": ["kim", "lou", None],  # None: an imported label without a labeler
            "shown_left": ["chosen", "rejected", None],
            "strength": [2, None, 1],  # a float column with NaN
            "seconds": [1.5, 30.0, None],
            "created_at": pd.to_datetime(
                ["2024-03-04 05:06:07", None, "2024-03-05 00:00:00"]
            ).tz_localize("Europe/Paris"),
        }
    )
    path = tmp_path / "labels.parquet"
    df.to_parquet(path)
    result = run_import(Session, path)
    assert (result.labels_added, result.labelers_created, result.tasks_added) == (3, 2, 2)
    got = labels_of(Session, "Question 0?")
    assert (got["kim"]["left"], got["kim"]["strength"], got["kim"]["ms"]) == (
        "Good answer 0.", 2, 1500,
    )  # fmt: skip
    assert got["kim"]["created_at"] == datetime(2024, 3, 4, 4, 6, 7, tzinfo=UTC)  # CET: +1
    assert (got["lou"]["winner"], got["lou"]["left"]) == ("Bad answer 0.", "Good answer 0.")
    assert got["lou"]["strength"] is None and got["lou"]["ms"] == 30_000
    plain = labels_of(Session, "Question 1?")[None]
    assert plain["strength"] == 1 and plain["created_at"] == datetime(2024, 3, 4, 23, tzinfo=UTC)
    assert run_import(Session, path).labels_added == 0


# --------------------------------------------------------------------------- refused


def test_conflicting_rows_are_refused_and_nothing_is_written(Session, tmp_path):
    project(Session)
    run_import(Session, write_jsonl(tmp_path / "a.jsonl", [row(9, "old")]))
    before = counts(Session)
    rows = [row(0, "max"), row(1, "max"), row(0, "max", flip=True), row(1, "max", strength=2)]
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, write_jsonl(tmp_path / "b.jsonl", rows))
    assert [(e.number, e.error) for e in failed.value.result.errors] == [
        (3, "'labeler' 'max' labeled this pair on line 1 with a different choice: a labeler "
            "gives an item one label"),
        (4, "'labeler' 'max' labeled this pair on line 2 with a different strength: a labeler "
            "gives an item one label"),
    ]  # fmt: skip
    assert "nothing was imported" in str(failed.value)
    assert counts(Session) == before  # no account for max either


BAD = [
    ({"strength": 7}, "'strength' is '7': use 1 (slightly better), 2 (clearly) or 3"),
    ({"strength": True}, "'strength' must be 1, 2 or 3, got a boolean"),
    ({"shown_left": "left"}, "'shown_left' is 'left': use chosen or rejected"),
    ({"seconds": -3}, "'seconds' is -3: it must be 0 or more"),
    ({"seconds": "soon"}, "'seconds' is 'soon': give a number of seconds"),
    ({"seconds": 10**9}, "'seconds' is 1000000000: at most 2,000,000 seconds a label"),
    ({"created_at": "yesterday"}, "'created_at' is 'yesterday': use an ISO 8601 time"),
    ({"created_at": 1700000000}, "'created_at' must be an ISO 8601 time (text) or a timestamp"),
    ({"labeler": ""}, "'labeler' is empty"),
    ({"labeler": "x" * 65}, "'labeler' is too long: 65 characters (limit 64)"),
    ({"labeler": "Jane Doe"}, "'labeler' 'Jane Doe' is not an account name"),
    ({"labeler": ["a"]}, "'labeler' must be a name (text), got a list"),
]


def test_every_bad_value_is_a_row_error_and_nothing_is_written(Session, tmp_path):
    project(Session)
    run_import(Session, write_jsonl(tmp_path / "a.jsonl", [row(9, "old")]))
    before = counts(Session)
    for n, (fields, message) in enumerate(BAD):
        rows = [row(0, "nia"), row(1, "nia", strength=1), row(2, "nia") | fields]
        with pytest.raises(importer.ImportFailed) as failed:
            run_import(Session, write_jsonl(tmp_path / f"bad{n}.jsonl", rows))
        errors = failed.value.result.errors
        assert len(errors) == 1 and errors[0].number == 3, (fields, errors)
        assert errors[0].error.startswith(message), (fields, errors[0].error)
        assert f"line 3: {message}" in str(failed.value)
    assert counts(Session) == before

    # a strength on a tie, shown_left chosen on a tie, label columns without a choice
    cmp = [
        ({"choice": "tie", "strength": 2},
         "'strength' applies to a decided choice (a or b), not to tie"),
        ({"choice": "tie", "shown_left": "chosen"},
         "'shown_left' is 'chosen': use a, b, chosen or rejected (the answer that labeler saw "
         "on the left) (chosen and rejected need a choice of a or b)"),
        ({"labeler": "nia"}, "'labeler' describes a label, but the row has no 'choice'"),
    ]  # fmt: skip
    for n, (fields, message) in enumerate(cmp):
        rows = [{"prompt": "Q?", "a": "x", "b": "y", **fields}]
        with pytest.raises(importer.ImportFailed) as failed:
            run_import(Session, write_jsonl(tmp_path / f"cmp{n}.jsonl", rows))
        (error,) = failed.value.result.errors
        assert error.error.startswith(message), (fields, error.error)
    assert counts(Session) == before

    # demonstrations carry no preference label
    project(Session, name="s", kind="sft")
    sft = [{"prompt": "Q?", "completion": "A.", "labeler": "nia", "seconds": 3}]
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, write_jsonl(tmp_path / "sft.jsonl", sft), name="s")
    assert [e.error for e in failed.value.result.errors] == [
        "'labeler', 'seconds' describe a preference label; prompt-completion rows cannot carry "
        "them (drop the column)"
    ]
    assert counts(Session) == before

    # with --skip-invalid the good rows go in, the bad one is listed
    rows = [row(0, "nia"), row(1, "nia", strength=9)]
    result = run_import(Session, write_jsonl(tmp_path / "skip.jsonl", rows), skip_invalid=True)
    assert (result.labels_added, [e.number for e in result.skipped]) == (1, [2])


# --------------------------------------------------------------------------- audited


def test_quality_report_audits_imported_labelers(Session, tmp_path):
    """Two imported labelers on 100 items: one who always picks the answer shown on the
    left (position bias, p < 0.01), one who picks the right answer whatever the side."""
    project(Session, name="q", overlap=2)
    rng = random.Random(3)
    rows = []
    for i in range(100):
        # careful: always the good answer, seen on either side
        rows.append(row(i, "careful", shown_left=rng.choice(["chosen", "rejected"]),
                        seconds=10 + i % 3))  # fmt: skip
        # lefty: whichever answer was on the left wins (written as that answer chosen)
        good_left = rng.random() < 0.5
        rows.append(row(i, "lefty", flip=not good_left, shown_left="chosen", seconds=2))
    path = write_jsonl(tmp_path / "audit.jsonl", rows)
    assert run_import(Session, path, name="q").labels_added == 200
    with Session() as s:
        report = quality_report(s, "q", bootstrap=0)
    by_name = {r["name"]: r for r in report["labelers"]}
    assert set(by_name) == {"careful", "lefty"}
    lefty, careful = by_name["lefty"], by_name["careful"]
    assert (lefty["labels"], careful["labels"]) == (100, 100)
    assert lefty["left_win_rate"] == 1.0 and lefty["position_bias"] is True
    assert lefty["left_p_value"] < 0.01 and "position_bias" in lefty["flags"]
    assert 0.35 < careful["left_win_rate"] < 0.65 and careful["position_bias"] is False
    assert lefty["median_seconds"] == 2.0 and careful["median_seconds"] == 11.0
    assert report["items"]["with_overlap"] == 100


def test_summary_json_has_labelers_created_only_with_a_labeler_column(Session, tmp_path):
    project(Session)
    plain = run_import(Session, write_jsonl(tmp_path / "a.jsonl", pairs(2))).as_dict()
    assert "labelers_created" not in plain
    labeled = run_import(Session, write_jsonl(tmp_path / "b.jsonl", [row(5, "oli")])).as_dict()
    assert labeled["labelers_created"] == 1
    assert json.loads(json.dumps(labeled, default=str))["labels_added"] == 1


def test_imported_labels_travel_through_snapshots(Session, tmp_path):
    """Each labeler's imported label is its own snapshot row, with the labeler's name, origin
    import and the margin of its strength; the labeler can be excluded by name."""
    from labeling import snapshots

    project(Session, overlap=1)
    rows = [row(0, "pia", strength=3), row(0, "quin", flip=True), row(1)]
    run_import(Session, write_jsonl(tmp_path / "s.jsonl", rows))

    def snap(**options):
        with Session.begin() as s:
            snapshot, _ = snapshots.create_snapshot(s, project="p", kind="preference", **options)
            return [r for split in snapshots.SPLITS for r in snapshots.read_split(snapshot, split)]

    plain = sorted((r["chosen"][0]["content"], r["margin"], r["origin"]) for r in snap())
    assert plain == [
        ("Bad answer 0.", 0.0, "import"),  # quin, no strength
        ("Good answer 0.", 1.0, "import"),  # pia, strength 3
        ("Good answer 1.", 0.0, "import"),  # no labeler
    ]
    # a quality-aware snapshot names the labeler and can leave one out
    got = {(r["labeler"], r["chosen"][0]["content"]) for r in snap(exclude_labelers=["quin"])}
    assert got == {("pia", "Good answer 0."), (None, "Good answer 1.")}
