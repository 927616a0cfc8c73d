"""The loop the probe exists for, on a tiny Llama: probe -> export "I don't know" rows ->
`rlhf train sft` -> probe again: the trained checkpoint abstains more on the questions the
first one got wrong. The first probe's words are scripted (all wrong); the rest is the tiny
models' own greedy output. SQLite only, like the other training tests: the cost is the
training, and the probe's database work runs on both databases in test_probe.py."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from test_training_models import save_tiny_policy, word_tokenizer

from labeling.db import make_engine, make_sessionmaker
from labeling.hashing import prompt_hash
from labeling.models import Prompt
from labeling.projects import create_project
from labeling.registry import training_records
from training import generate

REFUSAL = "i don't know"
QUESTIONS = {  # question -> (gold, split, a wrong answer)
    "capital of france": ("paris", "train", "lyon"),
    "six times seven": ("42", "train", "41"),
    "who wrote hamlet": ("shakespeare", "train", "marlowe"),
    "legs of a spider": ("8", "train", "6"),
    "colour of the sky": ("blue", "heldout", "green"),
}
WORDS = sorted({w for q, (g, _, b) in QUESTIONS.items() for w in f"{q} {g} {b}".split()}
               | set(REFUSAL.split()))  # fmt: skip


@pytest.fixture
def db_url(sqlite_url):
    return sqlite_url


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_model_trained_on_the_export_abstains_more(cli, admin, Session, tmp_path, monkeypatch):  # noqa: N803
    tokenizer = word_tokenizer(WORDS)
    base = str(save_tiny_policy(tmp_path / "policy", tokenizer))
    assert cli("users", "add", "eng", "--role", "engineer", "--password-stdin", user=admin,
               stdin="password-123\n").code == 0  # fmt: skip
    with Session.begin() as s:
        project = create_project(s, name="facts", kind="sft")
        for question, (answer, split, _) in QUESTIONS.items():
            messages = [{"role": "user", "content": question}]
            s.add(Prompt(project_id=project.id, messages=messages, split=split, answer=answer,
                         content_hash=prompt_hash(messages)))  # fmt: skip

        def copy(directory):
            for name in os.listdir(base):
                shutil.copy(os.path.join(base, name), directory / name)

        first = training_records.register_checkpoint(
            s, kind="policy", directory=training_records.write_checkpoint_dir("base", copy),
            run_id=None, base_model="tiny-llama",
        ).id  # fmt: skip

    def wrong(model, *, input_ids, attention_mask, **_):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = tokenizer.decode(ids[mask.bool()])
            text = next(b for q, (_, _, b) in QUESTIONS.items() if q in prompt)
            rows.append([*tokenizer(text, add_special_tokens=False)["input_ids"],
                         tokenizer.eos_token_id])  # fmt: skip
        width = max(map(len, rows))
        rows = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    probe = ("probe", "--project", "facts", "--split", "all", "--temperature", "0",
             "--samples", "1", "--max-new-tokens", "4", "--json")  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(generate, "_model_generate", wrong)
        scripted = cli(*probe, "--checkpoint", str(first), user="eng")
    assert scripted.code == 0, scripted.err
    assert scripted.json()["confidently_wrong_rate"] == 1.0
    exported = cli("probe", "export", "--project", "facts", "--probe",
                   str(scripted.json()["probe_id"]), "--refusal", REFUSAL, "--json", user="eng")  # fmt: skip
    assert exported.code == 0, exported.err
    snap = exported.json()
    assert snap["refusals"] == len(QUESTIONS) and snap["splits"] == {"train": 4, "heldout": 1}

    before = cli(*probe, "--checkpoint", str(first), user="eng").json()  # its own words
    trained = cli("train", "sft", "--snapshot", str(snap["id"]), "--base", base, "--json",
                  "--max_steps", "30", "--per_device_train_batch_size", "4",
                  "--learning_rate", "1e-2", user="eng")  # fmt: skip
    assert trained.code == 0, trained.err
    after = cli(*probe, "--checkpoint", str(trained.json()["checkpoint_id"]), user="eng").json()
    assert after["abstention_rate"] > before["abstention_rate"]
    assert after["abstention_rate"] >= 0.8, after["per_question"]

    report = cli("probe", "report", "--project", "facts", "--split", "train", "--json",
                 user="eng").json()  # fmt: skip
    rates = [r["abstention_rate"] for r in report["checkpoints"]]
    assert rates == [_train_rate(before), _train_rate(after)]


def _train_rate(out) -> float | None:
    train = [q for q in out["per_question"] if q["split"] == "train"]
    judged = sum(q["samples"] - q["unjudged"] for q in train)
    return round(sum(q["abstained"] for q in train) / judged, 6) if judged else None
