"""Batched generation (training/generate.py) and `rlhf generate`, on a tiny Llama.

The tiny policy and its word tokenizer are built in-process (test_training_models.py) and
registered as a checkpoint under RLHF_HOME; the database is a migrated SQLite file and the
local PostgreSQL (db_url). Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from sqlalchemy import func, select
from test_training_models import save_tiny_policy, word_tokenizer

from labeling.hashing import prompt_hash, sha256_text
from labeling.models import AuthorKind, Prompt, Response
from labeling.projects import create_project
from labeling.registry import training_records
from training import generate as gen
from training.models import load_policy

WORDS = "the sky is blue hello world what colour name a fruit planet say count to three".split()
HELDOUT = ["what colour is the sky", "name a planet", "hello", "say hello to the world"]
TRAIN = ["name a fruit", "count to three", "the sky is blue"]
# Different lengths on purpose: the batches need left padding.
CONVERSATIONS = [
    [{"role": "user", "content": "hello"}],
    [{"role": "user", "content": "what colour is the sky"}],
    [{"role": "user", "content": "name a fruit"}],
    [
        {"role": "user", "content": "hello world"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "count to three"},
    ],
    [{"role": "user", "content": "say hello to the world the sky is blue"}],
    [{"role": "user", "content": "name a planet"}],
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_tiny_policy(tmp_path_factory.mktemp("gen") / "policy", word_tokenizer(WORDS)))


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_policy(tiny_dir)


def _reference(model, tokenizer, conversation, max_new_tokens):
    """One prompt alone, no padding, straight through model.generate: the ground truth."""
    ids = tokenizer.apply_chat_template(
        conversation, tokenize=True, add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )["input_ids"]  # fmt: skip
    eos = gen.eos_ids(model, tokenizer)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
            do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos),
        )[0, ids.shape[1] :].tolist()  # fmt: skip
    for j, token in enumerate(out):
        if token in eos:
            return out[: j + 1]
    return out


def test_batched_left_padded_greedy_equals_one_at_a_time(tiny):
    model, tokenizer = tiny
    batched = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=8, batch_size=4)
    single = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=8, batch_size=1)
    assert batched.batches == 2 and single.batches == len(CONVERSATIONS)
    assert batched.padding["prompt_padding"] > 0  # the batches really were padded
    reference = [_reference(model, tokenizer, c, 8) for c in CONVERSATIONS]
    assert batched.token_ids == single.token_ids == reference
    assert batched.texts == single.texts
    assert batched.tokens == [len(r) for r in reference] and all(t >= 1 for t in batched.tokens)
    # evaluate_policy's helper (fixed batches, prompt order) gives the same answers.
    texts = [t for *_, ts in gen.generate(model, tokenizer, CONVERSATIONS, max_new_tokens=8)
             for t in ts]  # fmt: skip
    assert texts == batched.texts


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    runs = [
        gen.generate_texts(
            model, tokenizer, CONVERSATIONS, max_new_tokens=6, temperature=1.5, top_p=0.9,
            seed=seed, batch_size=3,
        ).token_ids
        for seed in (1, 1, 2)
    ]  # fmt: skip
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_auto_batch_size_and_explicit_batch_size(tiny):
    model, tokenizer = tiny
    size = gen.auto_batch_size(model, sequence_tokens=40)
    assert isinstance(size, int) and 1 <= size <= gen.CPU_BATCH_CAP
    # layers 2 x kv heads 2 x head dim 16 x (K, V) x 40 tokens x 4 bytes, plus activations
    kv = 2 * 2 * 16 * 2 * 40 * 4
    assert gen.bytes_per_sequence(model, 40) == kv + 40 * (32 + 64) * 4 + 2 * len(tokenizer) * 4
    auto = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=2)
    assert auto.batch_size == min(len(CONVERSATIONS), gen.CPU_BATCH_CAP) and auto.batches == 1
    chosen = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=2, batch_size=4)
    assert chosen.batch_size == 4 and chosen.batches == 2


def test_out_of_memory_halves_the_batch(tiny):
    model, tokenizer = tiny
    seen = []

    def small_gpu(m, **kwargs):
        rows = kwargs["input_ids"].shape[0]
        seen.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated, {rows} rows)")
        return m.generate(**kwargs)

    out = gen.generate_texts(
        model, tokenizer, CONVERSATIONS, max_new_tokens=5, batch_size=8, generate_fn=small_gpu
    )
    # 8 is cut to the 6 prompts, 6 fails, 3 fails, then batches of 1 (3 // 2) run.
    assert seen[:2] == [6, 3] and set(seen[2:]) == {1} and out.oom_retries == 2
    assert out.batch_size == 1 and out.batches == len(CONVERSATIONS)
    plain = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=5, batch_size=6)
    assert out.token_ids == plain.token_ids

    def always(m, **kwargs):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):  # nothing left to halve at batch size 1
        gen.generate_texts(
            model, tokenizer, CONVERSATIONS[:1], max_new_tokens=2, generate_fn=always
        )
    assert gen.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not gen.is_out_of_memory(RuntimeError("shape mismatch"))


# --- `rlhf generate` end to end -------------------------------------------------------------


@pytest.fixture
def project(Session, cli, admin, tiny_dir):  # noqa: N803
    """{"policy": id, "reward": id}: a project with held-out and train prompts, the tiny
    policy registered as a policy checkpoint (and, to be refused, as a reward checkpoint);
    an engineer `eng` and a labeler `lab`."""
    for name, role in (("eng", "engineer"), ("lab", "labeler")):
        res = cli("users", "add", name, "--role", role, "--password-stdin", user=admin,
                  stdin="password-123\n")  # fmt: skip
        assert res.code == 0, res.err

    def copy(directory):
        for name in os.listdir(tiny_dir):
            shutil.copy(os.path.join(tiny_dir, name), directory / name)

    out = {}
    with Session.begin() as s:
        p = create_project(s, name="gen", kind="sft")
        for split, questions in (("heldout", HELDOUT), ("train", TRAIN)):
            for q in questions:
                messages = [{"role": "user", "content": q}]
                s.add(Prompt(project_id=p.id, messages=messages, split=split,
                             content_hash=prompt_hash(messages)))  # fmt: skip
        for kind in ("policy", "reward"):
            directory = training_records.write_checkpoint_dir(f"tiny-{kind}", copy)
            ck = training_records.register_checkpoint(
                s, kind=kind, directory=directory, run_id=None, base_model="tiny-llama"
            )
            out[kind] = ck.id
    return out


def _generated(Session):  # noqa: N803
    with Session.begin() as s:
        rows = s.execute(
            select(Response, Prompt.split).join(Prompt, Prompt.id == Response.prompt_id)
        ).all()
        return [(r.prompt_id, split, r.text, r.content_hash, r.author_kind, r.checkpoint_id,
                 dict(r.sampling_params or {}), r.source) for r, split in rows]  # fmt: skip


def test_rlhf_generate_stores_answers_and_is_idempotent(cli, project, Session):  # noqa: N803
    ck = str(project["policy"])
    base = ("generate", "--checkpoint", ck, "--project", "gen", "--max_new_tokens", "4")
    first = cli(*base, "--json", user="eng")
    assert first.code == 0, first.err
    out = first.json()
    assert out["prompts"] == out["responses"] == len(HELDOUT) and out["skipped"] == 0
    assert out["checkpoint_id"] == project["policy"] and out["split"] == "heldout"
    assert 1 <= out["tokens"] <= 4 * len(HELDOUT) and out["batch_size"] >= 1
    assert len(out["response_ids"]) == len(HELDOUT) and out["tokens_per_s"] > 0
    rows = _generated(Session)
    assert len(rows) == len(HELDOUT) and {split for _, split, *_ in rows} == {"heldout"}
    for _pid, _split, text, sha, author, checkpoint_id, params, source in rows:
        assert author == AuthorKind.checkpoint and checkpoint_id == project["policy"]
        assert sha == sha256_text(text) and source == "generate"
        assert isinstance(params.pop("truncated"), bool)  # no EOS within max_new_tokens
        assert params == {
            "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 4, "seed": 0, "sample": 0,
            "model": "tiny-policy", "base_model": "tiny-llama",
        }  # fmt: skip

    again = cli(*base, user="eng")  # the text summary this time
    assert again.code == 0, again.err
    assert "0 responses stored, 4 prompts skipped" in again.out
    assert len(_generated(Session)) == len(HELDOUT)

    # --n 2: only the missing second sample of each prompt is generated.
    two = cli(*base, "--n", "2", "--json", user="eng").json()
    assert (two["prompts"], two["responses"], two["skipped"]) == (4, 4, 0)
    rows = _generated(Session)
    samples: dict[int, list[int]] = {}
    for pid, *_, params, _source in rows:
        samples.setdefault(pid, []).append(params["sample"])
    assert all(sorted(v) == [0, 1] for v in samples.values()) and len(samples) == 4
    # Greedy: both samples are the same answer.
    by_prompt = {}
    for pid, _split, text, *_ in rows:
        by_prompt.setdefault(pid, set()).add(text)
    assert all(len(texts) == 1 for texts in by_prompt.values())

    # Other sampling parameters are another request; --split train, --limit, sampling.
    sampled = cli(
        "generate", "--checkpoint", ck, "--project", "gen", "--split", "train", "--n", "2",
        "--temperature", "0.9", "--top_p", "0.95", "--seed", "3", "--max_new_tokens", "3",
        "--limit", "2", "--batch_size", "3", "--json", user="eng",
    ).json()  # fmt: skip
    assert (sampled["prompts"], sampled["responses"], sampled["batch_size"]) == (2, 4, 3)
    train_rows = [r for r in _generated(Session) if r[1] == "train"]
    assert len(train_rows) == 4
    assert {(r[6]["temperature"], r[6]["top_p"], r[6]["seed"]) for r in train_rows} == {
        (0.9, 0.95, 3)
    }
    every = cli(*base, "--split", "all", "--json", user="eng").json()
    assert (every["prompts"], every["skipped"]) == (len(TRAIN), len(HELDOUT))


def test_rlhf_generate_refuses_bad_requests_and_stores_nothing(cli, project, Session):  # noqa: N803
    ck = str(project["policy"])
    cases = [
        (("--checkpoint", ck, "--project", "gen"), "lab", "lab is a labeler"),
        (("--checkpoint", ck, "--project", "gen"), None, "who is running this?"),
        (("--checkpoint", "999", "--project", "gen"), "eng", "no checkpoint with id 999"),
        (("--checkpoint", str(project["reward"]), "--project", "gen"), "eng",
         "is a reward checkpoint, not a policy"),
        (("--checkpoint", ck, "--project", "nope"), "eng", "no project named 'nope'"),
        (("--checkpoint", ck, "--project", "gen", "--n", "0"), "eng", "n must be at least 1"),
        (("--checkpoint", ck, "--project", "gen", "--top_p", "0"), "eng", "top_p must be"),
        (("--checkpoint", ck, "--project", "gen", "--batch_size", "0"), "eng", "batch_size"),
        (("--checkpoint", ck, "--project", "gen", "--limit", "0"), "eng", "limit must be"),
    ]  # fmt: skip
    for args, user, message in cases:
        res = cli("generate", *args, user=user)
        assert res.code == 1 and message in res.err, (args, res.err)
    assert cli("generate", "--checkpoint", ck, "--project", "gen", "--split", "x").code == 2
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(Response)) == 0


def test_a_crash_keeps_the_batches_already_stored(project, Session):  # noqa: N803
    calls = []

    def crash_on_second(m, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if len(calls) == 2:
            raise RuntimeError("the machine went away")
        return m.generate(**kwargs)

    common = {"checkpoint_id": project["policy"], "project": "gen", "max_new_tokens": 3,
              "batch_size": 1, "progress": False}  # fmt: skip
    with pytest.raises(RuntimeError, match="went away"):
        gen.answer_project(Session, **common, generate_fn=crash_on_second)
    assert len(_generated(Session)) == 1
    out = gen.answer_project(Session, **common)
    assert (out["prompts"], out["responses"], out["skipped"]) == (len(HELDOUT) - 1, 3, 1)
    assert len({r[0] for r in _generated(Session)}) == len(HELDOUT)


def test_truncated_is_true_exactly_where_no_eos_came(tiny):
    model, tokenizer = tiny
    plain = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=6, batch_size=3)
    eos = gen.eos_ids(model, tokenizer)
    assert plain.truncated == [not set(ids) & eos for ids in plain.token_ids]
    # Make a token the model really emits an end-of-sequence token: the answers that say it
    # now stop there (not cut), the others still run into the limit (cut).
    stop = plain.token_ids[0][1]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = sorted({*eos, stop})
    try:
        out = gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=6, batch_size=3)
    finally:
        model.generation_config.eos_token_id = saved
    said = [stop in ids for ids in plain.token_ids]
    assert said[0] and out.truncated[0] is False and out.token_ids[0][-1] == stop
    expected = [not s and len(ids) == 6 for s, ids in zip(said, plain.token_ids, strict=True)]
    assert out.truncated == expected
    assert True in out.truncated or all(said)


def test_progress_is_one_line_per_batch_on_stderr(tiny, capsys):
    model, tokenizer = tiny
    seen = []
    gen.generate_texts(
        model, tokenizer, CONVERSATIONS, max_new_tokens=3, batch_size=2, progress=True,
        label="arena demo-arena", on_progress=lambda *a: seen.append(a[:2]),
    )  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"arena demo-arena: answered {n}/6 prompts ({n / 6:.0%})" for n in (2, 4, 6)
    ]
    assert "min left" in lines[0] and "left" not in lines[-1]
    assert seen == [(2, 6), (4, 6), (6, 6)]
    assert gen.progress_line("x", 8, 20, 72.0) == (
        "x: answered 8/20 prompts (40%), 1.2 min, ~1.8 min left"
    )
    gen.generate_texts(model, tokenizer, CONVERSATIONS, max_new_tokens=2, batch_size=2)
    assert capsys.readouterr().err == ""  # quiet unless asked


def test_stored_answers_come_in_small_batches_on_cpu(project, Session, capsys):  # noqa: N803
    out = gen.answer_project(Session, checkpoint_id=project["policy"], project="gen",
                             split="all", max_new_tokens=3)  # fmt: skip
    total = len(HELDOUT) + len(TRAIN)
    assert out["batch_size"] == gen.CPU_ANSWER_BATCH < total and out["responses"] == total
    # (transformers' own "Loading weights" bar shares stderr)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("generate gen:")]
    assert len(lines) == -(-total // gen.CPU_ANSWER_BATCH)  # one per batch
    assert lines[-1].startswith(f"generate gen: answered {total}/{total} prompts (100%)")
    flags = [r[6]["truncated"] for r in _generated(Session)]
    assert out["truncated"] == sum(flags) and len(flags) == total
