"""The default reward model's shape and start: all-MiniLM-L6-v2 as a classifier of its last
token (training/last_token_classifier.py), and a new head fitted as a linear probe on the
frozen features before training (reward/head_init.py: LP-FT). Tiny in-process BERTs stand in
for MiniLM except where the real package folder is the point."""

from __future__ import annotations

import pytest
import torch
import transformers
from test_training_models import save_tiny_bert

from reward import head_init
from training import models
from training.last_token_classifier import LastTokenBertForSequenceClassification

WORDS = ["the", "sky", "is", "blue", "green", "good", "bad", "answer", "user", "assistant", ":"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", WORDS)


def _ids(tok, texts):
    return tok(texts, padding=True, return_tensors="pt")


def test_the_classifier_scores_the_last_attended_token_under_either_padding(tiny_bert):
    model = LastTokenBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    plain = transformers.BertModel.from_pretrained(tiny_bert, add_pooling_layer=False)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight,
                       plain.embeddings.word_embeddings.weight)  # fmt: skip
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    short, long = "the sky is blue", "the sky is blue the answer is good"
    with torch.no_grad():
        alone = model(**_ids(tok, [short])).logits
        right = model(**_ids(tok, [short, long])).logits
        hidden = plain.eval()(**_ids(tok, [short])).last_hidden_state[0, -1]
        tok.padding_side = "left"  # BERT's absolute positions shift: its features do too
        left_ids = _ids(tok, [short, long])
        left = model(**left_ids).logits
        left_hidden = plain(**left_ids).last_hidden_state[0, -1]
    assert right.shape == (2, 1)
    # right padding changes nothing: the score reads the last real token ([SEP])
    assert torch.allclose(right[0], alone[0], atol=1e-5)
    assert torch.allclose(alone[0], model.score(hidden), atol=1e-5)
    # left padding: the last position is the real token, not a pad
    assert bool(left_ids["attention_mask"][0, 0] == 0)
    assert torch.allclose(left[0], model.score(left_hidden), atol=1e-5)
    # the encoder's hidden states come out when asked (reward/active.py embeds with them)
    with torch.no_grad():
        out = model(**_ids(tok, [short]), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert torch.allclose(out.hidden_states[-1][0, -1], hidden, atol=1e-5)


def test_a_saved_last_token_classifier_loads_back_through_the_auto_classes(tiny_bert, tmp_path):
    model = LastTokenBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    with torch.no_grad():
        model.score.weight.normal_()
    model.save_pretrained(tmp_path / "rm", safe_serialization=True)
    transformers.AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "rm")
    again, tok = models.load_reward_model(str(tmp_path / "rm"))
    assert isinstance(again, LastTokenBertForSequenceClassification)
    assert torch.equal(again.score.weight, model.score.weight)
    assert not models.has_new_head(models.resolve_model(str(tmp_path / "rm"), kind="reward"))


def test_minilm_loads_as_a_last_token_classifier_with_a_new_head():
    resolved = models.resolve_model("minilm", kind="reward")
    model, tok = models.load_reward_model("minilm")
    assert isinstance(model, LastTokenBertForSequenceClassification)
    assert model.config.num_labels == 1 and model.bert.pooler is None  # no untrained pooler
    assert models.has_new_head(resolved)
    # the recipe loads its base by path: the same folder is the same classifier
    by_path, _ = models.load_reward_model(resolved.path)
    assert isinstance(by_path, LastTokenBertForSequenceClassification)
    assert models.has_new_head(models.resolve_model(resolved.path, kind="reward"))
    # a policy's trunk as a classifier: its head is new (no need to load SmolLM2 to say so)
    trunk = models.ResolvedModel("/nowhere", models.POLICY_NAME, spec="policy:default")
    assert models.has_new_head(trunk)


def test_a_plain_encoder_directory_gets_a_new_head_and_a_classifier_keeps_its_own(
    tiny_bert, tmp_path
):
    assert models.has_new_head(models.resolve_model(str(tiny_bert), kind="reward"))
    classifier = transformers.BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    classifier.save_pretrained(tmp_path / "clf", safe_serialization=True)
    assert not models.has_new_head(models.resolve_model(str(tmp_path / "clf"), kind="reward"))


def _pairs(n):
    """Chosen answers say `good`, rejected ones `bad`: a linear reward on the last token can
    tell them apart."""
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": "the sky is " + ("blue" if i % 2 else "green")}]
        filler = " the" * (i % 3)
        rows.append({
            "chosen": [*prompt, {"role": "assistant", "content": f"good answer{filler}"}],
            "rejected": [*prompt, {"role": "assistant", "content": f"bad answer{filler}"}],
        })  # fmt: skip
    return rows


def test_the_fitted_head_prefers_the_chosen_answers_before_any_training(tiny_bert):
    model, tok = models.load_reward_model(str(tiny_bert))
    name, head = head_init.head_of(model)
    assert name == "classifier"  # a plain encoder directory: BERT's own classifier of [CLS]
    model = LastTokenBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model.train()
    rows = _pairs(24)
    stats = head_init.fit_head(model, tok, rows)
    assert model.training and isinstance(model.score, torch.nn.Linear)  # swapped back
    assert stats["probe_rows"] == 24 and stats["probe_strength"] in head_init.STRENGTHS
    assert 0.9 <= stats["probe_cv_accuracy"] <= 1
    assert float(model.score.bias) == 0.0
    feats = head_init.pooled_features(
        model, tok, [c for r in rows for c in (r["chosen"], r["rejected"])]
    )
    with torch.no_grad():
        scores = model.score(torch.as_tensor(feats, dtype=torch.float32)).squeeze(-1)
    assert bool((scores[0::2] > scores[1::2]).all())


def test_a_few_pairs_take_the_middle_strength_and_a_wide_head_is_refused(tiny_bert):
    assert head_init.choose_strength(torch.randn(4, 3).numpy()) == (head_init.STRENGTHS[2], None)
    model = LastTokenBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    with pytest.raises(ValueError, match="one-output linear"):
        head_init.fit_head(model, tok, _pairs(4))


def test_lora_on_the_last_token_classifier_finds_bert_modules_and_trains_the_head(
    tiny_bert, tmp_path
):
    import datasets
    from trl import ModelConfig, RewardConfig, RewardTrainer

    from reward.train import reward_peft_config

    _, tok = models.load_reward_model(str(tiny_bert))  # the template and EOS set
    model = LastTokenBertForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    peft = reward_peft_config(ModelConfig(use_peft=True, lora_r=4, lora_alpha=8), model)
    assert set(peft.target_modules) == {"query", "value"} and "score" in peft.modules_to_save
    head = model.score.weight.detach().clone()
    config = RewardConfig(
        output_dir=str(tmp_path / "out"), report_to="none", save_strategy="no", use_cpu=True,
        max_steps=3, per_device_train_batch_size=2, learning_rate=5e-2, logging_steps=1,
        max_length=64,
    )  # fmt: skip
    trainer = RewardTrainer(model=model, args=config, processing_class=tok, peft_config=peft,
                            train_dataset=datasets.Dataset.from_list(_pairs(4)))  # fmt: skip
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n and "query" in n for n in trainable)
    trainer.train()
    merged = trainer.model.merge_and_unload()
    assert isinstance(merged, LastTokenBertForSequenceClassification)
    assert not torch.equal(merged.score.weight, head)
