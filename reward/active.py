"""Active learning maths: which unlabeled pairs would teach the reward model most.

No database here (reward/prioritise.py reads and writes; bench/active.py simulates).

The ensemble. Every text (prompt + answer, through the reward model's chat template, cut to
its budget as scoring cuts it: training/scoring.py) is embedded once by the reward
checkpoint C's backbone: the mean of its last hidden state over the real tokens, scaled to
unit length (what all-MiniLM-L6-v2 was trained to give; the input of a BERT
classifier's head is a pooler that MiniLM ships untrained). A pair's feature is
x = emb(prompt + A) - emb(prompt + B), each dimension divided by its root mean square over
the pairs at hand. On the labeled pairs, k heads are fitted, each on a bootstrap resample:
logistic regression of "A won" on x with C's own score difference as a fixed offset (the
prior: a head starts where C stands and learns the correction the labels ask for),

    P_m(A beats B) = sigmoid(o + w_m . x),   o = C(prompt + A) - C(prompt + B),

L2 penalty `l2` on w_m, Newton's method to convergence (a few dozen steps at most). When C
is a trained reward checkpoint it also joins as a member of its own (w = 0). A base model
whose score head is untrained (`default`) gives no prior: o = 0 and C is no member.

For an open pair, over the members m:
    disagreement      std of P_m(A beats B) (0: the members agree);
    predicted margin  mean of the members' score differences o + w_m . x.

Strategies (`order`): disagreement (highest first: query by committee), margin (smallest
|predicted margin| first: uncertainty sampling), random (a seeded shuffle). Ties break by
the other score, then by position (the oldest task first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES = ("disagreement", "margin", "random")
DEFAULT_K = 5
L2 = 3.0  # the heads' ridge strength on standardised features (bench/active.py uses it too)
NEWTON_STEPS = 50


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, float)))


def feature_scale(x: np.ndarray) -> np.ndarray:
    """Per-dimension root mean square of pair features (1 where a dimension is all zero):
    the division keeps x(A, B) = -x(B, A)."""
    rms = np.sqrt(np.mean(np.square(x), axis=0)) if len(x) else np.ones(x.shape[1])
    return np.where(rms > 1e-12, rms, 1.0)


def fit_head(
    x: np.ndarray,
    a_wins: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    l2: float = L2,
    steps: int = NEWTON_STEPS,
) -> np.ndarray:
    """w minimising sum log(1 + exp(-s (o + w.x))) + l2/2 |w|^2, s = +1 when A won else -1."""
    n, d = x.shape
    w = np.zeros(d)
    if n == 0:
        return w
    sign = np.where(np.asarray(a_wins, bool), 1.0, -1.0)
    o = np.zeros(n) if offset is None else np.asarray(offset, float)
    z = x * sign[:, None]  # each pair seen from its winner's side
    for _ in range(steps):
        margin = sign * o + z @ w
        p = sigmoid(-margin)  # the weight of each pair's loss gradient
        gradient = -(z.T @ p) + l2 * w
        hessian = (z.T * (p * (1 - p))) @ z + l2 * np.eye(d)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def fit_ensemble(
    x: np.ndarray,
    a_wins: np.ndarray,
    *,
    k: int = DEFAULT_K,
    seed: int = 0,
    offset: np.ndarray | None = None,
    l2: float = L2,
) -> np.ndarray:
    """(k, d) head weights, each fitted on a bootstrap resample of the labeled pairs (all
    zeros with no labeled pairs: every member is then the prior alone)."""
    n, d = x.shape
    rng = np.random.default_rng(seed)
    heads = np.zeros((k, d))
    if n == 0:
        return heads
    for m in range(k):
        pick = rng.integers(0, n, n)
        heads[m] = fit_head(
            x[pick], np.asarray(a_wins)[pick],
            offset=None if offset is None else np.asarray(offset)[pick], l2=l2,
        )  # fmt: skip
    return heads


@dataclass(frozen=True)
class Scores:
    """Per open pair: the disagreement (std of the members' P(A beats B)), the predicted
    margin (mean of their score differences) and P(A beats B) averaged."""

    disagreement: np.ndarray
    margin: np.ndarray
    p_a: np.ndarray


def member_margins(
    heads: np.ndarray,
    x: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    prior_member: bool = False,
) -> np.ndarray:
    """(members, pairs) score differences: each head's o + w.x, and the prior's o alone
    when it is a member."""
    o = np.zeros(len(x)) if offset is None else np.asarray(offset, float)
    margins = o[None, :] + heads @ x.T
    if prior_member:
        margins = np.vstack([margins, o[None, :]])
    return margins


def score_pairs(
    heads: np.ndarray,
    x: np.ndarray,
    *,
    offset: np.ndarray | None = None,
    prior_member: bool = False,
) -> Scores:
    margins = member_margins(heads, x, offset=offset, prior_member=prior_member)
    p = sigmoid(margins)
    return Scores(disagreement=p.std(axis=0), margin=margins.mean(axis=0), p_a=p.mean(axis=0))


def order(strategy: str, scores: Scores, *, seed: int = 0) -> np.ndarray:
    """Positions of the open pairs, the one to label first first (see the module docstring)."""
    n = len(scores.margin)
    position = np.arange(n)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(n)
    # np.lexsort sorts by the last key first; rounding keeps float noise from deciding ties
    spread = np.round(scores.disagreement, 12)
    closeness = np.round(np.abs(scores.margin), 12)
    if strategy == "disagreement":
        return np.lexsort((position, closeness, -spread))
    if strategy == "margin":
        return np.lexsort((position, -spread, closeness))
    raise ValueError(f"unknown strategy {strategy!r}: use {', '.join(STRATEGIES)}")


# --------------------------------------------------------------------------- the backbone


def embed(
    model, tokenizer, conversations: list[list[dict]], *, max_length: int | None = 512,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(embeddings (n, hidden), scores (n,)): one forward pass of the sequence classifier per
    batch gives the model's own score (its single logit) and the mean of the last hidden
    state over the real tokens, scaled to unit length. Texts are cut to max_length as
    training/scoring.py cuts them."""
    import torch

    from training.scoring import fit_ids

    ids, _ = fit_ids(tokenizer, conversations, max_length)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    model.eval()
    vectors, scores = [], []
    # shortest first: less padding per batch; the order is put back below
    by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = [ids[i] for i in by_length[start : start + batch_size]]
            width = max(len(x) for x in chunk)
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
            mask = torch.tensor(
                [[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device
            )
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            hidden = out.hidden_states[-1].float()
            weights = mask.unsqueeze(-1).float()
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            mean = torch.nn.functional.normalize(mean, dim=-1)
            vectors.append(mean.cpu().numpy())
            scores.append(out.logits[:, 0].float().cpu().numpy())
    if not ids:
        hidden_size = int(getattr(model.config, "hidden_size", 0) or 0)
        return np.zeros((0, hidden_size)), np.zeros(0)
    emb, score = np.concatenate(vectors), np.concatenate(scores)
    back = np.empty(len(ids), int)
    back[by_length] = np.arange(len(ids))
    return emb[back].astype(np.float64), score[back].astype(np.float64)
