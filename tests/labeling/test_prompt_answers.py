"""Gold answers on prompts (verifiable rewards), on SQLite and PostgreSQL: the migration with
data, the project's answer pattern, import of prompt/answer rows, sft snapshots that carry the
answer (prompt-only rows included) and keep their old hash when there are no answers."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from import_rows import counts, write_jsonl
from sqlalchemy import inspect, select

from labeling import importer, migrate, projects, snapshots
from labeling.errors import InvalidInput
from labeling.models import (
    AuthorKind,
    Demonstration,
    Origin,
    Project,
    ProjectKind,
    Prompt,
    Snapshot,
    Task,
)
from labeling.tasks import add_prompt, add_response, add_write_task

# --- migration ---------------------------------------------------------------------------


def test_migration_down_and_up_keeps_the_data(engine, Session):  # noqa: N803
    with Session.begin() as s:
        project = projects.create_project(s, name="math", kind="sft", answer_pattern=r"= (\d+)")
        prompt = add_prompt(s, project, "What is 2+2?")
        prompt.answer = "4"
        task = add_write_task(s, project, prompt)
        response = add_response(s, prompt, "2+2 = 4")
        s.add(Demonstration(task_id=task.id, origin=Origin.imported, response_id=response.id))
    try:
        migrate.downgrade(engine, "0003")
        columns = {c["name"] for c in inspect(engine).get_columns("prompts")}
        assert "answer" not in columns and "messages" in columns
        assert "answer_pattern" not in {c["name"] for c in inspect(engine).get_columns("projects")}
        with engine.connect() as conn:  # nothing cascaded away with the dropped columns
            for table in ("projects", "prompts", "tasks", "responses", "demonstrations"):
                assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 1
    finally:
        migrate.upgrade(engine)
    assert migrate.differences(engine) == []
    with Session() as s:
        prompt = s.scalar(select(Prompt))
        assert prompt.answer is None  # dropped with the column, back empty
        assert prompt.messages == [{"role": "user", "content": "What is 2+2?"}]
        assert s.scalar(select(Project.answer_pattern)) is None
        assert s.scalar(select(Task.id)) is not None


# --- the project's answer pattern ----------------------------------------------------------


def test_answer_pattern_from_the_cli(cli, admin, Session):  # noqa: N803
    made = cli("projects", "create", "math", "--kind", "sft", "--answer-pattern",
               r"Answer: (\S+)", "--json", user=admin)  # fmt: skip
    assert made.code == 0, made.err
    assert made.json()["answer_pattern"] == r"Answer: (\S+)"
    bad = cli("projects", "edit", "math", "--answer-pattern", "(unclosed", user=admin)
    assert bad.code == 1 and "not a regular expression" in bad.err
    with Session() as s:
        assert s.scalar(select(Project.answer_pattern)) == r"Answer: (\S+)"  # kept
    edited = cli("projects", "edit", "math", "--answer-pattern", r"#### (\d+)", "--overlap",
                 "2", "--json", user=admin)  # fmt: skip
    assert edited.code == 0, edited.err
    assert edited.json()["changed"] == ["answer_pattern", "overlap"]
    cleared = cli("projects", "edit", "math", "--answer-pattern", "", "--json", user=admin)
    assert cleared.json()["answer_pattern"] is None
    listed = cli("projects", "list", "--json", user=admin).json()
    assert listed[0]["answer_pattern"] is None and listed[0]["overlap"] == 2
    assert cli("projects", "edit", "nope", "--overlap", "2", user=admin).code == 1


def test_answer_pattern_bounds(Session):  # noqa: N803
    with Session.begin() as s:
        for pattern, message in (("(", "not a regular expression"), ("x" * 501, "too long"),
                                 ("a\x00", "NUL"), (5, "must be text")):  # fmt: skip
            with pytest.raises(InvalidInput, match=message):
                projects.create_project(s, name="p", kind="sft", answer_pattern=pattern)
        project = projects.create_project(s, name="p", kind="sft", answer_pattern="   ")
        assert project.answer_pattern is None


# --- import --------------------------------------------------------------------------------


def sft(Session, name: str = "math") -> None:  # noqa: N803
    with Session.begin() as s:
        projects.create_project(s, name=name, kind=ProjectKind.sft)


def answers(Session) -> dict[str, str | None]:  # noqa: N803
    with Session() as s:
        return {p.messages[-1]["content"]: p.answer for p in s.scalars(select(Prompt))}


def test_import_prompt_answer_rows(Session, tmp_path, cli, admin):  # noqa: N803
    sft(Session)
    rows = [
        {"prompt": "What is 2+3?", "answer": "5"},
        {"prompt": "What is 10*10?", "answer": 100},  # a number cell
        {"prompt": "Half of one?", "answer": 0.5},
        {"prompt": "No answer known?"},
        {"prompt": "Empty cell?", "answer": "  "},
        {"messages": [{"role": "system", "content": "Be terse."},
                      {"role": "user", "content": "Capital of France?"}], "answer": " Paris "},
    ]  # fmt: skip
    out = cli("import", str(write_jsonl(tmp_path / "a.jsonl", rows)), "--project", "math",
              "--json", user=admin)  # fmt: skip
    assert out.code == 0, out.err
    summary = out.json()
    assert (summary["format"], summary["prompts_added"], summary["tasks_added"]) == (
        "prompts", 6, 6)  # fmt: skip
    assert summary["answers_added"] == 4
    assert answers(Session) == {
        "What is 2+3?": "5", "What is 10*10?": "100", "Half of one?": "0.5",
        "No answer known?": None, "Empty cell?": None, "Capital of France?": "Paris",
    }  # fmt: skip


def test_messages_with_a_demonstration_and_an_answer(Session):  # noqa: N803
    sft(Session)
    row = {"messages": [{"role": "user", "content": "What is 6*7?"},
                        {"role": "assistant", "content": "6*7 = 42"}], "answer": "42"}  # fmt: skip
    with Session.begin() as s:
        result = importer.import_rows(s, project="math", rows=[row])
    assert (result.format, result.labels_added, result.answers_added) == ("messages", 1, 1)
    assert answers(Session) == {"What is 6*7?": "42"}


def test_csv_and_parquet_answers(Session, tmp_path):  # noqa: N803
    sft(Session)
    path = tmp_path / "a.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "answer"])
        writer.writerows([["One plus one?", "2"], ["Nothing?", ""]])
    table = pa.table({"prompt": ["Two plus two?", "Three plus three?"], "answer": [4, None]})
    pq.write_table(table, tmp_path / "a.parquet")
    with Session.begin() as s:
        assert importer.import_file(s, project="math", path=path).answers_added == 1
        assert (
            importer.import_file(s, project="math", path=tmp_path / "a.parquet").answers_added == 1
        )
    assert answers(Session) == {
        "One plus one?": "2", "Nothing?": None, "Two plus two?": "4", "Three plus three?": None,
    }  # fmt: skip


def test_map_renames_a_column_to_answer(Session, tmp_path, cli, admin):  # noqa: N803
    sft(Session)
    rows = [{"question": "Natalia sold 48 clips ...", "solution": "48 + 24 = 72\n#### 72"}]
    out = cli("import", str(write_jsonl(tmp_path / "g.jsonl", rows)), "--project", "math",
              "--map", "prompt=question,answer=solution", "--json", user=admin)  # fmt: skip
    assert out.code == 0, out.err
    assert answers(Session) == {"Natalia sold 48 clips ...": "48 + 24 = 72\n#### 72"}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (["4"], "'answer' must be text or a number, got a list"),
        (True, "'answer' must be text or a number, got a boolean"),
        ("x" * 10_001, "'answer' is too long: 10,001 characters (limit 10,000)"),
        ("4\x00", "'answer' contains a NUL character"),
    ],
)
def test_a_bad_answer_is_a_row_error_and_nothing_is_written(
    Session,
    tmp_path,
    cli,
    admin,
    answer,
    message,  # noqa: N803
):
    sft(Session)
    before = counts(Session)
    rows = [{"prompt": "Fine?", "answer": "yes"}, {"prompt": "Bad?", "answer": answer}]
    out = cli("import", str(write_jsonl(tmp_path / "b.jsonl", rows)), "--project", "math",
              user=admin)  # fmt: skip
    assert out.code == 1
    assert f"line 2: {message}" in out.err and "nothing was imported" in out.err
    assert counts(Session) == before


def test_reimport_sets_a_missing_answer_and_never_replaces_one(Session, tmp_path, cli, admin):  # noqa: N803
    sft(Session)
    path = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "Q1?"}, {"prompt": "Q2?", "answer": "2"}])
    assert cli("import", str(path), "--project", "math", user=admin).code == 0
    before = counts(Session)

    # The same prompts, now with answers: Q1 gets its answer, Q2's is the same again.
    again = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "Q1?", "answer": "1"},
                                               {"prompt": "Q2?", "answer": "2"}])  # fmt: skip
    out = cli("import", str(again), "--project", "math", "--json", user=admin)
    assert out.code == 0, out.err
    assert (out.json()["duplicates"], out.json()["answers_added"]) == (2, 1)
    text = cli("import", str(again), "--project", "math", user=admin)
    assert "0 gold answers; 2 duplicates" in text.out, text.out
    assert counts(Session) == before  # no new prompt or task
    assert answers(Session) == {"Q1?": "1", "Q2?": "2"}

    # A different answer for Q2 is refused with the stored one named; nothing changes.
    wrong = write_jsonl(tmp_path / "w.jsonl", [{"prompt": "Q3?", "answer": "3"},
                                               {"prompt": "Q2?", "answer": "22"}])  # fmt: skip
    out = cli("import", str(wrong), "--project", "math", user=admin)
    assert out.code == 1
    assert "line 2: the prompt already has the gold answer '2'; this row gives '22'" in out.err
    assert answers(Session) == {"Q1?": "1", "Q2?": "2"}

    # --skip-invalid imports the good row and lists the refused one.
    out = cli("import", str(wrong), "--project", "math", "--skip-invalid", "--json", user=admin)
    assert out.code == 0, out.err
    assert [e["line"] for e in out.json()["skipped"]] == [2]
    assert answers(Session) == {"Q1?": "1", "Q2?": "2", "Q3?": "3"}


def test_two_rows_of_a_file_disagree_on_an_answer(Session):  # noqa: N803
    sft(Session)
    rows = [{"prompt": "Q?", "answer": "1"}, {"prompt": "Q?", "answer": "1"},
            {"prompt": "Q?", "answer": "2"}]  # fmt: skip
    with Session.begin() as s, pytest.raises(importer.ImportFailed) as failed:
        importer.import_rows(s, project="math", rows=rows)
    assert "row 3: 'answer' is '2' but row 1 gives the same prompt the answer '1'" in str(
        failed.value
    )
    assert answers(Session) == {}


# --- snapshots -------------------------------------------------------------------------------


def seed_math(s, *, pattern: str | None = r"= (\d+)") -> Project:
    """Q1: a demonstration and an answer; Q2: an answer only; Q3: a demonstration only; Q4: an
    answer, but a gold (quality-check) item."""
    project = projects.create_project(s, name="math", kind="sft", answer_pattern=pattern)
    for question, answer, demo, gold in (("Q1?", "1", "so = 1", False), ("Q2?", "2", None, False),
                                          ("Q3?", None, "three", False), ("Q4?", "4", None, True)):  # fmt: skip
        prompt = add_prompt(s, project, question)
        prompt.answer = answer
        task = add_write_task(s, project, prompt, gold_text="four" if gold else None)
        if demo:
            response = add_response(s, prompt, demo, author_kind=AuthorKind.imported)
            s.add(Demonstration(task_id=task.id, origin=Origin.imported, response_id=response.id))
    s.flush()
    return project


def all_rows(snapshot) -> list[dict]:
    return snapshots.read_split(snapshot, "train") + snapshots.read_split(snapshot, "heldout")


def test_sft_snapshot_carries_answers_and_prompt_only_rows(Session):  # noqa: N803
    with Session.begin() as s:
        project = seed_math(s)
        snap, created = snapshots.create_snapshot(s, project=project, kind="sft")
        assert created
        rows = {r["messages"][0]["content"]: r for r in all_rows(snap)}
        assert set(rows) == {"Q1?", "Q2?", "Q3?"}  # Q4 is gold: left out
        assert rows["Q1?"]["messages"][-1] == {"role": "assistant", "content": "so = 1"}
        assert rows["Q2?"]["messages"] == [{"role": "user", "content": "Q2?"}]  # no answer turn
        assert [rows[q]["answer"] for q in ("Q1?", "Q2?", "Q3?")] == ["1", "2", None]
        assert (rows["Q2?"]["label_kind"], rows["Q1?"]["label_kind"]) == ("prompt", "demonstration")
        prompts = {p.messages[0]["content"]: p for p in s.scalars(select(Prompt))}
        assert all(rows[q]["split"] == prompts[q].split.value for q in rows)
        assert rows["Q2?"]["task_hash"] == s.scalar(
            select(Task.content_hash).where(Task.prompt_id == prompts["Q2?"].id)
        )
        assert snap.filters == {"include_gold": False, "answer_pattern": r"= (\d+)"}
        assert snap.stats == {"labels": 2, "demonstrations": 2, "gold_excluded": 0,
                              "answers": 2, "prompt_only": 1, "rows": 3}  # fmt: skip
        manifest = json.loads(snapshots.snapshot_files(snap)["manifest"].read_text())
        assert manifest["columns"][:3] == ["messages", "answer", "split"]
        assert snapshots.verify_snapshot(snap) == snap.sha256

        # with gold items, Q4 comes too; an origin filter keeps labels only
        with_gold, _ = snapshots.create_snapshot(s, project=project, kind="sft", include_gold=True)
        assert {r["messages"][0]["content"] for r in all_rows(with_gold)} >= {"Q4?"}
        labels, _ = snapshots.create_snapshot(s, project=project, kind="sft", origin="import")
        assert {r["label_kind"] for r in all_rows(labels)} == {"demonstration"}

        # a new answer is new content: a new hash
        prompts["Q3?"].answer = "3"
        s.flush()
        newer, created = snapshots.create_snapshot(s, project=project, kind="sft")
        assert created and newer.sha256 != snap.sha256


def test_no_answers_no_change_to_the_layout_or_the_hash(Session):  # noqa: N803
    """A project without gold answers gets the columns, filters, stats and hash it got before
    answers existed: the hash computed here the old way (no answer, split, answer_pattern)."""
    with Session.begin() as s:
        project = seed_math(s, pattern=None)
        for prompt in s.scalars(select(Prompt)):
            prompt.answer = None
        s.flush()
        snap, _ = snapshots.create_snapshot(s, project=project, kind="sft")
        rows = all_rows(snap)
        assert set(rows[0]) == {"messages", "prompt_hash", "task_hash", "label_kind", "origin"}
        assert snap.filters == {"include_gold": False}
        stats = {"labels": 2, "demonstrations": 2, "gold_excluded": 0, "rows": 2}
        assert snap.stats == stats
        header = {"format": 1, "kind": "sft", "filters": {"include_gold": False}, "stats": stats}
        splits = {split: snapshots.read_split(snap, split) for split in snapshots.SPLITS}
        assert snap.sha256 == snapshots.content_sha256(header, splits)
        schema = pq.read_schema(snapshots.snapshot_files(snap)["train"])
        assert schema.names == snapshots.SCHEMAS[snapshots.SnapshotKind.sft].names

        # a pattern alone is recorded (training reads it from the snapshot)
        project.answer_pattern = r"(\d+)"
        s.flush()
        patterned, created = snapshots.create_snapshot(s, project=project, kind="sft")
        assert created and patterned.filters["answer_pattern"] == r"(\d+)"
        assert set(all_rows(patterned)[0]) == set(rows[0])


def test_answers_only_project_snapshots_from_the_cli(Session, tmp_path, cli, admin):  # noqa: N803
    """A project with prompts and answers and no demonstration at all still snapshots."""
    sft(Session)
    rows = [{"prompt": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(12)]
    assert cli("import", str(write_jsonl(tmp_path / "a.jsonl", rows)), "--project", "math",
               user=admin).code == 0  # fmt: skip
    out = cli("snapshot", "create", "--project", "math", "--kind", "sft", "--json", user=admin)
    assert out.code == 0, out.err
    made = out.json()
    assert made["rows"] == 12 and made["stats"]["prompt_only"] == 12
    assert made["filters"] == {"include_gold": False, "answer_pattern": None}
    with Session() as s:
        snap = s.get(Snapshot, made["id"])
        got = {r["messages"][0]["content"]: r["answer"] for r in all_rows(snap)}
    assert got == {r["prompt"]: r["answer"] for r in rows}
    again = cli("snapshot", "create", "--project", "math", "--kind", "sft", "--json", user=admin)
    assert again.json()["created"] is False and again.json()["sha256"] == made["sha256"]
