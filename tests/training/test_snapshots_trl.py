"""Snapshots go straight into TRL: loaded with `datasets`, prepared by TRL's own trainers.

Tiny Llama models and a word-level tokenizer are built in-process from the snapshot's own
texts; nothing is downloaded (HF_HUB_OFFLINE=1). Each trainer also runs one step.
"""

from __future__ import annotations

import copy
import math

import datasets
import pytest
import torch
import transformers
import trl
from sqlalchemy import select
from trl.data_utils import is_conversational

from labeling import snapshots
from labeling.db import make_engine, make_sessionmaker
from labeling.hashing import prompt_hash, sha256_text, task_hash
from labeling.models import (
    AuthorKind,
    Demonstration,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Ranking,
    Response,
    Role,
    Task,
    TaskCandidate,
    User,
)

SPECIALS = ["<pad>", "<unk>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)

# (question, split, answer a, answer b, choice, strength)
PAIRS = [
    ("what colour is the sky", "train", "the sky is blue", "the sky is green", "a", 3),
    ("name a fruit", "train", "carrot", "an apple", "b", 1),
    ("say hello politely", "train", "hello there friend", "go away", "a", 2),
    ("count to three", "train", "one two three", "one three", "a", None),
    ("what is ice", "heldout", "frozen water", "hot steam", "a", 2),
    ("name a planet", "heldout", "the moon", "mars", "b", 3),
    ("is fire cold", "train", "maybe", "perhaps", "tie", None),
    ("write nonsense", "train", "blah", "bleh", "both_bad", None),
]


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _seed(s) -> Project:
    project = Project(name="trl", kind=ProjectKind.pairwise)
    labeler = User(name="lab", role=Role.labeler)
    s.add_all([project, labeler])
    s.flush()

    def prompt(question, split, system=False):
        messages = [{"role": "user", "content": question}]
        if system:
            messages.insert(0, {"role": "system", "content": "answer briefly"})
        p = Prompt(
            project_id=project.id,
            messages=messages,
            content_hash=prompt_hash(messages),
            split=split,
        )
        s.add(p)
        s.flush()
        return p

    def response(p, text):
        r = Response(
            prompt_id=p.id,
            text=text,
            content_hash=sha256_text(text),
            author_kind=AuthorKind.imported,
        )
        s.add(r)
        s.flush()
        return r

    def task(kind, p, shas, **kw):
        t = Task(
            project_id=project.id,
            prompt_id=p.id,
            kind=kind,
            content_hash=task_hash(kind, p.content_hash, shas),
            **kw,
        )
        s.add(t)
        s.flush()
        return t

    for i, (question, split, text_a, text_b, choice, strength) in enumerate(PAIRS):
        p = prompt(question, split, system=i % 2 == 0)
        a, b = response(p, text_a), response(p, text_b)
        t = task(
            "compare", p, [a.content_hash, b.content_hash], response_a_id=a.id, response_b_id=b.id
        )
        s.add(Preference(task_id=t.id, user_id=labeler.id, choice=choice, strength=strength))
        w = task("write", p, [])
        s.add(Demonstration(task_id=w.id, user_id=None, origin=Origin.imported, response_id=a.id))
    p = prompt("rank these animals by size", "train")
    ranked = [response(p, text) for text in ("a whale", "a horse", "a mouse")]
    t = task("rank", p, [r.content_hash for r in ranked])
    s.add_all(
        TaskCandidate(task_id=t.id, position=i, response_id=r.id) for i, r in enumerate(ranked)
    )
    s.add(Ranking(task_id=t.id, user_id=labeler.id, order=[r.id for r in ranked]))
    s.flush()
    return project


def _snapshot(Session, kind, **options):  # noqa: N803
    with Session.begin() as s:
        project = s.scalar(select(Project).where(Project.name == "trl")) or _seed(s)
        snapshot, _ = snapshots.create_snapshot(s, project=project, kind=kind, **options)
        return snapshot


def _load(snapshot, tmp_path):
    files = snapshots.snapshot_files(snapshot)
    return datasets.load_dataset(
        "parquet",
        data_files={"train": str(files["train"]), "test": str(files["heldout"])},
        cache_dir=str(tmp_path / "hf-cache"),
    )


def _tokenizer(dataset):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = []
    for split in dataset.values():
        for row in split:
            for column in ("messages", "prompt", "chosen", "rejected", "completion"):
                texts.extend(m["content"] for m in row.get(column) or [])
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _config(tokenizer, **extra):
    torch.manual_seed(0)
    return transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **extra,
    )


def _args(tmp_path):
    return {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 4,
        "report_to": [],
        "use_cpu": True,
        "bf16": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
    }


