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

Verifiable mode (no reward model): accuracy against the gold answers of an sft snapshot.

    rlhf eval policy --checkpoint 9 --snapshot 3 --verifiable [--samples 4] [--temperature 0.8]
                     [--split heldout] [--max_new_tokens 64] [--answer_pattern R] --json
    -> {"accuracy": 0.62, "ci_low": 0.52, "ci_high": 0.71, "n": 100, "pass_at": {"1": 0.62,
        "2": 0.70, "4": 0.75}, "no_answer": 3, ...}

The problems are the split's distinct prompts with a gold answer (training/data.py
verifiable_problems; prompts without one are counted in `without_answer`). Each gets
`samples` answers from training/generate.py (batched; greedy when samples == 1, else sampled
at the temperature with a seed), scored by training/verifiers.py. accuracy = pass@1 (the mean
correctness over samples), pass@k by Chen et al. 2021's unbiased estimator, the 95% Wilson
interval over the n problems, `no_answer`: completions with no final answer to extract.
`evaluate_verifiable(session, ...)` is the same from Python (bench/loop.py).
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


# --- verifiable: accuracy against gold answers --------------------------------------------

DEFAULT_SAMPLING_TEMPERATURE = 0.8  # for samples > 1 when no --temperature is given
EXAMPLES = 5  # completions shown in the result, to see what the model writes


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (successes may be fractional: the mean
    correctness over samples times n). (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, successes / n))
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if p == 0 else low), (1.0 if p == 1 else high)  # exact at the ends


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. 2021's unbiased estimator of pass@k from n samples of which c are correct:
    1 - C(n - c, k) / C(n, k)."""
    if k > n:
        raise InvalidInput(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _ks(samples: int) -> list[int]:
    """The k reported for pass@k: 1, 2, 4, ... up to samples, and samples itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return [*ks, samples]


def score_verifiable(
    completions: list[list[str]], answers: list[str], *, pattern: str | None = None
) -> dict[str, Any]:
    """Accuracy of k completions per problem against its gold answer: {"accuracy" (pass@1, the
    mean correctness over samples), "ci_low", "ci_high" (95% Wilson on the n problems), "n",
    "samples", "pass_at" {k: pass@k}, "pass_at_k" (k = samples) with "pass_at_k_ci_low/high",
    "correct" (per problem), "no_answer" (completions without an extractable final answer)}.
    No model: the scoring of evaluate_verifiable, on given completions."""
    from training.verifiers import correctness

    if len(completions) != len(answers):
        raise InvalidInput("one list of completions per problem")
    samples = len(completions[0]) if completions else 1
    if any(len(c) != samples for c in completions):
        raise InvalidInput("every problem needs the same number of completions")
    correct, no_answer = [], 0
    for texts, gold in zip(completions, answers, strict=True):
        judged = correctness(texts, [gold] * len(texts), pattern=pattern)
        correct.append(sum(ok for _, ok in judged))
        no_answer += sum(predicted is None for predicted, _ in judged)
    n = len(answers)
    accuracy = sum(c / samples for c in correct) / n if n else None
    low, high = wilson_interval(sum(c / samples for c in correct), n)
    pass_at = {
        str(k): (sum(pass_at_k(samples, c, k) for c in correct) / n if n else None)
        for k in _ks(samples)
    }
    top = pass_at[str(samples)]
    top_low, top_high = wilson_interval((top or 0.0) * n, n)
    return {
        "accuracy": accuracy,
        "ci_low": low if n else None,
        "ci_high": high if n else None,
        "n": n,
        "samples": samples,
        "pass_at": pass_at,
        "pass_at_k": top,
        "pass_at_k_ci_low": top_low if n else None,
        "pass_at_k_ci_high": top_high if n else None,
        "correct": correct,
        "no_answer": no_answer,
        "completions": n * samples,
    }


