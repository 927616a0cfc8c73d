"""LoRA checkpoints stored as adapters: a few KB on disk instead of the whole model, loaded as
their base with the adapter merged in memory, trained on again, merged in place by
`rlhf checkpoints merge`, and kept from losing their base.

Real parts: a migrated SQLite database, the recipes run through `rlhf train`, a tiny Llama
built in-process (wide enough that its weights dwarf a rank-2 adapter, as SmolLM2's do).
The expected logits are computed here with peft directly (base + adapter, merged), never
through the loader under test.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import transformers
from sqlalchemy import select
from test_multiprocess_recipe import ShardedTrainer
from test_train_sft_reward import PAIRS, TINY, _seed
from test_training_models import save_tiny_policy, word_tokenizer

from labeling import snapshots
from labeling.db import make_engine, make_sessionmaker
from labeling.errors import InvalidInput, NotFound
from labeling.models import Checkpoint
from labeling.registry import training_records
from labeling.settings import load_settings
from training import checkpoint
from training.launch import Launch
from training.models import load_policy, load_reward_model, resolve_model

LORA = ["--use_peft", "true", "--lora_r", "2", "--lora_alpha", "4", "--lora_dropout", "0",
        "--lora_target_modules", "q_proj", "v_proj", "--learning_rate", "1e-2"]  # fmt: skip
WEIGHTS = "model.safetensors"


@pytest.fixture
def db_url(sqlite_url):
    """SQLite only: the costs here are the training runs; the delete and gc rules they rely
    on are tested on both databases in tests/labeling/test_checkpoint_care.py."""
    return sqlite_url


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def wide_policy(tmp_path_factory):
    """A tiny Llama, 128 wide: about 2 MB of float32 weights."""
    words = sorted({w for q, _, g, b, _ in PAIRS for w in f"{q} {g} {b}".split()})
    tokenizer = word_tokenizer(words)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("wide") / "policy"
    transformers.LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture
def snaps(Session, cli, admin):  # noqa: N803
    res = cli("users", "add", "eng", "--role", "engineer", "--password-stdin", user=admin,
              stdin="password-123\n")  # fmt: skip
    assert res.code == 0, res.err
    with Session.begin() as s:
        project = _seed(s)
        return {
            kind: snapshots.create_snapshot(s, project=project, kind=kind)[0].id
            for kind in ("sft", "preference")
        }


IDS = torch.tensor([[1, 5, 7, 9, 11, 3]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


def _merged_by_hand(base_model, adapter_dir) -> torch.Tensor:
    """What base + adapter is, by peft itself (the expectation, not the code under test)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()


def _sft(cli, snaps, base: str) -> dict:
    res = cli("train", "sft", "--snapshot", str(snaps["sft"]), "--base", base, "--json",
              *TINY, *LORA, user="eng")  # fmt: skip
    assert res.code == 0, res.err
    return res.json()


def _show(cli, checkpoint_id: int) -> dict:
    shown = cli("checkpoints", "show", str(checkpoint_id), "--json", user="eng")
    assert shown.code == 0, shown.err
    return shown.json()


