"""A new reward head fitted before training: a linear probe on the frozen model's features,
then fine-tuning from it (LP-FT: Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features"). A random head's first steps push noise back through the backbone; a fitted one
starts training from the best linear reward the frozen features allow.

    stats = fit_head(model, tokenizer, pairs.rows)   # sets the head; {"probe_accuracy", ...}

 1. Features are what the head reads: the head is swapped for an identity for one pass, so the
    model's own pooling (the last token, for LLaMA-style classifiers and
    training/last_token_classifier.py) gives them. At most PROBE_ROWS pairs, forward only.
 2. An L2 logistic regression on feature differences (chosen - rejected, both orientations,
    standardised), its strength chosen by 3-fold cross-validation on the same training pairs
    (STRENGTHS), fitted by L-BFGS in float64.
 3. The head gets w / std as its weight and 0 as its bias (a reward's offset is arbitrary), so
    before any step its score difference is the probe's logit.
bench/reward_probe.py uses the same fit to say what each backbone's frozen features are worth.
"""

from __future__ import annotations

import time
from typing import Any

from training.scoring import conversation_ids

STRENGTHS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # C: inverse L2 strength per pair
PROBE_ROWS = 2048  # enough for a head's 384-1024 weights; the rest is fine-tuning's
BATCH = 8


def fit(d, strength: float):
    """w of an L2 logistic regression on differences d (both orientations), by L-BFGS."""
    import torch

    x = torch.as_tensor(d, dtype=torch.float64)
    x = torch.cat([x, -x])
    y = torch.cat([torch.ones(len(d)), torch.zeros(len(d))]).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")
    lam = 1.0 / (strength * len(x))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y) + lam * (w @ w) / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def folds_of(n: int, k: int, seed: int):
    import numpy as np

    fold = np.empty(n, int)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return fold


def accuracy(d_train, d_test, strength: float) -> float:
    sd = d_train.std(0) + 1e-6
    return float((((d_test / sd) @ fit(d_train / sd, strength)) > 0).mean())


def choose_strength(d, folds: int = 3, seed: int = 1) -> tuple[float, float | None]:
    """(the strength with the best cross-validated accuracy on d, that accuracy; None with
    too few pairs to cross-validate, and the middle strength)."""
    if len(d) < 2 * folds:
        return STRENGTHS[len(STRENGTHS) // 2], None
    fold = folds_of(len(d), folds, seed)
    scores = {c: sum(accuracy(d[fold != g], d[fold == g], c) for g in range(folds)) / folds
              for c in STRENGTHS}  # fmt: skip
    best = max(STRENGTHS, key=lambda c: scores[c])
    return best, scores[best]


def head_of(model) -> tuple[str, Any]:
    """(attribute name, module) of a sequence classifier's head: `score` or BERT's
    `classifier`."""
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if head is not None:
            return name, head
    raise ValueError(f"{type(model).__name__} has no score or classifier head")


def pooled_features(model, tokenizer, conversations: list[list[dict]]):
    """(n, hidden) float64 array: what the head reads for each conversation, by the model's own
    pooling with the head replaced by an identity."""
    import numpy as np
    import torch

    name, head = head_of(model)
    ids = [conversation_ids(tokenizer, c) for c in conversations]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[Any] = [None] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding per batch
    device = next(model.parameters()).device
    was_training = model.training
    setattr(model, name, torch.nn.Identity())
    model.eval()
    try:
        for start in range(0, len(ids), BATCH):
            batch = order[start : start + BATCH]
            width = max(len(ids[i]) for i in batch)
            x = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in batch])
            mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch])
            with torch.no_grad():
                feats = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits
            for j, i in enumerate(batch):
                out[i] = feats[j].double().cpu().numpy()
    finally:
        setattr(model, name, head)
        model.train(was_training)
    return np.stack(out)


def fit_head(model, tokenizer, rows: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Set the model's one-output linear head to the probe fitted on rows (chosen / rejected
    conversations, already within the budget). Returns what the run records."""
    import numpy as np
    import torch

    start = time.monotonic()
    _, head = head_of(model)
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        raise ValueError(f"the head is {type(head).__name__}, not a one-output linear layer")
    if len(rows) > PROBE_ROWS:
        keep = np.random.default_rng(seed).permutation(len(rows))[:PROBE_ROWS]
        rows = [rows[i] for i in sorted(keep)]
    feats = pooled_features(
        model, tokenizer, [c for r in rows for c in (r["chosen"], r["rejected"])]
    )
    d = feats[0::2] - feats[1::2]
    strength, cv_accuracy = choose_strength(d)
    sd = d.std(0) + 1e-6
    w = fit(d / sd, strength) / sd
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype)[None])
        if head.bias is not None:
            head.bias.zero_()
    return {
        "probe_rows": len(rows),
        "probe_strength": strength,
        "probe_cv_accuracy": None if cv_accuracy is None else round(cv_accuracy, 4),
        "probe_seconds": round(time.monotonic() - start, 1),
    }