def verifiable_plan(
    session,
    *,
    checkpoint_id: int,
    snapshot_id: int,
    split: str = "heldout",
    samples: int = 1,
    temperature: float | None = None,
    answer_pattern: str | None = None,
) -> dict[str, Any]:
    """What evaluate_verifiable needs from the database, read and checked in one short
    transaction (the generation after it holds no lock): problems, pattern, model path."""
    from labeling.projects import check_answer_pattern
    from labeling.snapshots import get_snapshot, read_split
    from training.data import verifiable_problems
    from training.models import resolve_model

    if not 1 <= samples <= 1024:
        raise InvalidInput("--samples must be between 1 and 1024")
    if temperature is None:
        temperature = 0.0 if samples == 1 else DEFAULT_SAMPLING_TEMPERATURE
    if not 0.0 <= temperature <= 5.0:
        raise InvalidInput("--temperature must be between 0 and 5")
    if samples > 1 and temperature == 0:
        raise InvalidInput(
            "--samples > 1 with --temperature 0 gives the same greedy answer k times: "
            "sample with a temperature above 0 (default 0.8)"
        )
    snapshot = get_snapshot(session, snapshot_id)
    kind = getattr(snapshot.kind, "value", snapshot.kind)
    if kind != "sft":
        raise InvalidInput(
            f"snapshot {snapshot.id} is a {kind} snapshot: verifiable evaluation reads the gold "
            "answers of an sft snapshot (rlhf snapshot create --kind sft)"
        )
    problems, without = verifiable_problems(read_split(snapshot, split))
    if not problems:
        raise InvalidInput(
            f"snapshot {snapshot.id} has no {split} prompts with a gold answer ({without} "
            "without one): import prompt/answer rows (rlhf import) and take a new snapshot"
        )
    if answer_pattern is None:
        pattern = (snapshot.filters or {}).get("answer_pattern")
        pattern_from = "the snapshot" if pattern else "none (\\boxed{}, else the last number)"
    else:
        pattern = check_answer_pattern(answer_pattern)
        pattern_from = "--answer_pattern"
    resolved = resolve_model(checkpoint_id, kind="policy", session=session)
    if resolved.checkpoint_id is not None and resolved.checkpoint_kind != "policy":
        raise InvalidInput(f"checkpoint {checkpoint_id} is not a policy")
    return {
        "checkpoint_id": int(checkpoint_id),
        "path": resolved.path,
        "snapshot_id": snapshot.id,
        "snapshot_sha256": snapshot.sha256,
        "split": split,
        "problems": problems,
        "without_answer": without,
        "samples": samples,
        "temperature": float(temperature),
        "answer_pattern": pattern,
        "answer_pattern_from": pattern_from,
    }


def run_verifiable(
    plan: dict[str, Any],
    *,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int | None = None,
    top_p: float = 1.0,
) -> dict[str, Any]:
    """Generate `samples` answers per problem (batched; greedy at temperature 0, else sampled
    with the seed) and score them (score_verifiable)."""
    from training.generate import device_and_dtype, eos_ids, generate_texts
    from training.models import load_policy
    from training.verifiers import extract_answer

    if max_new_tokens < 1:
        raise InvalidInput("--max_new_tokens must be at least 1")
    problems, samples = plan["problems"], plan["samples"]
    device, dtype = device_and_dtype()
    model, tokenizer = load_policy(plan["path"], dtype=dtype)
    model.to(device)
    prompts = [p["prompt"] for p in problems for _ in range(samples)]
    out = generate_texts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens,
        temperature=plan["temperature"], top_p=top_p, seed=seed, batch_size=batch_size,
    )  # fmt: skip
    eos = eos_ids(model, tokenizer)
    truncated = sum(
        1 for ids in out.token_ids if len(ids) >= max_new_tokens and not (set(ids) & eos)
    )
    grouped = [out.texts[i * samples : (i + 1) * samples] for i in range(len(problems))]
    answers = [p["answer"] for p in problems]
    scored = score_verifiable(grouped, answers, pattern=plan["answer_pattern"])
    examples = [
        {
            "prompt": problems[i]["prompt"][-1]["content"],
            "completion": grouped[i][0],
            "extracted": extract_answer(grouped[i][0], plan["answer_pattern"]),
            "gold": answers[i],
            "correct": bool(scored["correct"][i]),
        }
        for i in range(min(EXAMPLES, len(problems)))
    ]
    result = {
        **scored,
        "checkpoint_id": plan["checkpoint_id"],
        "snapshot_id": plan["snapshot_id"],
        "snapshot_sha256": plan["snapshot_sha256"],
        "split": plan["split"],
        "without_answer": plan["without_answer"],
        "answer_pattern": plan["answer_pattern"],
        "answer_pattern_from": plan["answer_pattern_from"],
        "decoding": "greedy" if plan["temperature"] == 0 else "sampled",
        "temperature": plan["temperature"],
        "top_p": top_p,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "mean_completion_tokens": out.total_tokens / len(prompts),
        "truncated": truncated,
        "seconds": round(out.seconds, 3),
        "examples": examples,
    }
    return result


def evaluate_verifiable(
    session,
    *,
    checkpoint_id: int,
    snapshot_id: int,
    split: str = "heldout",
    samples: int = 1,
    temperature: float | None = None,
    max_new_tokens: int = 64,
    answer_pattern: str | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Held-out accuracy of a policy checkpoint on an sft snapshot's problems with gold answers:
    {"accuracy", "ci_low", "ci_high", "n", "pass_at", "no_answer", ...} (score_verifiable).

    accuracy is pass@1: greedy correctness when samples == 1 (the default), else the mean
    correctness over `samples` sampled answers (temperature default 0.8), with pass@k by
    Chen et al.'s unbiased estimator; the interval is the 95% Wilson interval on the n
    problems. The final answer is read with `answer_pattern`, else the snapshot's
    (filters["answer_pattern"]), else \\boxed{} / the last number (training/verifiers.py).
    No reward model. A benchmark calls this with its own session; `rlhf eval policy
    --verifiable` calls verifiable_plan in a transaction and run_verifiable after it."""
    plan = verifiable_plan(
        session, checkpoint_id=checkpoint_id, snapshot_id=snapshot_id, split=split,
        samples=samples, temperature=temperature, answer_pattern=answer_pattern,
    )  # fmt: skip
    return run_verifiable(plan, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)