def test_lora_sft_stores_an_adapter_that_loads_trains_merges_and_keeps_its_base(
    cli,
    snaps,
    wide_policy,
    Session,  # noqa: N803
):
    first = _sft(cli, snaps, wide_policy)["checkpoint_id"]
    shown = _show(cli, first)
    folder = shown["path"]
    files = set(os.listdir(folder))
    assert shown["storage"] == "adapter" and shown["adapter_base"] == wide_policy
    assert {"adapter_model.safetensors", "adapter_config.json", "rlhf_base.json",
            "tokenizer.json", "COMPLETE"} <= files  # fmt: skip
    assert WEIGHTS not in files and not any(n.endswith((".bin", ".pt")) for n in files)
    pointer = json.loads(open(os.path.join(folder, "rlhf_base.json")).read())
    assert pointer["base"] == wide_policy and pointer["kind"] == "policy"
    full_weights = os.path.getsize(os.path.join(wide_policy, WEIGHTS))
    assert shown["bytes"] < 0.1 * full_weights, (shown["bytes"], full_weights)

    # loading gives base + adapter merged (as peft merges it), and the adapter is not a no-op
    model, tokenizer = load_policy(f"checkpoint:{first}")
    assert not hasattr(model, "peft_config") and tokenizer.pad_token is not None
    assert all(p.requires_grad for p in model.parameters())  # trainable whole, as any model
    base = transformers.AutoModelForCausalLM.from_pretrained(wide_policy)
    base_logits = _logits(base)
    expected = _logits(_merged_by_hand(base, folder))
    assert torch.equal(_logits(model), expected)
    assert not torch.allclose(expected, base_logits)
    assert torch.equal(_logits(load_policy(folder)[0]), expected)  # by folder, as recipes do
    assert resolve_model(f"checkpoint:{first}").adapter_base == wide_policy

    # a second LoRA run on top of it: its adapter names the first by id, its parent
    second = _sft(cli, snaps, f"checkpoint:{first}")["checkpoint_id"]
    child = _show(cli, second)
    assert child["parent_id"] == first and child["storage"] == "adapter"
    assert child["adapter_base"] == f"checkpoint:{first}"
    expected_child = _logits(_merged_by_hand(load_policy(f"checkpoint:{first}")[0], child["path"]))
    assert torch.equal(_logits(load_policy(f"checkpoint:{second}")[0]), expected_child)

    # the first is needed: deleting it is refused and loses nothing
    refused = cli("checkpoints", "delete", str(first), user="eng")
    assert refused.code == 1 and "Nothing was deleted" in refused.err
    assert f"checkpoints {second} descend from it" in refused.err
    assert f"adapter checkpoints {second} are stored on it" not in refused.err  # said once
    assert os.path.isdir(folder)
    gc = cli("checkpoints", "gc", "--dry-run", "--json", user="eng").json()
    assert gc["orphan_dirs"] == []  # adapter folders are named by their rows

    # merge the first in place: same id, same path, a full model, the same logits
    with Session() as s:
        row_path = s.get(Checkpoint, first).path
    listed = {c["id"]: c for c in cli("checkpoints", "list", "--json", user="eng").json()}
    assert listed[first]["storage"] == "adapter" and listed[first]["bytes"] == shown["bytes"]
    merged = cli("checkpoints", "merge", str(first), "--json", user="eng")
    assert merged.code == 0, merged.err
    out = merged.json()
    assert out["merged"] is True and out["path"] == folder
    assert out["bytes_before"] < 0.1 * out["bytes_after"]
    files = set(os.listdir(folder))
    assert WEIGHTS in files and "COMPLETE" in files and "tokenizer.json" in files
    assert not files & {"adapter_model.safetensors", "adapter_config.json", "rlhf_base.json"}
    again = _show(cli, first)
    assert again["storage"] == "merged" and again["adapter_base"] is None and again["complete"]
    assert torch.equal(_logits(load_policy(f"checkpoint:{first}")[0]), expected)
    assert torch.equal(_logits(load_policy(f"checkpoint:{second}")[0]), expected_child)
    assert not list(load_settings().checkpoints_dir.glob(".tmp-*"))  # the adapter went

    # merging a full checkpoint is a clear no-op; labelers may not merge
    noop = cli("checkpoints", "merge", str(first), user="eng")
    assert noop.code == 0 and "already a full model" in noop.out
    cli("users", "add", "lab9", "--role", "labeler", "--password-stdin", user="admin",
        stdin="password-123\n")  # fmt: skip
    denied = cli("checkpoints", "merge", str(second), user="lab9")
    assert denied.code == 1 and "error:" in denied.err
    assert _show(cli, second)["storage"] == "adapter"
    with Session() as s:  # the same record: no new row, the same path
        assert s.get(Checkpoint, first).path == row_path
        assert sorted(s.scalars(select(Checkpoint.id))) == [first, second]


def test_reward_lora_on_a_policy_trunk_keeps_its_score_head_in_the_adapter(
    cli,
    snaps,
    wide_policy,
):
    res = cli("train", "reward", "--snapshot", str(snaps["preference"]), "--base",
              f"policy:{wide_policy}", "--json", *TINY, *LORA, user="eng")  # fmt: skip
    assert res.code == 0, res.err
    checkpoint_id = res.json()["checkpoint_id"]
    shown = _show(cli, checkpoint_id)
    assert shown["storage"] == "adapter" and shown["adapter_base"] == f"policy:{wide_policy}"
    assert shown["evaluation"]["n"] == 3  # evaluated from the in-memory merge
    model, _ = load_reward_model(f"checkpoint:{checkpoint_id}")
    assert isinstance(model, transformers.LlamaForSequenceClassification)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        wide_policy, num_labels=1
    )  # a new, random score head: the adapter carries the trained one
    expected = _logits(_merged_by_hand(base, shown["path"]))
    assert torch.equal(_logits(model), expected)
    assert cli("checkpoints", "merge", str(checkpoint_id), user="eng").code == 0
    assert torch.equal(_logits(load_reward_model(f"checkpoint:{checkpoint_id}")[0]), expected)
    # an adapter of a reward model is no policy
    with pytest.raises(InvalidInput, match="reward"):
        load_policy(f"checkpoint:{checkpoint_id}")


