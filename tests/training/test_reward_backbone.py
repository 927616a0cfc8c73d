"""A policy's trunk as a reward model: `policy:SPEC` loads a causal LM as a sequence
classifier with a new score head, and LoRA for it trains the adapters and the whole head
(peft's modules_to_save), merged into a plain classifier. A tiny in-process Llama saved as
safetensors stands in for SmolLM2."""

from __future__ import annotations

import datasets
import pytest
import torch
import transformers
from test_training_models import save_tiny_policy, word_tokenizer

from reward.train import reward_peft_config
from training import models

WORDS = ["the", "sky", "is", "blue", "green", "what", "colour", "yes", "no"]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return save_tiny_policy(tmp_path_factory.mktemp("llama") / "policy", word_tokenizer(WORDS))


def test_names_resolve_to_the_right_backbones(tiny_llama):
    minilm = models.resolve_model("minilm", kind="reward")
    assert minilm.base_model == models.REWARD_NAME
    assert models.resolve_model(models.REWARD_NAME, kind="reward") == minilm  # offline too
    policy = models.resolve_model(f"policy:{tiny_llama}", kind="reward")
    assert policy.path == str(tiny_llama.resolve())
    assert models.resolve_model("default", kind="reward").base_model in (
        models.REWARD_NAME, models.POLICY_NAME,
    )  # fmt: skip


def test_policy_loads_as_a_classifier_and_trains_lora_plus_the_score_head(tiny_llama, tmp_path):
    from trl import ModelConfig, RewardConfig, RewardTrainer

    model, tok = models.load_reward_model(f"policy:{tiny_llama}")
    assert isinstance(model, transformers.LlamaForSequenceClassification)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    head = model.score.weight.detach().clone()
    peft = reward_peft_config(
        ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    )
    assert peft.task_type == "SEQ_CLS" and "score" in peft.modules_to_save
    conversation = [{"role": "user", "content": "what colour is the sky"}]
    rows = [
        {"chosen": [*conversation, {"role": "assistant", "content": a}],
         "rejected": [*conversation, {"role": "assistant", "content": b}]}
        for a, b in [("blue", "green"), ("the sky is blue", "no")] * 2
    ]  # fmt: skip
    config = RewardConfig(
        output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", use_cpu=True,
        max_steps=3, per_device_train_batch_size=2, learning_rate=5e-2, logging_steps=1,
        max_length=64,
    )  # fmt: skip
    trainer = RewardTrainer(
        model=model, args=config, processing_class=tok, peft_config=peft,
        train_dataset=datasets.Dataset.from_list(rows),
    )  # fmt: skip
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    assert any("score" in n and "modules_to_save" in n for n in trainable)
    assert not any("embed_tokens" in n or "mlp" in n for n in trainable)
    trainer.train()
    merged = trainer.model.merge_and_unload()
    assert isinstance(merged, transformers.LlamaForSequenceClassification)
    assert not torch.equal(merged.score.weight, head)  # the head trained, in full
    merged.save_pretrained(tmp_path / "reward", safe_serialization=True)
    tok.save_pretrained(tmp_path / "reward")
    again, _ = models.load_reward_model(str(tmp_path / "reward"))
    assert torch.equal(again.score.weight, merged.score.weight)
