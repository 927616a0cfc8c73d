"""`rlhf queue prioritise`: re-order a pairwise project's open compare tasks so that labelers
are served first the pairs that teach the reward model most (reward/active.py: the maths).

    rlhf queue prioritise --project P --reward C [--strategy disagreement|margin|random]
        [--k 5] [--seed 0] [--top 10] --json
    -> {"project": "P", "strategy": "margin", "reward": "checkpoint:4", "k": 5,
        "prior": true, "members": 6, "labeled_pairs": 40, "open_tasks": 200,
        "reordered": 200, "note": null,
        "top": [{"task_id": 17, "priority": 200, "disagreement": 0.21,
                 "predicted_margin": -0.03, "p_a": 0.49}, ...]}

C is a reward checkpoint (an id or checkpoint:ID: its score is the ensemble's prior and one
member), or `default`: the default reward base, whose score head is untrained, so only its
backbone is used (no prior). With no labeled pairs the members are all C: disagreement is
then 0 everywhere and the order falls back to margin (`note` says so); with neither labels
nor a trained head only `random` can order the queue. `random` loads no model.
The default strategy is margin: on bench/active.py (real HH pairs) it needed no more labels
than random order, while disagreement needed more (it favours pairs whose answers differ
most, outliers of the embedding, rather than the pairs near the decision boundary).

Three steps, so that no transaction stays open while the model runs (a SQLite write lock
would hold every labeler's submit for as long):
    inputs = gather(s, project=..., reward=...)      # checks and reads (one transaction)
    plan = rank(inputs, strategy=..., k=..., seed=...)   # the model and the maths, no session
    result = apply(s, inputs, plan)                  # writes the priorities (another one)
`prioritise(s, ...)` runs all three on one session (the UI's button, tests).
Only open, non-gold compare tasks are written (labeling/queue_priority.py); a task that was
closed meanwhile is left out of the write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labeling import queue_priority
from labeling.errors import InvalidInput
from reward import active

DEFAULT_SPECS = ("default", "minilm")


@dataclass
class Inputs:
    project_id: int
    project: str
    reward: str  # "checkpoint:ID" or "default"
    checkpoint_id: int | None
    max_length: int
    open: list[dict[str, Any]]
    labeled: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prior(self) -> bool:
        """C's score is the prior (and a member) when C is a trained reward checkpoint."""
        return self.checkpoint_id is not None


@dataclass
class Plan:
    strategy: str
    k: int
    seed: int
    order: list[int]  # task ids, first to label first
    scores: dict[int, dict[str, float | None]]
    members: int
    note: str | None = None


def _reward_spec(session, reward: str | int) -> tuple[str, int | None, int]:
    """(spec, checkpoint id, budget) for --reward: a reward checkpoint or `default`."""
    from labeling.registry import training_records
    from reward.evaluate import MAX_LENGTH, checkpoint_max_length

    text = str(reward).strip()
    if text.lower() in DEFAULT_SPECS:
        return "default", None, MAX_LENGTH
    raw = text.removeprefix("checkpoint:")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise InvalidInput(
            f"--reward is a reward checkpoint id (4 or checkpoint:4) or default, not {text!r}"
        )
    checkpoint = training_records.get_checkpoint(session, int(raw))
    kind = getattr(checkpoint.kind, "value", checkpoint.kind)
    if kind != "reward":
        raise InvalidInput(
            f"checkpoint {checkpoint.id} is a {kind} checkpoint, not a reward model: "
            "pick a reward checkpoint (rlhf checkpoints list)"
        )
    return f"checkpoint:{checkpoint.id}", checkpoint.id, checkpoint_max_length(checkpoint)


def gather(session, *, project: str | int, reward: str | int) -> Inputs:
    """Check the project and the reward model, read the open and the labeled pairs."""
    p = queue_priority.pairwise_project(session, project)
    spec, checkpoint_id, budget = _reward_spec(session, reward)
    rows = queue_priority.open_pairs(session, p.id)
    if not rows:
        raise InvalidInput(f"project {p.name!r} has no open compare tasks to order")
    return Inputs(p.id, p.name, spec, checkpoint_id, budget, rows,
                  queue_priority.labeled_pairs(session, p.id))  # fmt: skip


def _conversations(rows: list[dict[str, Any]]) -> list[list[dict]]:
    out = []
    for row in rows:
        for key in ("text_a", "text_b"):
            out.append(list(row["messages"]) + [{"role": "assistant", "content": row[key]}])
    return out


