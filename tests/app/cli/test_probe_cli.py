"""`rlhf probe`, `rlhf probe export|report|show|list|config` end to end, both databases.

The tiny in-process Llama of tests/training answers; its words are scripted by replacing
training.generate's model.generate call (the tiny model's own words are random), so the
verdicts, the export and the report are known."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labeling import snapshots
from labeling.hashing import prompt_hash
from labeling.models import Probe, ProbeAnswer, Prompt, Snapshot
from labeling.projects import create_project
from labeling.registry import training_records

TRAINING_TESTS = Path(__file__).resolve().parents[2] / "training"
QUESTIONS = {  # question -> (gold, split, the model's answers)
    "capital of france": ("Paris", "train", ["paris", "paris", "lyon"]),
    "six times seven": ("42", "train", ["41", "41", "41"]),
    "who wrote hamlet": ("Shakespeare", "heldout", ["i don't know"] * 3),
    "legs of a spider": ("8", "heldout", ["6", "6", "6"]),
}
WORDS = (
    "capital of france six times seven who wrote hamlet legs a spider paris lyon 42 41 "
    "shakespeare 8 6 i don't know Q: A: hamlet? spider?"
).split()


def _training_models():
    spec = importlib.util.spec_from_file_location(
        "probe_cli_tiny_models", TRAINING_TESTS / "test_training_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tiny = _training_models()
    return str(tiny.save_tiny_policy(tmp_path_factory.mktemp("probe-cli") / "policy",
                                     tiny.word_tokenizer(WORDS)))  # fmt: skip


@pytest.fixture
def facts(Session, cli, admin, tiny_dir, monkeypatch):  # noqa: N803
    """Users eng and lab, the project `facts` with answers, `blank` without; the policy id."""

    from training import generate

    for name, role in (("eng", "engineer"), ("lab", "labeler")):
        res = cli("users", "add", name, "--role", role, "--password-stdin", user=admin,
                  stdin="password-123\n")  # fmt: skip
        assert res.code == 0, res.err
    with Session.begin() as s:
        project = create_project(s, name="facts", kind="sft")
        blank = create_project(s, name="blank", kind="sft")
        for question, (answer, split, _) in QUESTIONS.items():
            messages = [{"role": "user", "content": question}]
            for p, gold in ((project, answer), (blank, None)):
                s.add(Prompt(project_id=p.id, messages=messages, split=split, answer=gold,
                             content_hash=prompt_hash(messages)))  # fmt: skip

        def copy(directory):
            for name in os.listdir(tiny_dir):
                shutil.copy(os.path.join(tiny_dir, name), directory / name)

        ck = training_records.register_checkpoint(
            s, kind="policy", directory=training_records.write_checkpoint_dir("tiny", copy),
            run_id=None, base_model="tiny-llama",
        )  # fmt: skip
        checkpoint_id = ck.id
    tokenizer = _training_models().word_tokenizer(WORDS)
    asked: dict[str, int] = {}

    def answer(prompt: str) -> str:
        question = next(q for q in QUESTIONS if q in prompt)
        n = asked.get(question, 0)
        asked[question] = n + 1
        return QUESTIONS[question][2][n % 3]

    monkeypatch.setattr(generate, "_model_generate", scripted(tokenizer, answer))
    return checkpoint_id


def scripted(tokenizer, answer):
    """model.generate that writes answer(prompt text) for each row (then EOS, padded)."""
    import torch

    def speak(model, *, input_ids, attention_mask, **_):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = answer(tokenizer.decode(ids[mask.bool()]))
            rows.append(tokenizer(text, add_special_tokens=False)["input_ids"]
                        + [tokenizer.eos_token_id])  # fmt: skip
        width = max(map(len, rows))
        rows = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    return speak


def _count(Session, table) -> int:  # noqa: N803
    with Session.begin() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_probe_export_and_report_from_the_command_line(cli, facts, Session):  # noqa: N803
    ck = str(facts)
    res = cli("probe", "--checkpoint", ck, "--project", "facts", "--samples", "3",
              "--temperature", "0.7", "--split", "all", "--max-new-tokens", "6", "--json",
              user="eng")  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    assert {"probe_id", "questions", "accuracy", "abstention_rate", "confidently_wrong_rate",
            "per_question"} <= set(out)  # fmt: skip
    assert (out["questions"], out["answers"]) == (4, 12)
    assert out["accuracy"] == round(2 / 12, 6) and out["abstention_rate"] == 0.25
    assert out["confidently_wrong_rate"] == 0.5  # six times seven, legs of a spider
    assert "probe facts: answered" in res.err  # progress on stderr
    assert _count(Session, ProbeAnswer) == 12
    per = {q["question"]: q for q in out["per_question"]}
    assert per["capital of france"]["correct"] == 2 and per["who wrote hamlet"]["abstained"] == 3

    exported = cli("probe", "export", "--project", "facts", "--probe", str(out["probe_id"]),
                   "--min-wrong", "0.8", "--refusal", "I don't know that.",
                   "--refusal", "I'm not sure.", "--json", user="eng")  # fmt: skip
    assert exported.code == 0, exported.err
    snap = exported.json()
    assert (snap["refusals"], snap["correct_answers"], snap["left_out"]) == (2, 1, 1)
    assert snap["kind"] == "sft" and snap["rows"] == 3 and snap["created"] is True
    assert snap["filters"]["probe_id"] == out["probe_id"]
    with Session.begin() as s:
        rows = {r["messages"][0]["content"]: r["messages"][-1]["content"]
                for split in snapshots.SPLITS
                for r in snapshots.read_split(snapshots.get_snapshot(s, snap["id"]), split)}  # fmt: skip
    assert rows["capital of france"] == "paris"
    assert rows["six times seven"] in {"I don't know that.", "I'm not sure."}
    assert rows["legs of a spider"] in {"I don't know that.", "I'm not sure."}
    assert "who wrote hamlet" not in rows  # it already abstains: nothing to teach

    report = cli("probe", "report", "--project", "facts", "--json", user="eng")
    assert report.code == 0, report.err
    (row,) = report.json()["checkpoints"]
    assert row["checkpoint_id"] == facts and row["questions"] == 2  # the held-out ones
    assert row["accuracy"] == 0.0 and row["abstention_rate"] == 0.5
    assert row["accuracy_ci"][0] == 0.0 and 0 < row["accuracy_ci"][1] < 0.5
    table = cli("probe", "report", "--project", "facts", "--split", "all", user="eng")
    assert table.code == 0 and "CONFIDENTLY_WRONG_RATE" in table.out and "50.0%" in table.out

    shown = cli("probe", "show", "--project", "facts", "--probe", str(out["probe_id"]),
                "--answers", "--json", user="eng").json()  # fmt: skip
    assert len(shown["per_question"][0]["answers"]) == 3
    listed = cli("probe", "list", "--project", "facts", "--json", user="eng").json()
    assert [p["probe_id"] for p in listed] == [out["probe_id"]]
    conf = cli("probe", "config", "--project", "facts", "--abstain-phrase", "no idea",
               "--json", user="eng").json()  # fmt: skip
    assert conf["abstain_phrases"] == ["no idea"]


def test_bad_requests_get_one_sentence_and_write_nothing(cli, facts, Session):  # noqa: N803
    ck = str(facts)
    base = ("--checkpoint", ck, "--project", "facts")
    cases = [
        (base, "lab", "lab is a labeler"),
        (base, None, "who is running this?"),
        (("--checkpoint", "999", "--project", "facts"), "eng", "no checkpoint with id 999"),
        (("run", "--checkpoint", "999", "--project", "facts"), "eng", "no checkpoint with id 999"),
        (("--checkpoint", ck, "--project", "blank"), "eng", "has no questions with a gold answer"),
        ((*base, "--samples", "0"), "eng", "samples must be from 1 to 64"),
        ((*base, "--temperature", "-1"), "eng", "temperature must be 0 (greedy) or more"),
        ((*base, "--max-new-tokens", "0"), "eng", "max_new_tokens must be at least 1"),
        (("--project", "facts"), "eng", "rlhf probe needs --checkpoint and --project"),
        (("export", "--project", "facts", "--probe", "5"), "eng", "no probe with id 5"),
        (("report", "--project", "nope"), "eng", "no project named 'nope'"),
    ]  # fmt: skip
    for args, user, message in cases:
        res = cli("probe", *args, user=user)
        assert res.code == 1 and message in res.err, (args, res.err)
        assert len(res.err.strip().splitlines()) == 1, res.err
    assert cli("probe", *base, "--split", "test", user="eng").code == 2  # argparse
    assert (_count(Session, Probe), _count(Session, ProbeAnswer), _count(Session, Snapshot)) == (
        0, 0, 0,
    )  # fmt: skip


def test_a_labeler_judges_what_the_automatic_judge_left(cli, facts, Session):  # noqa: N803
    # answers over 3 characters are left to a person: the capital of France's three
    assert cli("probe", "config", "--project", "facts", "--max-answer-chars", "3",
               user="eng").code == 0  # fmt: skip
    out = cli("probe", "--checkpoint", str(facts), "--project", "facts", "--samples", "3",
              "--split", "all", "--max-new-tokens", "6", "--json", user="eng").json()  # fmt: skip
    assert (out["unjudged"], out["correct"], out["incorrect"]) == (3, 0, 6)
    waiting = cli("probe", "unjudged", "--project", "facts", "--json", user="lab")
    assert waiting.code == 0, waiting.err
    items = waiting.json()["answers"]
    assert [(i["question"], i["reference"], i["text"]) for i in items] == [
        ("capital of france", "Paris", text) for text in ("paris", "paris", "lyon")
    ]
    table = cli("probe", "unjudged", "--project", "facts", user="lab")
    assert "3 answers waiting in facts" in table.out and "lyon" in table.out
    for item, verdict in zip(items, ("correct", "correct", "incorrect"), strict=True):
        judged = cli("probe", "judge", "--project", "facts", "--answer", str(item["answer_id"]),
                     "--verdict", verdict, "--json", user="lab")  # fmt: skip
        assert judged.code == 0, judged.err
        assert judged.json() == {"answer_id": item["answer_id"], "probe_id": out["probe_id"],
                                 "verdict": verdict}  # fmt: skip
    shown = cli("probe", "show", "--project", "facts", "--probe", str(out["probe_id"]),
                "--json", user="eng").json()  # fmt: skip
    assert (shown["unjudged"], shown["correct"], shown["incorrect"]) == (0, 2, 7)
    again = cli("probe", "judge", "--project", "facts", "--answer", str(items[2]["answer_id"]),
                "--verdict", "correct", user="lab")  # fmt: skip
    assert again.code == 1 and "is already judged (incorrect)" in again.err
    assert cli("probe", "judge", "--project", "facts", "--answer", "1", "--verdict", "unjudged",
               user="lab").code == 2  # argparse: not a person's verdict  # fmt: skip


def test_a_model_drafts_questions_from_a_document_and_people_review_them(
    cli,
    facts,
    Session,
    tmp_path,
    monkeypatch,  # noqa: N803
):

    from training import generate

    tokenizer = _training_models().word_tokenizer(WORDS)
    drafted = {  # passage -> what the model writes for it
        "Hamlet": "Q: who wrote hamlet? A: shakespeare Q: legs of a spider? A: 8",
        "Paris": "paris paris",  # no Q/A pair at all
    }

    def answer(prompt: str) -> str:
        assert "Q: <unk>" in prompt  # the instruction names the form
        return drafted["Hamlet" if "hamlet" in prompt.split() else "Paris"]

    monkeypatch.setattr(generate, "_model_generate", scripted(tokenizer, answer))
    document = tmp_path / "handbook.md"
    document.write_text("Notes on hamlet and a spider. " * 10 + "\n\n" + "Paris facts. " * 20)
    res = cli("probe", "draft", "--project", "facts", "--document", str(document),
              "--checkpoint", str(facts), "--passage-chars", "300", "--json", user="eng")  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    assert (out["passages"], out["drafted"], out["new"], out["unparsed_passages"]) == (2, 2, 2, 1)
    assert "draft facts: answered" in res.err  # progress on stderr
    again = cli("probe", "draft", "--project", "facts", "--document", str(document),
                "--checkpoint", str(facts), "--passage-chars", "300", user="eng")  # fmt: skip
    assert again.code == 0 and "0 new for review (2 already drafted" in again.out
    listed = cli("probe", "drafts", "--project", "facts", "--json", user="lab").json()
    assert [(d["question"], d["answer"]) for d in listed["drafts"]] == [
        ("who wrote hamlet?", "shakespeare"), ("legs of a spider?", "8"),
    ]  # fmt: skip
    hamlet, spider = (d["draft_id"] for d in listed["drafts"])
    with Session() as s:
        before = s.scalar(select(func.count()).select_from(Prompt))
    accepted = cli("probe", "accept", "--project", "facts", "--draft", str(hamlet),
                   "--question", "Who wrote Hamlet?", "--json", user="lab")  # fmt: skip
    assert accepted.code == 0, accepted.err
    assert accepted.json()["status"] == "accepted"
    rejected = cli("probe", "reject", "--project", "facts", "--draft", str(spider), user="lab")
    assert rejected.code == 0 and f"draft {spider} rejected" in rejected.out
    with Session() as s:
        prompt = s.get(Prompt, accepted.json()["prompt_id"])
        assert (prompt.messages[-1]["content"], prompt.answer) == (
            "Who wrote Hamlet?",
            "shakespeare",
        )
        assert s.scalar(select(func.count()).select_from(Prompt)) == before + 1
    twice = cli("probe", "reject", "--project", "facts", "--draft", str(hamlet), user="lab")
    assert twice.code == 1 and "was already reviewed (accepted)" in twice.err
    cases = [
        (("--document", str(tmp_path / "none.md")), "eng", "no such document"),
        (("--document", str(tmp_path)), "eng", "is a folder, not a document"),
        (("--document", str(document)), "lab", "lab is a labeler"),
    ]
    for args, user, message in cases:
        res = cli("probe", "draft", "--project", "facts", "--checkpoint", str(facts), *args,
                  user=user)  # fmt: skip
        assert res.code == 1 and message in res.err, (args, res.err)
    binary = tmp_path / "scan.pdf"
    binary.write_bytes(b"%PDF\xff\xfe")
    res = cli("probe", "draft", "--project", "facts", "--checkpoint", str(facts), "--document",
              str(binary), user="eng")  # fmt: skip
    assert res.code == 1 and "not UTF-8 text" in res.err
