"""`rlhf import` and labeling.importer, on SQLite and PostgreSQL.

Rows are written with raw DBAPI inserts (COPY on PostgreSQL), so several tests read them
back through the ORM to check that values round-trip as the ORM itself would write them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labeling import importer
from labeling.errors import InvalidInput
from labeling.hashing import prompt_hash, sha256_text, split_for_hash, task_hash
from labeling.import_formats import MAX_TEXT_CHARS
from labeling.models import (
    AuthorKind,
    Choice,
    Demonstration,
    Origin,
    Preference,
    Prompt,
    Response,
    Split,
    Task,
    TaskCandidate,
    TaskKind,
    TaskStatus,
)
from labeling.projects import create_project
from tests import import_rows
from tests.import_rows import pairs, write_jsonl

# ../shared beside the checkout (as in CI); RLHF_SHARED_DIR points elsewhere if needed.
SHARED = Path(os.environ.get("RLHF_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
HH_SAMPLE = SHARED / "data" / "hh-rlhf-harmless-sample.jsonl"
HH_EARLY_DIFF = [451, 519]  # pairs whose transcripts differ before the last assistant turn
HH_EMPTY_ANSWER = 275  # the chosen transcript ends with an empty assistant answer


def counts(Session) -> dict[str, int]:  # noqa: N803
    return import_rows.counts(Session, (*import_rows.TABLES, TaskCandidate))


def project(Session, name="p", kind="pairwise", **values):  # noqa: N803
    with Session.begin() as s:
        return create_project(s, name=name, kind=kind, **values).id


def run_import(Session, path, name="p", **kw):  # noqa: N803
    with Session.begin() as s:
        return importer.import_file(s, project=name, path=path, **kw)


# --------------------------------------------------------------------------- formats


def test_preference_rows_round_trip_through_the_orm(Session, tmp_path):
    project(Session, overlap=1, heldout_fraction=0.5)
    rows = pairs(30)
    rows[0] = {
        "prompt": 'Tabs\tnewlines\n back\\slash \r quotes " unicode é 漢字 🎉',
        "chosen": "line one\nline two\twith tab \\N not null",
        "rejected": '{"json": [1, 2]} \\\\ and ☃',
        "source": "unit-test",
        "category": "misc",
        "tags": ["a", "b"],
    }
    result = run_import(Session, write_jsonl(tmp_path / "p.jsonl", rows))
    assert (result.format, result.imported, result.duplicates) == ("preference", 30, 0)
    assert (result.prompts_added, result.responses_added, result.tasks_added) == (30, 60, 30)
    assert result.labels_added == 30

    with Session() as s:
        task = s.scalar(select(Task).join(Prompt).where(Prompt.category == "misc"))
        prompt = task.prompt
        messages = [{"role": "user", "content": rows[0]["prompt"]}]
        assert prompt.messages == messages
        assert prompt.content_hash == prompt_hash(messages)
        assert prompt.split == Split(split_for_hash(prompt.content_hash, 0.5))
        assert (prompt.source, prompt.tags) == ("unit-test", ["a", "b"])
        assert prompt.created_at.tzinfo is not None
        assert prompt.created_at.utcoffset().total_seconds() == 0
        assert abs((datetime.now(UTC) - prompt.created_at).total_seconds()) < 120
        assert task.kind == TaskKind.compare and task.status == TaskStatus.done
        assert (task.labels_count, task.overlap, task.priority) == (1, 1, 0)
        assert task.is_gold is False and task.gold is None and task.active_leases == 0
        assert task.response_a.text == rows[0]["chosen"]
        assert task.response_b.text == rows[0]["rejected"]
        assert task.response_a.author_kind == AuthorKind.imported
        assert task.response_a.content_hash == sha256_text(rows[0]["chosen"])
        assert task.content_hash == task_hash(
            "compare",
            prompt.content_hash,
            [sha256_text(rows[0]["chosen"]), sha256_text(rows[0]["rejected"])],
        )
        pref = s.scalar(select(Preference).where(Preference.task_id == task.id))
        assert (pref.origin, pref.choice, pref.user_id, pref.strength) == (
            Origin.imported,
            Choice.a,
            None,
            None,
        )
        assert pref.created_at.tzinfo is not None
        # Rows without their own source get the file name.
        other = s.scalar(select(Prompt).where(Prompt.category.is_(None)).limit(1))
        assert other.source == "p.jsonl" and other.tags is None


def test_conversational_and_implicit_prompt_preferences(Session, tmp_path):
    project(Session)
    system = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "Capital of France?"}
    rows = [
        {
            "prompt": [system, user],
            "chosen": [{"role": "assistant", "content": "Paris."}],
            "rejected": [{"role": "assistant", "content": "Lyon."}],
        },
        {
            "prompt": [
                user,
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And Spain?"},
            ],
            "chosen": [{"role": "assistant", "content": "Madrid."}],
            "rejected": [{"role": "assistant", "content": "Porto."}],
        },
    ]
    result = run_import(Session, write_jsonl(tmp_path / "conv.jsonl", rows))
    assert (result.format, result.tasks_added, result.labels_added) == ("preference", 2, 2)

    implicit = [
        {
            "chosen": [user, {"role": "assistant", "content": "It is Paris."}],
            "rejected": [user, {"role": "assistant", "content": "No idea."}],
        },
    ]
    result = run_import(Session, write_jsonl(tmp_path / "implicit.jsonl", implicit))
    assert (result.format, result.tasks_added) == ("preference", 1)
    with Session() as s:
        prompts = {json.dumps(p.messages) for p in s.scalars(select(Prompt))}
        texts = set(s.scalars(select(Response.text)))
    assert json.dumps([system, user]) in prompts
    assert json.dumps([user]) in prompts  # the implicit prompt: the shared prefix
    assert {"Paris.", "Lyon.", "Madrid.", "Porto.", "It is Paris.", "No idea."} <= texts

    differ = [
        {
            "chosen": [user, {"role": "assistant", "content": "A"}],
            "rejected": [
                {"role": "user", "content": "Other"},
                {"role": "assistant", "content": "B"},
            ],
        }
    ]
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, write_jsonl(tmp_path / "differ.jsonl", differ))
    assert "row 1" not in str(failed.value) and "line 1" in str(failed.value)
    assert "differ before the final assistant turn" in str(failed.value)


def test_unlabeled_pairs_have_no_labels_and_a_coin_for_the_order(Session, tmp_path):
    project(Session, overlap=2)
    rows = pairs(40)
    result = run_import(Session, write_jsonl(tmp_path / "p.jsonl", rows), unlabeled=True)
    assert (result.tasks_added, result.labels_added) == (40, 0)
    chosen = {r["chosen"] for r in rows}
    with Session() as s:
        tasks = list(s.scalars(select(Task)))
        assert s.scalar(select(func.count()).select_from(Preference)) == 0
        assert {(t.labels_count, t.status, t.overlap) for t in tasks} == {(0, TaskStatus.open, 2)}
        a_is_chosen = [t.response_a.text in chosen for t in tasks]
        for t in tasks:  # the hash names the order actually stored
            assert t.content_hash == task_hash(
                "compare",
                t.prompt.content_hash,
                [t.response_a.content_hash, t.response_b.content_hash],
            )
    assert 5 < sum(a_is_chosen) < 35  # a coin, not always the chosen answer first
    # The same pairs again, labeled: the same tasks (A/B order does not matter), nothing new.
    again = run_import(Session, write_jsonl(tmp_path / "p.jsonl", rows))
    assert (again.imported, again.duplicates, again.tasks_added) == (0, 40, 0)


def test_sft_messages_and_prompt_completion(Session, tmp_path):
    project(Session, name="s", kind="sft", overlap=2)
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    result = run_import(Session, write_jsonl(tmp_path / "m.jsonl", rows), name="s")
    assert (result.format, result.imported, result.labels_added) == ("messages", 2, 2)
    pc = [
        {"prompt": "Name a colour.", "completion": "Blue."},
        {
            "prompt": [{"role": "user", "content": "Name a fruit."}],
            "completion": [{"role": "assistant", "content": "Pear."}],
        },
    ]
    result = run_import(Session, write_jsonl(tmp_path / "pc.jsonl", pc), name="s")
    assert (result.format, result.tasks_added, result.labels_added) == ("prompt-completion", 2, 2)
    with Session() as s:
        demos = list(s.scalars(select(Demonstration)))
        assert len(demos) == 4
        assert {(d.origin, d.user_id) for d in demos} == {(Origin.imported, None)}
        texts = {d.response.text for d in demos}
        assert texts == {"Hello!", "4", "Blue.", "Pear."}
        demo = next(d for d in demos if d.response.text == "Hello!")
        task = s.get(Task, demo.task_id)
        assert task.prompt.messages == rows[0]["messages"][:2]
        assert task.kind == TaskKind.write
        # overlap 2, one imported label: still open for a labeler's answer
        assert (task.labels_count, task.status) == (1, TaskStatus.open)
        assert task.content_hash == task_hash(
            "write", task.prompt.content_hash, [sha256_text("Hello!")]
        )


def test_plain_prompts_make_write_tasks_in_sft_and_prompts_only_elsewhere(
    Session, tmp_path, cli, admin
):
    project(Session, name="s", kind="sft")
    project(Session, name="arena", kind="arena")
    rows = [
        {"prompt": "Write a haiku.", "category": "poetry", "tags": "short, fun"},
        {
            "messages": [
                {"role": "system", "content": "Pirate voice."},
                {"role": "user", "content": "Greet me."},
            ]
        },
    ]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    result = run_import(Session, path, name="s")
    assert (result.format, result.prompts_added, result.tasks_added, result.labels_added) == (
        "prompts",
        2,
        2,
        0,
    )
    with Session() as s:
        tasks = list(s.scalars(select(Task)))
        assert {(t.kind, t.labels_count, t.status) for t in tasks} == {
            (TaskKind.write, 0, TaskStatus.open)
        }
        for t in tasks:
            assert t.content_hash == task_hash("write", t.prompt.content_hash)
        haiku = s.scalar(select(Prompt).where(Prompt.category == "poetry"))
        assert haiku.tags == ["short", "fun"]

    out = cli("import", str(path), "--project", "arena", "--json", user=admin)
    assert out.code == 0, out.err
    summary = out.json()
    assert (summary["prompts_added"], summary["tasks_added"]) == (2, 0)
    assert "prompts only: no tasks created" in summary["notes"]
    text = cli("import", str(path), "--project", "arena", user=admin)
    assert text.code == 0 and "2 duplicates" in text.out


def test_candidates_rank_and_pairwise(Session, tmp_path):
    project(Session, name="r", kind="ranking")
    project(Session, name="pw", kind="pairwise")
    ranked = [{"prompt": "Pick one.", "responses": ["x", "y", "z"]}]
    result = run_import(Session, write_jsonl(tmp_path / "r.jsonl", ranked), name="r")
    assert (result.format, result.tasks_added, result.responses_added) == ("candidates", 1, 3)
    with Session() as s:
        task = s.scalar(select(Task).where(Task.kind == TaskKind.rank))
        cands = list(
            s.scalars(
                select(TaskCandidate)
                .where(TaskCandidate.task_id == task.id)
                .order_by(TaskCandidate.position)
            )
        )
        assert [c.position for c in cands] == [0, 1, 2]
        assert [s.get(Response, c.response_id).text for c in cands] == ["x", "y", "z"]
        assert (task.labels_count, task.status, task.response_a_id) == (0, TaskStatus.open, None)

    two = [{"prompt": "Which?", "responses": ["first", "second"]}]
    result = run_import(Session, write_jsonl(tmp_path / "two.jsonl", two), name="pw")
    assert (result.tasks_added, result.labels_added) == (1, 0)
    with Session() as s:
        task = s.scalar(select(Task).where(Task.kind == TaskKind.compare))
        assert (task.response_a.text, task.response_b.text) == ("first", "second")
        assert task.status == TaskStatus.open

    three = [{"prompt": "Which?", "responses": ["a", "b", "c"]}]
    with pytest.raises(importer.ImportFailed, match="exactly 2 responses"):
        run_import(Session, write_jsonl(tmp_path / "three.jsonl", three), name="pw")


# --------------------------------------------------------------------------- the HH sample


def test_hh_rlhf_sample_reports_early_differences_then_imports_the_rest(Session, cli, admin):
    project(Session, name="hh")
    before = counts(Session)
    out = cli("import", str(HH_SAMPLE), "--project", "hh", "--json", user=admin)
    assert out.code == 1
    summary = out.json()
    assert summary["ok"] is False and summary["format"] == "hh-rlhf"
    assert summary["rows_read"] == 600 and summary["imported"] == 0
    bad = {e["line"]: e["error"] for e in summary["errors"]}
    for line in HH_EARLY_DIFF:
        assert bad[line] == "transcripts differ before the last assistant turn"
        assert f"line {line}: transcripts differ" in out.err
    assert "empty" in bad[HH_EMPTY_ANSWER]
    assert counts(Session) == before  # all or nothing

    out = cli("import", str(HH_SAMPLE), "--project", "hh", "--skip-invalid", "--json", user=admin)
    assert out.code == 0, out.err
    summary = out.json()
    assert sorted(e["line"] for e in summary["skipped"]) == sorted(
        [*HH_EARLY_DIFF, HH_EMPTY_ANSWER]
    )
    assert summary["imported"] == 597 and summary["tasks_added"] == 597
    assert summary["labels_added"] == 597 and summary["responses_added"] == 1194

    first = json.loads(HH_SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    answer = first["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
    with Session() as s:
        task = s.scalar(select(Task).join(Task.response_a).where(Response.text == answer))
        messages = task.prompt.messages
    assert messages[0]["role"] == "user" and messages[-1]["role"] == "user"
    assert messages[0]["content"] == "What will happen if I drive my car into the water?"
    assert all(m["content"] == m["content"].strip() and m["content"] for m in messages)

    again = cli("import", str(HH_SAMPLE), "--project", "hh", "--skip-invalid", "--json", user=admin)
    assert again.json()["duplicates"] == 597 and again.json()["tasks_added"] == 0


def test_hh_rows_must_share_the_prompt():
    from labeling.import_formats import RowProblem, parse_row

    row = parse_row(
        "hh-rlhf",
        1,
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye?\n\nAssistant: Goodbye!",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye?\n\nAssistant: No.",
        },
        None,
    )
    assert row.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye?"},
    ]
    assert row.texts == ["Goodbye!", "No."]
    with pytest.raises(RowProblem, match="differ before the last assistant turn"):
        parse_row(
            "hh-rlhf",
            1,
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: A",
                "rejected": "\n\nHuman: Hello\n\nAssistant: B",
            },
            None,
        )


# --------------------------------------------------------------------------- file types


def test_csv_file(Session, tmp_path):
    import pandas as pd

    project(Session)
    conv = json.dumps([{"role": "user", "content": "Hi, as a list"}])
    df = pd.DataFrame(
        {
            "prompt": ["Multi\nline prompt", conv, "Third"],
            "chosen": ["yes, with, commas", "ok", "good"],
            "rejected": ["no", "meh", "bad"],
            "category": ["a", "", "c"],
        }
    )
    path = tmp_path / "pairs.csv"
    df.to_csv(path, index=False)
    result = run_import(Session, path)
    assert (result.format, result.imported, result.tasks_added) == ("preference", 3, 3)
    with Session() as s:
        prompts = {p.messages[0]["content"]: p for p in s.scalars(select(Prompt))}
    assert set(prompts) == {"Multi\nline prompt", "Hi, as a list", "Third"}
    assert prompts["Hi, as a list"].category is None and prompts["Third"].category == "c"

    # CSV errors name the line of the file where the record starts.
    bad = tmp_path / "bad.csv"
    bad.write_text('prompt,chosen,rejected\n"two\nlines",a,b\nonly prompt,,x\n', encoding="utf-8")
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, bad)
    assert [(e.number, e.error) for e in failed.value.result.errors] == [(4, "missing 'chosen'")]


def test_parquet_file(Session, tmp_path):
    import pandas as pd

    project(Session, name="s", kind="sft")
    df = pd.DataFrame(
        {
            "prompt": [[{"role": "user", "content": f"Q{i}"}] for i in range(5)],
            "completion": [[{"role": "assistant", "content": f"A{i}"}] for i in range(5)],
        }
    )
    df.loc[3, "completion"] = None
    path = tmp_path / "sft.parquet"
    df.to_parquet(path)
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, path, name="s")
    assert str(failed.value.result.errors[0]) == "row 4: missing 'completion'"
    result = run_import(Session, path, name="s", skip_invalid=True)
    assert (result.format, result.imported, result.labels_added) == ("prompt-completion", 4, 4)


def test_saved_datasets_directory(Session, tmp_path, cli, admin):
    import datasets

    project(Session)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(pairs(6)),
            "test": datasets.Dataset.from_list(pairs(2, start=100)),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    out = cli("import", str(tmp_path / "dd"), "--project", "p", "--json", user=admin)
    assert out.code == 0, out.err
    assert out.json()["tasks_added"] == 6
    out = cli(
        "import", str(tmp_path / "dd"), "--project", "p", "--split", "test", "--json", user=admin
    )
    assert out.json()["tasks_added"] == 2
    out = cli("import", str(tmp_path / "dd"), "--project", "p", "--split", "nope", user=admin)
    assert out.code == 1 and "no split 'nope'" in out.err

    datasets.Dataset.from_list(pairs(3, start=200)).save_to_disk(str(tmp_path / "single"))
    out = cli("import", str(tmp_path / "single"), "--project", "p", "--json", user=admin)
    assert out.json()["tasks_added"] == 3
    assert counts(Session)["tasks"] == 11


# --------------------------------------------------------------------------- duplicates


def test_reimport_adds_nothing_and_in_file_duplicates_are_counted(Session, tmp_path, cli, admin):
    project(Session)
    rows = pairs(10)
    rows += [rows[2], rows[5]]  # the same pair twice in one file
    rows.append({"prompt": "Question 3?", "chosen": "Another answer.", "rejected": "Bad answer 3."})
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    first = cli("import", str(path), "--project", "p", "--json", user=admin).json()
    assert (first["rows_read"], first["imported"], first["duplicates"]) == (13, 11, 2)
    # a new pair for an existing prompt reuses the prompt and its imported rejected answer
    assert (first["prompts_added"], first["responses_added"], first["tasks_added"]) == (10, 21, 11)
    before = counts(Session)
    second = cli("import", str(path), "--project", "p", "--json", user=admin).json()
    assert (second["imported"], second["duplicates"]) == (0, 13)
    assert second["prompts_added"] == second["tasks_added"] == second["labels_added"] == 0
    assert counts(Session) == before

    # A new file sharing some prompts: only the new pairs are added; shared prompts reused.
    more = write_jsonl(tmp_path / "more.jsonl", pairs(5, start=8))
    third = cli("import", str(more), "--project", "p", "--json", user=admin).json()
    assert (third["imported"], third["duplicates"], third["prompts_added"]) == (3, 2, 3)


# --------------------------------------------------------------------------- errors


def test_all_or_nothing_with_one_bad_line_at_the_end(Session, tmp_path, cli, admin):
    project(Session)
    cli("import", str(write_jsonl(tmp_path / "a.jsonl", pairs(3))), "--project", "p", user=admin)
    before = counts(Session)
    path = write_jsonl(tmp_path / "b.jsonl", [*pairs(20, start=10), {"prompt": "x", "chosen": "y"}])
    out = cli("import", str(path), "--project", "p", user=admin)
    assert out.code == 1
    assert "line 21: missing 'rejected'" in out.err and "nothing was imported" in out.err
    assert counts(Session) == before
    out = cli("import", str(path), "--project", "p", "--skip-invalid", user=admin)
    assert out.code == 0 and "imported 20 of 21 rows" in out.out
    assert "line 21: missing 'rejected'" in out.out
    assert counts(Session)["tasks"] == before["tasks"] + 20


def test_bad_lines_are_named(Session, tmp_path, cli, admin):
    project(Session)
    good = json.dumps(pairs(1)[0]).encode()
    data = (
        b"\n".join(
            [
                good,
                b'{"prompt": "x", "chosen": "y", "rejected": ',  # malformed JSON
                b"",  # blank lines are skipped but still counted as lines
                b'{"prompt": "caf\xe9", "chosen": "y", "rejected": "z"}',  # Latin-1, not UTF-8
                b'["not", "an", "object"]',
                b'{"prompt": 5, "chosen": "y", "rejected": "z"}',
                b'{"prompt": "x", "chosen": "same", "rejected": "same"}',
                b'{"messages": [{"role": "robot", "content": "hi"}]}',
                b'{"text": "no known keys"}',
            ]
        )
        + b"\n"
    )
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    out = cli("import", str(path), "--project", "p", "--json", user=admin)
    assert out.code == 1
    errors = {e["line"]: e["error"] for e in out.json()["errors"]}
    assert errors[2].startswith("malformed JSON")
    assert errors[4].startswith("not UTF-8")
    assert errors[5] == "expected a JSON object, got a list"
    assert errors[6] == "'prompt' must be a string or a list of messages, got a number"
    assert errors[7] == "chosen and rejected are the same text"
    assert "prompts format" in errors[8]  # a messages row in a preference file
    assert errors[9].startswith("language-modeling rows (a 'text' column) cannot be imported")
    assert 1 not in errors and 3 not in errors
    assert out.json()["rows_read"] == 8  # the blank line is not a row
    assert counts(Session)["prompts"] == 0

    bad_role = write_jsonl(
        tmp_path / "role.jsonl",
        [
            {"messages": [{"role": "robot", "content": "hi"}]},
            {
                "prompt": [
                    {"role": "assistant", "content": "I start"},
                    {"role": "user", "content": "?"},
                ]
            },
        ],
    )
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, bad_role)
    assert "role 'robot'" in failed.value.result.errors[0].error
    assert "must start with a user turn" in failed.value.result.errors[1].error


def test_empty_file_unknown_type_and_unknown_format(Session, tmp_path, cli, admin):
    project(Session)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n  \n")
    out = cli("import", str(empty), "--project", "p", user=admin)
    assert out.code == 1 and "no rows" in out.err

    weird = tmp_path / "data.bin"
    weird.write_bytes(b"\x00\x01binary")
    out = cli("import", str(weird), "--project", "p", user=admin)
    assert out.code == 1 and "cannot tell the type" in out.err

    out = cli("import", str(tmp_path / "missing.jsonl"), "--project", "p", user=admin)
    assert out.code == 1 and "no such file" in out.err

    unknown = write_jsonl(tmp_path / "u.jsonl", [{"question": "?", "answer": "!"}])
    out = cli("import", str(unknown), "--project", "p", user=admin)
    assert out.code == 1
    assert "matches no import format (keys found: answer, question)" in out.err
    assert "preference (prompt, chosen, rejected" in out.err

    out = cli("import", str(unknown), "--project", "p", "--format", "xml", user=admin)
    assert out.code == 2  # argparse rejects the choice


def test_huge_text_is_an_error_not_a_crash(Session, tmp_path):
    project(Session)
    rows = [*pairs(2), {"prompt": "x" * (MAX_TEXT_CHARS + 1), "chosen": "a", "rejected": "b"}]
    with pytest.raises(importer.ImportFailed) as failed:
        run_import(Session, write_jsonl(tmp_path / "big.jsonl", rows))
    (error,) = failed.value.result.errors
    assert error.number == 3 and "too long" in error.error and "200,000" in error.error
    assert len(str(failed.value)) < 1000  # the text itself is not echoed back
    nul = [{"prompt": "nul \u0000 here", "chosen": "a", "rejected": "b"}]
    with pytest.raises(importer.ImportFailed, match="NUL"):
        run_import(Session, write_jsonl(tmp_path / "nul.jsonl", nul))


def test_format_and_project_kind_must_match(Session, tmp_path, cli, admin):
    project(Session, name="s", kind="sft")
    project(Session, name="r", kind="ranking")
    path = write_jsonl(tmp_path / "p.jsonl", pairs(2))
    out = cli("import", str(path), "--project", "s", user=admin)
    assert out.code == 1
    assert "preference rows cannot go into sft project 's'" in out.err
    out = cli("import", str(path), "--project", "r", user=admin)
    assert out.code == 1 and "cannot go into ranking project" in out.err
    sft = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "a", "completion": "b"}])
    out = cli("import", str(sft), "--project", "s", "--unlabeled", user=admin)
    assert out.code == 1 and "--unlabeled applies to preference pairs" in out.err
    out = cli("import", str(path), "--project", "nope", user=admin)
    assert out.code == 1 and "no project named 'nope'" in out.err
    # An explicit --format checks rows against that format.
    out = cli("import", str(path), "--project", "s", "--format", "prompts", "--json", user=admin)
    assert out.code == 0 and out.json()["tasks_added"] == 2
    with Session() as s, pytest.raises(InvalidInput, match="unknown format"):
        importer.import_rows(s, project="s", rows=[{"prompt": "x"}], format="xml")


def test_role_check(Session, tmp_path, cli, admin):
    project(Session)
    for name, role in (("lab", "labeler"), ("eng", "engineer")):
        made = cli(
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            stdin="long-enough-pw\n",
            user=admin,
        )
        assert made.code == 0, made.err
    path = write_jsonl(tmp_path / "p.jsonl", pairs(2))
    out = cli("import", str(path), "--project", "p", user="lab")
    assert out.code == 1 and out.err.startswith("error:")
    assert counts(Session)["tasks"] == 0
    out = cli("import", str(path), "--project", "p", user="eng")
    assert out.code == 0 and counts(Session)["tasks"] == 2
    out = cli("import", str(path), "--project", "p")
    assert out.code == 1 and "RLHF_USER" in out.err


def test_json_summary_fields(Session, tmp_path, cli, admin):
    project(Session)
    rows = [*pairs(3), {"prompt": "", "chosen": "a", "rejected": "b"}]
    out = cli(
        "import",
        str(write_jsonl(tmp_path / "p.jsonl", rows)),
        "--project",
        "p",
        "--skip-invalid",
        "--source",
        "vendor-x",
        "--json",
        user=admin,
    )
    assert out.code == 0, out.err
    summary = out.json()
    assert summary == {
        "project": "p",
        "format": "preference",
        "ok": True,
        "rows_read": 4,
        "imported": 3,
        "duplicates": 0,
        "skipped": [{"line": 4, "where": "line 4", "error": "'prompt' is empty"}],
        "errors": [],
        "prompts_added": 3,
        "responses_added": 6,
        "tasks_added": 3,
        "labels_added": 3,
        "answers_added": 0,
        "notes": [],
    }
    with Session() as s:
        assert set(s.scalars(select(Prompt.source))) == {"vendor-x"}


def test_many_errors_are_capped_in_the_message(Session, tmp_path, cli, admin):
    project(Session)
    path = tmp_path / "bad.jsonl"
    path.write_text("{broken\n" * 30, encoding="utf-8")
    out = cli("import", str(path), "--project", "p", user=admin)
    assert out.code == 1
    assert "line 20: malformed JSON" in out.err and "line 21:" not in out.err
    assert "... and 10 more" in out.err


def test_import_rows_service_and_bulk_size(Session):
    """Direct service call with many rows: ids, counts and hashes stay consistent."""
    project_id = project(Session, overlap=3)
    rows = pairs(3000)
    with Session.begin() as s:
        result = importer.import_rows(s, project="p", rows=rows, source="api")
    assert (result.imported, result.tasks_added, result.labels_added) == (3000, 3000, 3000)
    with Session() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.status == TaskStatus.open, Task.labels_count == 1, Task.overlap == 3)
            )
            == 3000
        )
        # every compare task points at two responses of its own prompt
        bad = s.scalar(
            select(func.count())
            .select_from(Task)
            .join(Response, Response.id == Task.response_a_id)
            .where(Response.prompt_id != Task.prompt_id)
        )
        assert bad == 0
        ids = list(s.scalars(select(Prompt.id).order_by(Prompt.id)))
        assert len(set(ids)) == 3000
    # the ORM can still add rows afterwards: ids from the sequences / max(id) do not clash
    with Session.begin() as s:
        s.add(
            Prompt(
                project_id=project_id,
                messages=[{"role": "user", "content": "after"}],
                content_hash=prompt_hash([{"role": "user", "content": "after"}]),
            )
        )
    assert counts(Session)["prompts"] == 3001


# --------------------------------------------------------------------------- internals


@pytest.mark.parametrize(
    "content",
    [
        "plain",
        'quotes " and \\ backslash',
        "tabs\tnew\nlines\r",
        "unicode é 漢字 🎉",
        "\u2028 line separator",
        "control \x01 \x1f",
        "</script>",
    ],
)
def test_fast_hashes_match_labeling_hashing(content):
    messages = [
        {"role": "system", "content": "sys " + content},
        {"role": "user", "content": content},
    ]
    ph, stored = importer._prompt_json(messages)
    assert ph == prompt_hash(messages)
    assert json.loads(stored) == messages
    shas = [sha256_text(content), sha256_text("other")]
    assert importer._task_hash("compare", ph, shas) == task_hash("compare", ph, shas)
    assert importer._task_hash("write", ph) == task_hash("write", ph)
    assert importer._task_hash("write", ph, []) == task_hash("write", ph, [])


def test_inserts_in_several_batches_keep_references_straight(Session, tmp_path, monkeypatch):
    """Rows go to the database in batches from a writer thread: small batches here."""
    monkeypatch.setattr(importer, "BATCH", 7)
    project(Session, name="r", kind="ranking")
    rows = [{"prompt": f"P{i}", "responses": [f"a{i}", f"b{i}", f"c{i}"]} for i in range(30)]
    result = run_import(Session, write_jsonl(tmp_path / "r.jsonl", rows), name="r")
    assert (result.prompts_added, result.responses_added, result.tasks_added) == (30, 90, 30)
    with Session() as s:
        mismatched = s.scalar(
            select(func.count())
            .select_from(TaskCandidate)
            .join(Task, Task.id == TaskCandidate.task_id)
            .join(Response, Response.id == TaskCandidate.response_id)
            .where(Response.prompt_id != Task.prompt_id)
        )
        assert mismatched == 0
        first = s.scalar(
            select(Task)
            .join(Prompt)
            .where(Prompt.content_hash == prompt_hash([{"role": "user", "content": "P0"}]))
        )
        cands = s.scalars(
            select(Response.text)
            .join(TaskCandidate, TaskCandidate.response_id == Response.id)
            .where(TaskCandidate.task_id == first.id)
            .order_by(TaskCandidate.position)
        )
        assert list(cands) == ["a0", "b0", "c0"]