def test_preference_snapshot_prepares_in_reward_and_dpo_trainers(Session, tmp_path):  # noqa: N803
    snapshot = _snapshot(Session, "preference")
    ds = _load(snapshot, tmp_path)
    assert ds["train"].num_rows == snapshot.splits["train"] == 7  # 4 pairs + 3 from the ranking
    assert ds["test"].num_rows == snapshot.splits["heldout"] == 2
    first = ds["train"][0]
    assert is_conversational(first)
    assert first["chosen"][0]["role"] == "assistant" and first["prompt"][-1]["role"] == "user"
    assert sorted(ds["train"]["margin"]) == pytest.approx(
        sorted([1.0, 1 / 3, 2 / 3, 0.0, 0.0, 0.0, 0.0])
    )
    tokenizer = _tokenizer(ds)
    assistant = tokenizer.convert_tokens_to_ids("<|assistant|>")

    reward_model = transformers.LlamaForSequenceClassification(_config(tokenizer, num_labels=1))
    reward = trl.RewardTrainer(
        model=reward_model,
        args=trl.RewardConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        eval_dataset=ds["test"],
        processing_class=tokenizer,
    )
    prepared = reward.train_dataset
    assert {"chosen_ids", "rejected_ids", "margin"} <= set(prepared.column_names)
    assert prepared["margin"] == ds["train"]["margin"]  # the margin survives preparation
    for row in prepared:  # the chat template was applied: prompt + assistant turn + EOS
        assert assistant in row["chosen_ids"] and row["chosen_ids"][-1] == tokenizer.eos_token_id
        assert row["chosen_ids"] != row["rejected_ids"]
    batch = next(iter(reward.get_train_dataloader()))
    assert "margin" in batch and batch["margin"].dtype == torch.float32
    assert math.isfinite(reward.train().training_loss)
    assert "eval_loss" in reward.evaluate()

    policy = transformers.LlamaForCausalLM(_config(tokenizer))
    dpo = trl.DPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),  # a model object, so TRL loads nothing by name
        args=trl.DPOConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        processing_class=tokenizer,
    )
    prepared = dpo.train_dataset
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(prepared.column_names)
    for row in prepared:
        assert row["prompt_ids"][-1] == assistant  # the generation prompt ends the prompt
        assert row["chosen_ids"][-1] == tokenizer.eos_token_id
    assert math.isfinite(dpo.train().training_loss)


def test_sft_snapshot_prepares_in_sft_trainer(Session, tmp_path):  # noqa: N803
    snapshot = _snapshot(Session, "sft")
    ds = _load(snapshot, tmp_path)
    assert (ds["train"].num_rows, ds["test"].num_rows) == (6, 2)
    assert is_conversational(ds["train"][0])
    assert all(row["messages"][-1]["role"] == "assistant" for row in ds["train"])
    tokenizer = _tokenizer(ds)

    sft = trl.SFTTrainer(
        model=transformers.LlamaForCausalLM(_config(tokenizer)),
        args=trl.SFTConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        processing_class=tokenizer,
    )
    prepared = sft.train_dataset
    assert {"input_ids", "labels"} <= set(prepared.column_names)
    assert prepared.num_rows == 6
    assert all(row["input_ids"][-1] == tokenizer.eos_token_id for row in prepared)
    assert math.isfinite(sft.train().training_loss)


def test_kto_snapshot_prepares_in_kto_trainer(Session, tmp_path):  # noqa: N803
    snapshot = _snapshot(Session, "kto")
    ds = _load(snapshot, tmp_path)
    # 4 decided train pairs -> 8 rows, both_bad -> 2 False, ranking -> best True + worst False.
    assert (ds["train"].num_rows, ds["test"].num_rows) == (12, 4)
    assert is_conversational(ds["train"][0])
    assert sorted(ds["train"]["label"]) == [False] * 7 + [True] * 5
    tokenizer = _tokenizer(ds)

    policy = transformers.LlamaForCausalLM(_config(tokenizer))
    kto = trl.KTOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),
        args=trl.KTOConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        processing_class=tokenizer,
    )
    prepared = kto.train_dataset
    assert {"prompt_ids", "completion_ids", "label"} <= set(prepared.column_names)
    assert prepared["label"] == ds["train"]["label"]
    assert math.isfinite(kto.train().training_loss)


def test_aggregated_snapshots_with_confidence_and_labeler_columns_still_train(
    Session,
    tmp_path,  # noqa: N803
):
    """Quality-aware snapshots add `confidence` (aggregated) and `labeler` columns: TRL's
    trainers ignore them (RewardTrainer, DPOTrainer and KTOTrainer each run one step)."""
    preference = _snapshot(Session, "preference", aggregate="majority", confidence_margin=True)
    ds = _load(preference, tmp_path)
    assert {"confidence", "labeler"} <= set(ds["train"].column_names)
    assert ds["train"].num_rows == 7  # one label per item here: the same pairs as per label
    assert set(ds["train"]["confidence"]) <= {1.0, None}  # ranking pairs have no confidence
    tokenizer = _tokenizer(ds)
    reward = trl.RewardTrainer(
        model=transformers.LlamaForSequenceClassification(_config(tokenizer, num_labels=1)),
        args=trl.RewardConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        processing_class=tokenizer,
    )
    assert math.isfinite(reward.train().training_loss)
    policy = transformers.LlamaForCausalLM(_config(tokenizer))
    dpo = trl.DPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),
        args=trl.DPOConfig(**_args(tmp_path)),
        train_dataset=ds["train"],
        processing_class=tokenizer,
    )
    assert math.isfinite(dpo.train().training_loss)

    kto_snapshot = _snapshot(Session, "kto", aggregate="dawid-skene")
    kto_ds = _load(kto_snapshot, tmp_path)
    assert {"confidence", "labeler"} <= set(kto_ds["train"].column_names)
    tokenizer = _tokenizer(kto_ds)
    policy = transformers.LlamaForCausalLM(_config(tokenizer))
    kto = trl.KTOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),
        args=trl.KTOConfig(**_args(tmp_path)),
        train_dataset=kto_ds["train"],
        processing_class=tokenizer,
    )
    assert math.isfinite(kto.train().training_loss)