def test_a_sharded_lora_save_keeps_the_adapter(tmp_path, monkeypatch):
    """FSDP / DeepSpeed: the trainer's collective save writes the adapter; with lora_base it
    stays one (rank 0 adds the pointer), no merge into a fresh base."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
    base_dir = save_tiny_policy(tmp_path / "base")
    model, tokenizer = load_policy(str(base_dir))
    torch.manual_seed(0)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    launch = Launch()
    base = resolve_model(str(base_dir))
    directory = checkpoint.write_checkpoint(
        launch, "sft-run1",
        lambda d: checkpoint.save_model(
            ShardedTrainer(peft_model, tokenizer), tokenizer, d, launch, lora_base=base
        ),
    )  # fmt: skip
    files = set(os.listdir(directory))
    assert {"adapter_model.safetensors", "rlhf_base.json", "COMPLETE"} <= files
    assert WEIGHTS not in files and "training_args.bin" not in files
    assert training_records.read_base_pointer(directory)["base"] == base.spec
    expected = _logits(peft_model.merge_and_unload())
    assert torch.equal(_logits(load_policy(str(directory))[0]), expected)

    # a pointer that cannot be read, or a base that is gone: one sentence, nothing loaded
    pointer = directory / training_records.BASE_POINTER
    pointer.write_text("{not json")
    with pytest.raises(InvalidInput, match="rlhf_base.json cannot be read"):
        load_policy(str(directory))
    training_records.write_base_pointer(directory, base=str(tmp_path / "gone"), kind="policy",
                                        base_model=None)  # fmt: skip
    with pytest.raises(NotFound, match="no model directory"):
        load_policy(str(directory))
    training_records.write_base_pointer(directory, base=str(directory), kind="policy",
                                        base_model=None)  # fmt: skip
    with pytest.raises(InvalidInput, match="back to itself"):
        load_policy(str(directory))


def test_full_rl_from_an_adapter_takes_its_reference_from_the_merged_model(
    cli,
    snaps,
    wide_policy,
    Session,  # noqa: N803
):
    """TRL builds the KL reference of a full fine-tune from the model's directory name; for
    an adapter transformers would apply it to adapter_config.json's base path by itself (a
    wrong model for an adapter on an adapter). Here that path leads nowhere: the run works
    only if the reference comes from the merged model. The reward is a LoRA reward adapter."""
    from labeling.models import TrainingRun

    policy = _sft(cli, snaps, wide_policy)["checkpoint_id"]
    config_file = os.path.join(_show(cli, policy)["path"], "adapter_config.json")
    config = json.loads(open(config_file).read())
    config["base_model_name_or_path"] = "/nonexistent/base"
    with open(config_file, "w") as fh:
        json.dump(config, fh)
    reward = cli("train", "reward", "--snapshot", str(snaps["preference"]), "--base",
                 f"policy:{wide_policy}", "--json", *TINY, *LORA, user="eng")  # fmt: skip
    assert reward.code == 0, reward.err
    rloo = cli(
        "train", "rl", "--algo", "rloo", "--snapshot", str(snaps["sft"]), "--base",
        f"checkpoint:{policy}", "--reward", f"checkpoint:{reward.json()['checkpoint_id']}",
        "--json", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--num_generations", "2", "--max_completion_length", "8", "--use_peft", "false",
        user="eng",
    )  # fmt: skip
    assert rloo.code == 0, rloo.err
    result = rloo.json()
    with Session() as s:
        assert s.get(TrainingRun, result["run_id"]).config["beta"] > 0  # a reference was used
    child = _show(cli, result["checkpoint_id"])
    assert child["storage"] == "full" and child["parent_id"] == policy
    assert not (load_settings().home / "runs" / f"run-{result['run_id']}" / "reference").exists()
