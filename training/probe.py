"""A hallucination probe run: a policy checkpoint answers a project's gold-answer questions
k times each; every answer is stored, judged and summarised (labeling/probes.py).

    rlhf probe --checkpoint 7 --project facts [--samples 5] [--temperature 0.7]
               [--split heldout|train|all] [--max-new-tokens 64] --json
    -> {"probe_id": 3, "questions": 40, "accuracy": 0.41, "abstention_rate": 0.05,
        "confidently_wrong_rate": 0.3, "per_question": [...], ...}

From other code:

    from training.probe import run_probe
    out = run_probe(Session, checkpoint_id=7, project="facts", samples=5, temperature=0.7)

How:
1. labeling.probes.create_probe checks the request (a policy checkpoint, an sft project with
   gold answers in the split, samples 1..64, temperature >= 0) and records a running probe
   in its own short transaction; nothing is written when it refuses.
2. Generation is training/generate.py's generate_texts (sorted by length, left padded,
   OOM-halving, seeded per batch), on CPU at most CPU_ANSWER_BATCH rows per batch, as for
   `rlhf generate`. Greedy (temperature 0): each question is generated once and stored under
   every sample index; sampled: one generation per (question, sample).
3. After each batch, in one transaction: the answers become Responses authored by the
   checkpoint (labeling.generations.store_generated, source "probe", sampling_params with
   the sample index and "truncated") and ProbeAnswers with the automatic verdict (`judge`).
4. The probe is marked finished with its totals, or failed with the error (and the error is
   raised again): the answers of finished batches stay.

`judge` is the automatic judge: abstention first (labeling.probes.is_abstention), then the
final answer against the gold answer and its aliases ("|"-separated) with
training/verifiers.py (numbers within tolerance, normalised text), then, for a text gold
answer, its normalised words inside a short answer; a short answer with no match is
incorrect, a long one (over max_answer_chars) unjudged. No torch at module level.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from labeling import probes
from labeling.kinds import Verdict
from training import verifiers


def aliases(gold: str) -> list[str]:
    """The accepted answers: "Paris|Paris, France" gives both; a "|" that leaves an empty
    part ("|x|", an absolute value) is part of the answer, not a separator."""
    parts = [p.strip() for p in str(gold).split("|")]
    if len(parts) > 1 and all(parts):
        return parts
    return [str(gold).strip()]


def _words_inside(gold: str, text: str) -> bool:
    wanted = verifiers._normalise(gold)  # the verifier's own text normalisation
    if not wanted:
        return False
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", verifiers._normalise(text)) is not None


def judge(
    text: str,
    gold: str,
    *,
    abstain_phrases=probes.ABSTAIN_PHRASES,
    max_answer_chars: int = probes.MAX_ANSWER_CHARS,
    pattern: str | None = None,
) -> Verdict:
    """correct / incorrect / abstained / unjudged for one answer (see the module docstring)."""
    text = text or ""
    if probes.is_abstention(text, abstain_phrases):
        return Verdict.abstained
    predicted = verifiers.extract_answer(text, pattern)
    for alias in aliases(gold):
        if predicted is not None and verifiers.answers_match(predicted, alias):
            return Verdict.correct
        # a numeric gold answer is matched by the number rule alone ("1969" is not in "19690")
        numeric = bool(verifiers._numbers(verifiers.gold_final_answer(alias)))
        if not numeric and len(text) <= max_answer_chars and _words_inside(alias, text):
            return Verdict.correct
    return Verdict.incorrect if len(text) <= max_answer_chars else Verdict.unjudged


def run_probe(
    sessionmaker,
    *,
    checkpoint_id: int,
    project: str,
    samples: int = 5,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    split: str = "heldout",
    seed: int = 0,
    batch_size: int | None = None,
    created_by: int | None = None,
    progress: bool = True,
    generate_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Probe, store, judge; returns labeling.probes.probe_results plus "seconds", "tokens".
    generate_fn: as in training.generate.generate_texts (tests give the model its words)."""
    from labeling import generations
    from labeling.errors import InvalidInput
    from training.generate import CPU_ANSWER_BATCH, device_and_dtype, generate_texts
    from training.models import load_policy, resolve_model

    if batch_size is not None and batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    with sessionmaker.begin() as s:
        probe, questions = probes.create_probe(
            s, project=project, checkpoint_id=checkpoint_id, samples=samples,
            temperature=temperature, max_new_tokens=max_new_tokens, split=split, top_p=top_p,
            seed=seed, created_by=created_by,
        )  # fmt: skip
        resolved = resolve_model(checkpoint_id, kind="policy", session=s)
        checkpoint = generations.policy_checkpoint(s, checkpoint_id)
        params = {
            **generations.sampling_key(
                temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
            ),
            "model": checkpoint.name,
            "base_model": checkpoint.base_model,
            "probe_id": probe.id,
        }
        settings = probes.judge_settings(probes.get_project(s, project))
        probe_id, project_name = probe.id, probes.get_project(s, project).name
    try:
        device, dtype = device_and_dtype()
        model, tokenizer = load_policy(resolved.path, dtype=dtype)
        model.to(device)
        if temperature == 0:
            work = [(q, tuple(range(samples))) for q in questions]
        else:
            work = [(q, (i,)) for q in questions for i in range(samples)]

        def store(indices: list[int], texts: list[str], _tokens: list[int], cut: list[bool]):
            answers, flags, verdicts = [], [], []
            for i, text, was_cut in zip(indices, texts, cut, strict=True):
                question, sample_indices = work[i]
                verdict = judge(
                    text, question.answer, abstain_phrases=settings.abstain_phrases,
                    max_answer_chars=settings.max_answer_chars, pattern=settings.answer_pattern,
                )  # fmt: skip
                for sample in sample_indices:
                    answers.append((question.prompt_id, sample, text))
                    flags.append(was_cut)
                    verdicts.append(verdict)
            with sessionmaker.begin() as s:
                ids = generations.store_generated(
                    s, checkpoint_id=checkpoint_id, answers=answers, sampling_params=params,
                    source=probes.SOURCE, truncated=flags,
                )  # fmt: skip
                probes.record_answers(
                    s, probe_id=probe_id,
                    answers=[(p, k, rid, v) for (p, k, _), rid, v in
                             zip(answers, ids, verdicts, strict=True)],
                )  # fmt: skip

        out = generate_texts(
            model, tokenizer, [q.messages for q, _ in work], max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
            progress=progress, on_batch=store, generate_fn=generate_fn,
            cpu_batch_cap=CPU_ANSWER_BATCH, label=f"probe {project_name}",
            unit="questions" if temperature == 0 or samples == 1 else "answers",
        )  # fmt: skip
    except BaseException as exc:
        with sessionmaker.begin() as s:
            probes.finish_probe(s, probe_id, error=f"{type(exc).__name__}: {exc}")
        raise
    with sessionmaker.begin() as s:
        probes.finish_probe(s, probe_id)
        result = probes.probe_results(s, probe_id)
    result.update(seconds=round(out.seconds, 3), tokens=out.total_tokens, batch_size=out.batch_size)
    return result
