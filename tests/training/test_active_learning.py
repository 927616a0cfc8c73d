"""The active-learning maths (reward/active.py) on cases whose answer is known, and the
embedding pass on a tiny BERT sequence classifier built here."""

from __future__ import annotations

import numpy as np
import pytest

from reward import active


def committee():
    """Labeled pairs: 40 consistent ones along dimension 0 (A always wins), 6 that
    contradict each other along dimension 1. Open pairs: one along dimension 0 (every head
    is sure), one along dimension 1 (heads fitted on different resamples disagree), one
    with no difference at all (every head says 50%)."""
    rng = np.random.default_rng(0)
    x = np.zeros((46, 3))
    x[:40, 0] = rng.uniform(0.5, 1.5, 40)
    x[40:, 1] = 1.0
    a_wins = np.array([True] * 40 + [True, False] * 3)
    open_x = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]])
    return x, a_wins, open_x


def test_disagreement_puts_the_contested_pair_first_and_margin_the_closest():
    x, a_wins, open_x = committee()
    heads = active.fit_ensemble(x, a_wins, k=5, seed=0, l2=0.1)
    scores = active.score_pairs(heads, open_x)
    assert scores.disagreement[1] > 10 * scores.disagreement[0]
    assert scores.disagreement[2] == pytest.approx(0.0)
    assert scores.p_a[0] > 0.95 and scores.margin[0] > 3
    assert list(active.order("disagreement", scores)) == [1, 0, 2]
    assert list(active.order("margin", scores)) == [2, 1, 0]


def test_random_order_is_reproducible_with_a_seed():
    scores = active.Scores(*(np.zeros(50),) * 3)
    first = active.order("random", scores, seed=3)
    assert list(first) == list(active.order("random", scores, seed=3))
    assert list(first) != list(active.order("random", scores, seed=4))
    assert sorted(first) == list(range(50))
    with pytest.raises(ValueError, match="unknown strategy 'loud'"):
        active.order("loud", scores)


def test_heads_learn_a_direction_and_the_prior_stands_in_for_them():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=8)
    x = rng.normal(size=(300, 8))
    a_wins = x @ truth + rng.logistic(size=300) * 0.3 > 0
    w = active.fit_head(x, a_wins, l2=1.0)
    test = rng.normal(size=(500, 8))
    assert np.mean((test @ w > 0) == (test @ truth > 0)) > 0.9
    # the same labels explained by C's score: the head has nothing left to learn
    offset = 20.0 * np.where(a_wins, 1.0, -1.0)
    assert np.abs(active.fit_head(x, a_wins, offset=offset, l2=1.0)).max() < 1e-3
    # no labels: every member is the prior alone, so they cannot disagree
    heads = active.fit_ensemble(np.zeros((0, 8)), np.zeros(0, bool), k=4)
    assert heads.shape == (4, 8) and not heads.any()
    scores = active.score_pairs(heads, test[:5], offset=np.arange(5.0), prior_member=True)
    assert np.allclose(scores.disagreement, 0) and np.allclose(scores.margin, np.arange(5.0))
    # features are scaled per dimension, signs kept: x(A, B) = -x(B, A)
    scale = active.feature_scale(np.vstack([x, -x]))
    assert np.allclose(scale, np.sqrt(np.mean(x**2, axis=0)))


def test_embed_gives_the_models_own_score_and_unit_vectors(tmp_path):
    torch = pytest.importorskip("torch")
    import transformers

    from training.scoring import score

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "assistant", ":"]
    words += [f"w{i}" for i in range(30)]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    tokenizer.chat_template = (
        "[CLS]{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} [SEP]{% endfor %}"
    )
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=1)  # fmt: skip
    model = transformers.BertForSequenceClassification(config).eval()
    conversations = [
        [{"role": "user", "content": " ".join(f"w{j}" for j in range(i % 7 + 1))},
         {"role": "assistant", "content": f"w{i} w{(3 * i) % 30}"}]
        for i in range(20)
    ]  # fmt: skip
    emb, scores = active.embed(model, tokenizer, conversations, max_length=64, batch_size=6)
    assert emb.shape == (20, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    expected = score(model, tokenizer, conversations, max_length=64)
    assert np.allclose(scores, expected, atol=1e-5)  # in the callers' order, not by length
    one, _ = active.embed(model, tokenizer, conversations[5:6], max_length=64)
    assert np.allclose(one[0], emb[5], atol=1e-5)
