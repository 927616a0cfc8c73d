"""Policy evaluation: how does the reward model score a checkpoint's answers to held-out
prompts, and how far has the checkpoint moved from its base?

    rlhf eval policy --checkpoint 9 --reward checkpoint:4 --snapshot 3 [--split heldout]
                     [--base checkpoint:7] [--max_new_tokens 64] --json
    -> {"mean_reward": 0.41, "kl_to_base": 0.07, "n": 8, "mean_completion_tokens": 23.5, ...}

1. prompts: the distinct prompts of the snapshot's split (any kind with prompts, as in
   training/rl.py: preference / kto `prompt`, sft `messages` without the last answer).
2. answers: greedy generation from the policy checkpoint (batched, left padding, chat
   template with the generation prompt), at most max_new_tokens tokens, up to the first EOS
   (training/generate.py's `generate`).
3. mean_reward: the reward model (a reward checkpoint, scored as in reward/evaluate.py) on
   prompt + answer, averaged over the n prompts.
4. kl_to_base: mean over the generated tokens of log p_policy(token) - log p_base(token), on
   the policy's own answers: the usual per-token estimate of KL(policy || base). The answers
   are greedy, not sampled, so this is an estimate of how much more likely the policy finds
   its own answers than the base does, not an exact KL. The base is --base, else the
   checkpoint's parent, else the model it was trained from when that can be loaded
   (`default`, a directory); with none, kl_to_base is null and `base` says why.
Everything is read from the snapshot's Parquet file and registered checkpoints; weights load
through training/models.py (safetensors only).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput
from training.generate import generate


def completion_logprobs(model, sequences, attention_mask, completion_mask, width):
    """Per-token log-probabilities of the completion tokens (0 where masked)."""
    import torch

    model.eval()
    with torch.inference_mode():
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids
        ).logits
        logits = logits[:, width - 1 : -1].float()
        tokens = sequences[:, width:]
        logps = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return logps * completion_mask


def base_spec(checkpoint, base: str | None) -> tuple[str | None, str]:
    """(model spec of the base to compare with, or None; a note on where it came from)."""
    from training import models

    if base:
        return base, "--base"
    if checkpoint.parent_id is not None:
        return f"checkpoint:{checkpoint.parent_id}", "the checkpoint's parent"
    name = checkpoint.base_model or ""
    if name == models.POLICY_NAME:
        return models.DEFAULT, "the default policy the checkpoint was trained from"
    if name and Path(name).is_dir():
        return name, "the directory the checkpoint was trained from"
    return None, f"no base to compare with ({name or 'unknown'}): pass --base"


def evaluate_policy(
    session,
    *,
    checkpoint_id: int,
    reward: str | int,
    snapshot_id: int,
    split: str = "heldout",
    base: str | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> dict[str, Any]:
    """{"mean_reward", "kl_to_base", "n", "mean_completion_tokens", ...} on one split."""
    from labeling.registry import training_records
    from labeling.snapshots import get_snapshot, read_split
    from training.models import load_policy, load_reward_model, resolve_model
    from training.rl import check_reward, prompts_of
    from training.scoring import score

    if max_new_tokens < 1:
        raise InvalidInput("--max_new_tokens must be at least 1")
    snapshot = get_snapshot(session, snapshot_id)
    kind = getattr(snapshot.kind, "value", snapshot.kind)
    prompts = prompts_of(kind, read_split(snapshot, split))
    checkpoint = training_records.get_checkpoint(session, checkpoint_id)
    resolve_model(checkpoint_id, kind="policy", session=session)  # a policy, complete
    check_reward(resolve_model(reward, kind="reward", session=session))
    spec, base_note = base_spec(checkpoint, base)
    if spec is not None:
        resolve_model(spec, kind="policy", session=session)  # fails now, not after generating
    result: dict[str, Any] = {
        "mean_reward": None,
        "kl_to_base": None,
        "n": len(prompts),
        "mean_completion_tokens": None,
        "checkpoint_id": int(checkpoint_id),
        "reward": str(reward),
        "base": spec,
        "base_from": base_note,
        "snapshot_id": snapshot.id,
        "snapshot_sha256": snapshot.sha256,
        "split": split,
        "max_new_tokens": max_new_tokens,
        "decoding": "greedy",
    }
    if not prompts:
        return result
    policy, tokenizer = load_policy(checkpoint_id, session=session)
    batches = generate(
        policy, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    texts = [t for *_, batch_texts in batches for t in batch_texts]
    reward_model, reward_tokenizer = load_reward_model(reward, session=session)
    conversations = [
        p + [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts, strict=True)
    ]
    rewards = score(reward_model, reward_tokenizer, conversations)
    del reward_model
    tokens = sum(float(keep.sum()) for _, _, keep, _, _ in batches)
    result["mean_reward"] = sum(rewards) / len(rewards)
    result["mean_completion_tokens"] = tokens / len(prompts)
    if spec is not None:
        policy_logps = [
            completion_logprobs(policy, seq, mask, keep, width)
            for seq, mask, keep, width, _ in batches
        ]
        del policy
        base_model, _ = load_policy(spec, session=session)
        diff = 0.0
        for (seq, mask, keep, width, _), logps in zip(batches, policy_logps, strict=True):
            diff += float((logps - completion_logprobs(base_model, seq, mask, keep, width)).sum())
        result["kl_to_base"] = diff / tokens
    for key in ("mean_reward", "kl_to_base"):
        value = result[key]
        if value is not None and not math.isfinite(value):
            raise InvalidInput(f"{key} is {value}: the checkpoint or the reward model is broken")
    return result