def pair_features(model, tokenizer, rows, *, max_length: int):
    """(x (pairs, hidden), o (pairs,)): embedding differences A - B and C's score
    differences, for each row (messages, text_a, text_b)."""
    emb, score = active.embed(model, tokenizer, _conversations(rows), max_length=max_length)
    return emb[0::2] - emb[1::2], score[0::2] - score[1::2]


def rank(
    inputs: Inputs, *, strategy: str = "margin", k: int = active.DEFAULT_K, seed: int = 0,
    session=None,
) -> Plan:  # fmt: skip
    """Score the open pairs and order them (loads the model unless strategy is random)."""
    import numpy as np

    if strategy not in active.STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r}: use {', '.join(active.STRATEGIES)}")
    if not 1 <= k <= 100:
        raise InvalidInput(f"--k is the number of ensemble heads, from 1 to 100, not {k}")
    ids = [r["task_id"] for r in inputs.open]
    if strategy == "random":
        zeros = np.zeros(len(ids))
        positions = active.order("random", active.Scores(zeros, zeros, zeros), seed=seed)
        empty = {"disagreement": None, "predicted_margin": None, "p_a": None}
        return Plan(strategy, k, seed, [ids[i] for i in positions],
                    {t: dict(empty) for t in ids}, 0)  # fmt: skip
    if not inputs.labeled and not inputs.prior:
        raise InvalidInput(
            "there are no labeled pairs yet and the default reward base has an untrained score "
            "head, so nothing can rank the queue: label some pairs, pick a reward checkpoint, "
            "or use --strategy random"
        )
    from training.models import load_reward_model

    model, tokenizer = load_reward_model(inputs.reward, session=session)
    rows = inputs.labeled + inputs.open
    x, o = pair_features(model, tokenizer, rows, max_length=inputs.max_length)
    x = x / active.feature_scale(x)
    offset = o if inputs.prior else np.zeros(len(rows))
    n = len(inputs.labeled)
    a_wins = np.array([r["a_wins"] for r in inputs.labeled], bool)
    heads = active.fit_ensemble(x[:n], a_wins, k=k, seed=seed, offset=offset[:n])
    scores = active.score_pairs(heads, x[n:], offset=offset[n:], prior_member=inputs.prior)
    note = None
    used = strategy
    if strategy == "disagreement" and n == 0:
        used = "margin"
        note = (
            "no labeled pairs yet: every member is the reward checkpoint alone, so there is "
            "no disagreement to measure and the queue is ordered by margin instead"
        )
    positions = active.order(used, scores, seed=seed)
    members = k + (1 if inputs.prior else 0)
    table = {
        t: {"disagreement": float(scores.disagreement[i]),
            "predicted_margin": float(scores.margin[i]), "p_a": float(scores.p_a[i])}
        for i, t in enumerate(ids)
    }  # fmt: skip
    return Plan(strategy, k, seed, [ids[i] for i in positions], table, members, note)


def apply(session, inputs: Inputs, plan: Plan, *, top: int = 10) -> dict[str, Any]:
    """Write the priorities (open, non-gold compare tasks still open now) and describe it."""
    still = {r["task_id"] for r in queue_priority.open_pairs(session, inputs.project_id)}
    order = [t for t in plan.order if t in still]
    written = queue_priority.set_priorities(session, inputs.project_id, order)
    head = queue_priority.queue_top(session, inputs.project_id, limit=top)
    return {
        "project": inputs.project,
        "strategy": plan.strategy,
        "reward": inputs.reward,
        "k": plan.k,
        "seed": plan.seed,
        "prior": inputs.prior,
        "members": plan.members,
        "labeled_pairs": len(inputs.labeled),
        "open_tasks": len(inputs.open),
        "reordered": written,
        "note": plan.note,
        "top": [
            {
                "task_id": r["task_id"],
                "priority": r["priority"],
                **plan.scores.get(r["task_id"], {}),
                "prompt": _prompt_text(r["messages"]),
                "text_a": r["text_a"],
                "text_b": r["text_b"],
            }
            for r in head
        ],  # fmt: skip
    }


def _prompt_text(messages: list[dict]) -> str:
    """The last user turn (what a labeler reads first)."""
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return users[-1] if users else (messages[-1].get("content") or "" if messages else "")


def prioritise(
    session, *, project: str | int, reward: str | int, strategy: str = "margin",
    k: int = active.DEFAULT_K, seed: int = 0, top: int = 10,
) -> dict[str, Any]:  # fmt: skip
    """gather, rank and apply on one session (the module docstring)."""
    inputs = gather(session, project=project, reward=reward)
    plan = rank(inputs, strategy=strategy, k=k, seed=seed, session=session)
    return apply(session, inputs, plan, top=top)
