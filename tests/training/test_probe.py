"""The probe run (training/probe.py) on a tiny in-process Llama, both databases: k answers
per question stored as checkpoint responses with their sampling parameters and verdicts; the
automatic judge on a hand-made list; a crash marks the probe failed and keeps the batches
already stored. The model's words are scripted through generate_fn where a test needs known
answers (the tiny model's own words are random); one test uses its real greedy output."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from sqlalchemy import func, select
from test_training_models import save_tiny_policy, word_tokenizer

from labeling.errors import NotFound
from labeling.hashing import prompt_hash
from labeling.kinds import Verdict
from labeling.models import Probe, ProbeAnswer, Prompt, Response
from labeling.projects import create_project
from labeling.registry import training_records
from training import probe as probe_run
from training.models import load_policy

QUESTIONS = {  # question -> (gold answer, split)
    "capital of france": ("Paris", "heldout"),
    "six times seven": ("42", "heldout"),
    "who wrote hamlet": ("Shakespeare", "heldout"),
    "legs of a spider": ("8", "train"),
}
WORDS = (
    "capital of france six times seven who wrote hamlet legs a spider paris lyon 42 41 "
    "the answer is shakespeare marlowe 8 6 i don't know not sure it"
).split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny_policy(tmp_path_factory.mktemp("probe") / "policy", word_tokenizer(WORDS)))


@pytest.fixture
def facts(Session, tiny_dir):  # noqa: N803
    """An sft project with the questions and the tiny policy registered: its checkpoint id."""
    with Session.begin() as s:
        project = create_project(s, name="facts", kind="sft")
        for question, (answer, split) in QUESTIONS.items():
            messages = [{"role": "user", "content": question}]
            s.add(Prompt(project_id=project.id, messages=messages, split=split, answer=answer,
                         content_hash=prompt_hash(messages)))  # fmt: skip

        def copy(directory):
            for name in os.listdir(tiny_dir):
                shutil.copy(os.path.join(tiny_dir, name), directory / name)

        directory = training_records.write_checkpoint_dir("tiny-probe", copy)
        ck = training_records.register_checkpoint(
            s, kind="policy", directory=directory, run_id=None, base_model="tiny-llama"
        )
        return ck.id


def scripted(tokenizer, script: dict[str, list[str]]):
    """A generate_fn whose n-th answer to a question is script[question][n] (then round)."""
    asked: dict[str, int] = {}
    eos = tokenizer.eos_token_id

    def generate(model, *, input_ids, attention_mask, **_):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = tokenizer.decode(ids[mask.bool()])
            question = next(q for q in script if q in prompt)
            n = asked.get(question, 0)
            asked[question] = n + 1
            text = script[question][n % len(script[question])]
            rows.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [eos])
        width = max(map(len, rows))
        padded = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(padded, device=input_ids.device)], dim=1)

    return generate


def _stored(Session, probe_id):  # noqa: N803
    with Session.begin() as s:
        rows = s.execute(
            select(ProbeAnswer, Response, Prompt.messages)
            .join(Response, Response.id == ProbeAnswer.response_id)
            .join(Prompt, Prompt.id == ProbeAnswer.prompt_id)
            .where(ProbeAnswer.probe_id == probe_id)
        ).all()
        return [(m[0]["content"], a.sample_index, a.verdict, a.judged_by, r.text, r.checkpoint_id,
                 r.source, dict(r.sampling_params)) for a, r, m in rows]  # fmt: skip


def test_the_probe_stores_k_judged_answers_per_question(Session, facts, tiny_dir):  # noqa: N803
    _, tokenizer = load_policy(tiny_dir)
    script = {
        "capital of france": ["paris", "paris", "lyon"],
        "six times seven": ["41", "41", "41"],  # confidently wrong
        "who wrote hamlet": ["i don't know", "marlowe", "marlowe"],
    }
    out = probe_run.run_probe(
        Session, checkpoint_id=facts, project="facts", samples=3, temperature=0.7,
        max_new_tokens=8, batch_size=2, progress=False,
        generate_fn=scripted(tokenizer, script),
    )  # fmt: skip
    assert out["status"] == "finished" and out["split"] == "heldout"
    assert (out["questions"], out["answers"], out["samples"]) == (3, 9, 3)
    rows = _stored(Session, out["probe_id"])
    assert len(rows) == 9
    samples: dict[str, list[int]] = {}
    verdicts: dict[str, list[str]] = {}
    for question, sample, verdict, judged_by, text, checkpoint_id, source, params in rows:
        samples.setdefault(question, []).append(sample)
        verdicts.setdefault(question, []).append(Verdict(verdict).value)
        assert judged_by is None and checkpoint_id == facts and source == "probe"
        assert params["sample"] == sample and params["probe_id"] == out["probe_id"]
        assert (params["temperature"], params["max_new_tokens"], params["seed"]) == (0.7, 8, 0)
        assert params["truncated"] is False and params["model"] == "tiny-probe"
        assert text in script[question]
    assert all(sorted(v) == [0, 1, 2] for v in samples.values())
    assert sorted(verdicts["capital of france"]) == ["correct", "correct", "incorrect"]
    assert verdicts["six times seven"] == ["incorrect"] * 3
    assert sorted(verdicts["who wrote hamlet"]) == ["abstained", "incorrect", "incorrect"]
    assert out["accuracy"] == round(2 / 9, 6) and out["abstention_rate"] == round(1 / 9, 6)
    per = {q["question"]: q for q in out["per_question"]}
    assert per["six times seven"]["confidently_wrong"] is True
    assert per["who wrote hamlet"]["confidently_wrong"] is False  # it abstained once
    assert out["confidently_wrong_rate"] == round(1 / 3, 6)


def test_a_greedy_probe_with_the_tiny_models_own_words(Session, facts):  # noqa: N803
    out = probe_run.run_probe(
        Session, checkpoint_id=facts, project="facts", samples=2, temperature=0,
        max_new_tokens=4, split="all", progress=False,
    )  # fmt: skip
    assert out["questions"] == len(QUESTIONS) and out["answers"] == 2 * len(QUESTIONS)
    rows = _stored(Session, out["probe_id"])
    by_question: dict[str, set[str]] = {}
    for question, _sample, verdict, _judged_by, text, *_ in rows:
        by_question.setdefault(question, set()).add(text)
        assert Verdict(verdict) in set(Verdict)
    # greedy: generated once, stored under both sample indices
    assert all(len(texts) == 1 for texts in by_question.values()) and len(by_question) == 4


JUDGED = [  # (answer, gold, verdict)
    ("The answer is 42.", "42", "correct"),
    ("42 apples", "42", "correct"),
    ("1,000", "1000", "correct"),
    ("3/4", "0.75", "correct"),
    ("It is 41.", "42", "incorrect"),
    ("Paris.", "Paris", "correct"),
    ("I think it is Paris, France.", "Paris", "correct"),
    ("Lyon", "Paris|Lyon", "correct"),  # aliases
    ("London", "Paris", "incorrect"),
    ("", "Paris", "incorrect"),
    ("I don\u2019t know.", "Paris", "abstained"),
    ("I'm not sure, maybe Paris", "Paris", "abstained"),  # abstention is checked first
    ("I cannot answer that.", "42", "abstained"),
    ("London " * 80, "Paris", "unjudged"),  # long, no match: for a person
    ("Long story. " * 40 + "So the answer is Paris.", "Paris", "correct"),
]


@pytest.mark.parametrize(("text", "gold", "verdict"), JUDGED)
def test_the_automatic_judge(text, gold, verdict):
    assert probe_run.judge(text, gold).value == verdict


def test_the_judge_follows_the_projects_settings():
    assert probe_run.judge("no clue", "Paris", abstain_phrases=["no clue"]) == Verdict.abstained
    assert probe_run.judge("London " * 5, "Paris", max_answer_chars=10) == Verdict.unjudged
    # a project's answer pattern says where the final answer is
    assert probe_run.judge("x = 5, so ANS: 7", "7", pattern=r"ANS: (\d+)") == Verdict.correct
    assert probe_run.judge("ANS: 5 but 7", "7", pattern=r"ANS: (\d+)") == Verdict.incorrect
    assert probe_run.aliases("Paris|Paris, France") == ["Paris", "Paris, France"]
    assert probe_run.aliases("|x|") == ["|x|"]


def test_a_crash_marks_the_probe_failed_and_keeps_the_stored_batches(
    Session,
    facts,
    tiny_dir,  # noqa: N803
):
    _, tokenizer = load_policy(tiny_dir)
    calls = []
    speak = scripted(tokenizer, {q: ["paris"] for q in QUESTIONS})

    def crash_on_second(model, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the machine went away")
        return speak(model, **kwargs)

    with pytest.raises(RuntimeError, match="went away"):
        probe_run.run_probe(
            Session, checkpoint_id=facts, project="facts", samples=1, temperature=0.5,
            max_new_tokens=4, batch_size=1, progress=False, generate_fn=crash_on_second,
        )  # fmt: skip
    with Session.begin() as s:
        probe = s.scalars(select(Probe)).one()
        assert probe.status.value == "failed" and "went away" in probe.summary["error"]
        assert s.scalar(select(func.count()).select_from(ProbeAnswer)) == 1


def test_bad_input_writes_nothing(Session, facts):  # noqa: N803
    with pytest.raises(NotFound, match="no checkpoint with id 999"):
        probe_run.run_probe(Session, checkpoint_id=999, project="facts", progress=False)
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(Probe)) == 0
        assert s.scalar(select(func.count()).select_from(Response)) == 0
