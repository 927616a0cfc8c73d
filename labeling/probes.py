"""Hallucination probes: where a checkpoint's knowledge ends, and "I don't know" data from it.

The recipe Meta describes for Llama 3: ask the model questions whose answers the team
trusts, several times each; where it is consistently wrong, teach it to say it does not know.

    rlhf probe --checkpoint 7 --project facts --samples 5 --temperature 0.7 --json
    rlhf probe export --project facts --probe 3 --min-wrong 0.8 --json
    rlhf probe report --project facts --json

Questions are the prompts of an sft project that have a gold answer (Prompt.answer: written
on the Write page, or imported as prompt/answer rows; a file with `question` / `answer`
columns imports with `rlhf import ... --map prompt=question`). A probe (Probe) records who asked
which checkpoint, with which sampling; each sampled answer is a Response authored by the
checkpoint with its sampling_params (as labeling/generations.py stores them, source
"probe") and a ProbeAnswer with its verdict:

    correct     the final answer matches the gold answer (training/verifiers.py: numbers
                within tolerance, normalised text; aliases separated by "|"), or the gold
                answer appears as words in a short answer
    abstained   the answer says it does not know (ABSTAIN_PHRASES, or the project's own
                settings["abstain_phrases"]); checked first
    incorrect   a short answer (at most settings["probe_max_answer_chars"], default 300
                characters) that neither matches nor abstains
    unjudged    a longer answer without a match: left for a person, on the labelers' Judge
                page or `rlhf probe judge` (judge_answer; judged_by then names them)

The judging itself runs in training/probe.py (it reuses training/verifiers.py, which labeling
may not import); this module stores, summarises and exports. Figures:

    accuracy                correct / judged answers (judged: not unjudged)
    abstention_rate         abstained / judged answers
    confidently_wrong_rate  the share of questions (with a judged answer) answered wrong in
                            at least CONFIDENTLY_WRONG (80%) of their judged samples, with no
                            abstention among them
The report gives each a 95% Wilson interval (answers for the first two, questions for the
third; samples of one question are not independent, so the answer intervals are narrower
than the truth when samples agree).

Export: an sft snapshot (labeling/snapshots.write_rows) with one row per question: a refusal
in the project's words (settings["refusals"], else REFUSALS; several phrasings, one chosen
per question by hash) where the model was wrong in at least min_wrong of the judged samples,
its own correct answer (the first correct sample) where it got the question right at least
once; the other questions are left out (counted). The snapshot's filters record the probe.

Service functions take the session first and never commit; no torch here.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labeling import generations
from labeling.errors import InvalidInput, NotFound
from labeling.hashing import sha256_text
from labeling.models import (
    Checkpoint,
    ProbeStatus,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Snapshot,
    SnapshotKind,
    Verdict,
    utcnow,
)
from labeling.models import Probe as ProbeRow
from labeling.models import ProbeAnswer as AnswerRow
from labeling.projects import get_project

SOURCE = "probe"
SPLITS = tuple(generations.SPLITS)  # heldout, train, all
MAX_SAMPLES = generations.MAX_N
MAX_TEMPERATURE = 10.0
CONFIDENTLY_WRONG = 0.8
MAX_ANSWER_CHARS = 300  # longer answers without a match are left unjudged
Z95 = 1.959963984540054
MAX_PHRASES, MAX_PHRASE_CHARS = 50, 500
_PUNCTUATION = re.compile(r"[^\w\s']")

#: What counts as "I don't know" (lower case; apostrophes and spaces normalised first).
ABSTAIN_PHRASES = (
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "i'm not certain",
    "i am not certain",
    "i cannot answer",
    "i can't answer",
    "i'm unable to answer",
    "i am unable to answer",
    "i don't have enough information",
    "i do not have enough information",
    "i have no idea",
    "not sure",
)

#: Refusals the export writes when the project has none of its own (settings["refusals"]).
REFUSALS = (
    "I'm not sure. I don't know the answer to that.",
    "I don't know the answer to this question.",
    "I'm not certain, so I'd rather not guess.",
    "I don't have reliable information about that, so I can't answer.",
)


# --- judging helpers (pure text) --------------------------------------------------------


def _fold(text: str) -> str:
    """Lower case, curly apostrophes straight, spaces folded: what phrases are matched on."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return " ".join(text.split())


def _words(text: str) -> str:
    return " ".join(_PUNCTUATION.sub(" ", _fold(text)).split())


def is_abstention(text: str, phrases: Sequence[str] = ABSTAIN_PHRASES) -> bool:
    """Whether `text` says it does not know: one of `phrases` occurs in it (whole words)."""
    folded = _words(text)
    for phrase in phrases:
        wanted = _words(phrase)
        if wanted and re.search(rf"(?<![\w']){re.escape(wanted)}(?![\w'])", folded):
            return True
    return False


def _check_phrases(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"{what} must be a list of texts")
    out = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if len(out) != len(values):
        raise InvalidInput(f"every one of the {what} must be non-empty text")
    if not out:
        raise InvalidInput(f"give at least one of the {what}")
    if len(out) > MAX_PHRASES:
        raise InvalidInput(f"at most {MAX_PHRASES} {what}")
    if any(len(v) > MAX_PHRASE_CHARS or "\x00" in v for v in out):
        raise InvalidInput(f"each of the {what} is at most {MAX_PHRASE_CHARS} characters")
    return out


@dataclass(frozen=True)
class JudgeSettings:
    """How a project's probe answers are judged (from Project.settings, with defaults)."""

    abstain_phrases: tuple[str, ...]
    max_answer_chars: int
    answer_pattern: str | None


def judge_settings(project: Project) -> JudgeSettings:
    conf = project.settings or {}
    phrases = conf.get("abstain_phrases") or ABSTAIN_PHRASES
    return JudgeSettings(
        abstain_phrases=tuple(phrases),
        max_answer_chars=int(conf.get("probe_max_answer_chars") or MAX_ANSWER_CHARS),
        answer_pattern=project.answer_pattern,
    )


def refusals(project: Project) -> list[str]:
    """The project's refusal phrasings (settings["refusals"]), else REFUSALS."""
    return list((project.settings or {}).get("refusals") or REFUSALS)


def configure(
    session: Session,
    project: str | int,
    *,
    abstain_phrases: Sequence[str] | None = None,
    refusal_texts: Sequence[str] | None = None,
    max_answer_chars: int | None = None,
) -> dict[str, Any]:
    """Set the project's probe settings (those given); returns them all, defaults filled."""
    row = get_project(session, project)
    conf = dict(row.settings or {})
    if abstain_phrases is not None:
        conf["abstain_phrases"] = _check_phrases(abstain_phrases, "abstain phrases")
    if refusal_texts is not None:
        conf["refusals"] = _check_phrases(refusal_texts, "refusals")
    if max_answer_chars is not None:
        if not 1 <= int(max_answer_chars) <= 100_000:
            raise InvalidInput("max_answer_chars must be from 1 to 100000")
        conf["probe_max_answer_chars"] = int(max_answer_chars)
    row.settings = conf
    session.flush()
    judge = judge_settings(row)
    return {
        "project": row.name,
        "abstain_phrases": list(judge.abstain_phrases),
        "refusals": refusals(row),
        "max_answer_chars": judge.max_answer_chars,
    }


# --- probes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    prompt_id: int
    messages: list[dict[str, Any]]
    answer: str


def _questions_query(project_id: int, split: str):
    return (
        select(Prompt.id, Prompt.messages, Prompt.answer)
        .where(
            Prompt.project_id == project_id,
            Prompt.split.in_(generations.SPLITS[split]),
            Prompt.answer.is_not(None),
        )
        .order_by(Prompt.id)
    )


def _probe_project(session: Session, project: str | int | Project) -> Project:
    row = project if isinstance(project, Project) else get_project(session, project)
    if row.kind != ProjectKind.sft:
        raise InvalidInput(
            f"project {row.name!r} is a {ProjectKind(row.kind).value} project: probing asks "
            "the questions of an sft project with gold answers"
        )
    return row


def create_probe(
    session: Session,
    *,
    project: str | int,
    checkpoint_id: int,
    samples: int = 5,
    temperature: float = 0.7,
    max_new_tokens: int = 64,
    split: str = "heldout",
    top_p: float = 1.0,
    seed: int = 0,
    created_by: int | None = None,
) -> tuple[ProbeRow, list[Question]]:
    """Check the request and record a running probe; returns it with its questions (the
    prompts of `split` with a gold answer, oldest first). Bad input raises before anything
    is written: an unknown project or checkpoint, a reward checkpoint, a project that is not
    sft or has no gold answers in the split, samples outside 1..64, temperature < 0."""
    row = _probe_project(session, project)
    checkpoint = generations.policy_checkpoint(session, checkpoint_id)
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}: use {', '.join(SPLITS)}")
    if not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise InvalidInput(f"samples must be from 1 to {MAX_SAMPLES}")
    if not math.isfinite(float(temperature)) or temperature > MAX_TEMPERATURE:
        raise InvalidInput(f"temperature must be from 0 to {MAX_TEMPERATURE:g}")
    key = generations.sampling_key(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    questions = [
        Question(int(pid), list(messages), str(answer))
        for pid, messages, answer in session.execute(_questions_query(row.id, split))
        if str(answer).strip()
    ]
    if not questions:
        where = "" if split == "all" else f" in its {split} split"
        raise InvalidInput(
            f"project {row.name!r} has no questions with a gold answer{where}: write or "
            "import prompts with answers first"
        )
    probe = ProbeRow(
        project_id=row.id,
        checkpoint_id=checkpoint.id,
        samples=samples,
        temperature=key["temperature"],
        max_new_tokens=key["max_new_tokens"],
        split=split,
        status=ProbeStatus.running,
        created_by=created_by,
        summary={"sampling": {**key, "model": checkpoint.name}, "questions": len(questions)},
    )
    session.add(probe)
    session.flush()
    return probe, questions


def get_probe(session: Session, probe_id: int, *, project: Project | None = None) -> ProbeRow:
    probe = session.get(ProbeRow, probe_id)
    if probe is None or (project is not None and probe.project_id != project.id):
        where = f" in project {project.name!r}" if project is not None else ""
        raise NotFound(f"no probe with id {probe_id}{where}")
    return probe


def record_answers(
    session: Session, *, probe_id: int, answers: Sequence[tuple[int, int, int, str]]
) -> int:
    """Store judged answers (prompt_id, sample index, response id, verdict) of a probe."""
    probe = get_probe(session, probe_id)
    if ProbeStatus(probe.status) != ProbeStatus.running:
        raise InvalidInput(f"probe {probe_id} is {ProbeStatus(probe.status).value}")
    rows = []
    for prompt_id, sample, response_id, verdict in answers:
        try:
            verdict = Verdict(verdict)
        except ValueError:
            raise InvalidInput(f"unknown verdict {verdict!r}") from None
        if not 0 <= int(sample) < probe.samples:
            raise InvalidInput(f"sample index {sample} outside 0..{probe.samples - 1}")
        rows.append(
            AnswerRow(
                probe_id=probe.id,
                prompt_id=int(prompt_id),
                response_id=int(response_id),
                sample_index=int(sample),
                verdict=verdict,
            )
        )
    session.add_all(rows)
    session.flush()
    return len(rows)


def finish_probe(session: Session, probe_id: int, *, error: str | None = None) -> ProbeRow:
    """Mark the probe finished (its summary: the results' totals) or failed (with `error`)."""
    probe = get_probe(session, probe_id)
    summary = dict(probe.summary or {})
    if error is not None:
        probe.status = ProbeStatus.failed
        summary["error"] = str(error)[:2000]
    else:
        probe.status = ProbeStatus.finished
        summary.update(_totals(_per_question(session, probe)))
    probe.summary = summary
    probe.finished_at = utcnow()
    session.flush()
    return probe


# --- figures ----------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% Wilson score interval of successes / n; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return round(low, 6), round(high, 6)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _question_text(messages: list[dict[str, Any]]) -> str:
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1] if users else "")


def _per_question(
    session: Session, probe: ProbeRow, *, with_texts: bool = False
) -> list[dict[str, Any]]:
    """One entry per question the probe answered, by prompt id."""
    query = (
        select(
            AnswerRow.prompt_id,
            AnswerRow.sample_index,
            AnswerRow.verdict,
            Prompt.messages,
            Prompt.answer,
            Prompt.split,
            Prompt.content_hash,
            Response.text,
        )
        .join(Prompt, Prompt.id == AnswerRow.prompt_id)
        .join(Response, Response.id == AnswerRow.response_id)
        .where(AnswerRow.probe_id == probe.id)
        .order_by(AnswerRow.prompt_id, AnswerRow.sample_index)
    )
    out: dict[int, dict[str, Any]] = {}
    for prompt_id, sample, verdict, messages, answer, split, content_hash, text in session.execute(
        query
    ):
        entry = out.get(prompt_id)
        if entry is None:
            entry = out[prompt_id] = {
                "prompt_id": int(prompt_id),
                "question": _question_text(messages),
                "answer": answer,
                "split": getattr(split, "value", split),
                "prompt_hash": content_hash,
                "messages": list(messages),
                "samples": 0,
                **{v.value: 0 for v in Verdict},
                "answers": [],
            }
        entry["samples"] += 1
        entry[Verdict(verdict).value] += 1
        entry["answers"].append(
            {"sample": int(sample), "verdict": Verdict(verdict).value, "text": text}
        )
    rows = []
    for entry in out.values():
        judged = entry["samples"] - entry["unjudged"]
        entry["accuracy"] = _share(entry["correct"], judged)
        entry["abstention_rate"] = _share(entry["abstained"], judged)
        entry["wrong_rate"] = _share(entry["incorrect"], judged)
        entry["confidently_wrong"] = bool(
            judged
            and entry["abstained"] == 0
            and entry["incorrect"] >= CONFIDENTLY_WRONG * judged - 1e-9
        )
        if not with_texts:
            for key in ("answers", "messages", "prompt_hash"):
                entry.pop(key)
        rows.append(entry)
    return rows


def _totals(per_question: list[dict[str, Any]]) -> dict[str, Any]:
    answers = sum(q["samples"] for q in per_question)
    counts = {v.value: sum(q[v.value] for q in per_question) for v in Verdict}
    judged = answers - counts["unjudged"]
    judged_questions = [q for q in per_question if q["samples"] > q["unjudged"]]
    wrong = sum(q["confidently_wrong"] for q in judged_questions)
    return {
        "questions": len(per_question),
        "answers": answers,
        "judged": judged,
        **counts,
        "accuracy": _share(counts["correct"], judged),
        "abstention_rate": _share(counts["abstained"], judged),
        "confidently_wrong": wrong,
        "confidently_wrong_rate": _share(wrong, len(judged_questions)),
    }


def _describe(session: Session, probe: ProbeRow) -> dict[str, Any]:
    checkpoint = session.get(Checkpoint, probe.checkpoint_id)
    return {
        "probe_id": probe.id,
        "checkpoint_id": probe.checkpoint_id,
        "checkpoint": checkpoint.name if checkpoint is not None else None,
        "samples": probe.samples,
        "temperature": probe.temperature,
        "max_new_tokens": probe.max_new_tokens,
        "split": probe.split,
        "status": ProbeStatus(probe.status).value,
        "created_at": probe.created_at,
        "finished_at": probe.finished_at,
        "error": (probe.summary or {}).get("error"),
    }


def probe_results(
    session: Session, probe_id: int, *, project: str | int | None = None, texts: bool = False
) -> dict[str, Any]:
    """{"probe_id", ..., "questions", "accuracy", "abstention_rate", "confidently_wrong_rate",
    "per_question": [...]}; with `texts`, each question also lists its answers."""
    row = get_project(session, project) if project is not None else None
    probe = get_probe(session, probe_id, project=row)
    per_question = _per_question(session, probe, with_texts=texts)
    if texts:
        for q in per_question:
            q.pop("messages")
            q.pop("prompt_hash")
    return {**_describe(session, probe), **_totals(per_question), "per_question": per_question}


def list_probes(session: Session, project: str | int) -> list[dict[str, Any]]:
    """The project's probes, newest first (without per-question results)."""
    row = get_project(session, project)
    probes = session.scalars(
        select(ProbeRow).where(ProbeRow.project_id == row.id).order_by(ProbeRow.id.desc())
    )
    out = []
    for probe in probes:
        summary = probe.summary or {}
        out.append(
            {
                **_describe(session, probe),
                **{
                    k: summary.get(k)
                    for k in ("questions", "accuracy", "abstention_rate", "confidently_wrong_rate")
                },
            }
        )
    return out


def report(session: Session, project: str | int, *, split: str = "heldout") -> dict[str, Any]:
    """Per checkpoint probed: its latest finished probe's figures on the questions of
    `split` (heldout, train or all), with 95% Wilson intervals; checkpoints oldest first."""
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}: use {', '.join(SPLITS)}")
    row = get_project(session, project)
    latest = session.execute(
        select(ProbeRow.checkpoint_id, func.max(ProbeRow.id))
        .where(ProbeRow.project_id == row.id, ProbeRow.status == ProbeStatus.finished)
        .group_by(ProbeRow.checkpoint_id)
        .order_by(ProbeRow.checkpoint_id)
    ).all()
    wanted = set(generations.SPLITS[split])
    rows = []
    for _checkpoint_id, probe_id in latest:
        probe = session.get(ProbeRow, probe_id)
        per_question = [
            q for q in _per_question(session, probe) if q["split"] in {s.value for s in wanted}
        ]
        if not per_question:
            continue
        totals = _totals(per_question)
        judged_questions = sum(1 for q in per_question if q["samples"] > q["unjudged"])
        rows.append(
            {
                **_describe(session, probe),
                **totals,
                "accuracy_ci": wilson(totals["correct"], totals["judged"]),
                "abstention_rate_ci": wilson(totals["abstained"], totals["judged"]),
                "confidently_wrong_rate_ci": wilson(totals["confidently_wrong"], judged_questions),
            }
        )
    return {"project": row.name, "split": split, "checkpoints": rows}


# --- judging by people ------------------------------------------------------------------

#: What a person may say of an answer (not "unjudged": that is the absence of a verdict).
HUMAN_VERDICTS = (Verdict.correct, Verdict.incorrect, Verdict.abstained)
MAX_UNJUDGED_LIST = 1000


def _unjudged_query(project: Project, probe_id: int | None):
    query = (
        select(AnswerRow.id, AnswerRow.probe_id, Prompt.messages, Prompt.answer, Response.text)
        .join(ProbeRow, ProbeRow.id == AnswerRow.probe_id)
        .join(Prompt, Prompt.id == AnswerRow.prompt_id)
        .join(Response, Response.id == AnswerRow.response_id)
        .where(ProbeRow.project_id == project.id, AnswerRow.verdict == Verdict.unjudged)
        .where(ProbeRow.status == ProbeStatus.finished)
    )
    return query if probe_id is None else query.where(AnswerRow.probe_id == probe_id)


def projects_to_judge(session: Session) -> list[tuple[str, int]]:
    """(project name, answers waiting for a person) for every project that has some."""
    rows = session.execute(
        select(Project.name, func.count(AnswerRow.id))
        .join(ProbeRow, ProbeRow.project_id == Project.id)
        .join(AnswerRow, AnswerRow.probe_id == ProbeRow.id)
        .where(AnswerRow.verdict == Verdict.unjudged, ProbeRow.status == ProbeStatus.finished)
        .group_by(Project.name)
        .order_by(Project.name)
    )
    return [(name, int(n)) for name, n in rows]


def unjudged_answers(
    session: Session,
    project: str | int,
    *,
    probe_id: int | None = None,
    skip: Sequence[int] = (),
    limit: int = 50,
) -> dict[str, Any]:
    """The answers of the project's finished probes still waiting for a person, oldest first:
    {"project", "remaining", "answers": [{"answer_id", "probe_id", "question", "reference",
    "text"}]}. Which checkpoint wrote an answer is left out: the judge judges it blind."""
    row = _probe_project(session, project)
    if probe_id is not None:
        get_probe(session, probe_id, project=row)
    if not 1 <= int(limit) <= MAX_UNJUDGED_LIST:
        raise InvalidInput(f"limit must be from 1 to {MAX_UNJUDGED_LIST}")
    query = _unjudged_query(row, probe_id)
    remaining = session.scalar(select(func.count()).select_from(query.subquery()))
    if skip:
        query = query.where(AnswerRow.id.not_in([int(i) for i in skip]))
    answers = [
        {"answer_id": int(answer_id), "probe_id": int(pid), "question": _question_text(messages),
         "reference": reference, "text": text}
        for answer_id, pid, messages, reference, text in session.execute(
            query.order_by(AnswerRow.id).limit(int(limit))
        )
    ]  # fmt: skip
    return {"project": row.name, "remaining": int(remaining or 0), "answers": answers}


def judge_answer(
    session: Session,
    answer_id: int,
    verdict: str,
    *,
    judged_by: int,
    project: str | int | None = None,
) -> dict[str, Any]:
    """A person's verdict on an unjudged answer. The update is conditional, so of two people
    judging the same answer at once the second is told it is already judged; a finished
    probe's summary figures follow."""
    try:
        verdict = Verdict(verdict)
    except ValueError:
        verdict = None
    if verdict not in HUMAN_VERDICTS:
        raise InvalidInput(f"a verdict is one of {', '.join(v.value for v in HUMAN_VERDICTS)}")
    answer = session.get(AnswerRow, int(answer_id))
    probe = session.get(ProbeRow, answer.probe_id) if answer is not None else None
    row = get_project(session, project) if project is not None else None
    if probe is None or (row is not None and probe.project_id != row.id):
        raise NotFound(f"no probe answer with id {answer_id}")
    done = session.execute(
        update(AnswerRow)
        .where(AnswerRow.id == answer.id, AnswerRow.verdict == Verdict.unjudged)
        .values(verdict=verdict, judged_by=judged_by)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        session.refresh(answer)
        raise InvalidInput(
            f"answer {answer_id} is already judged ({Verdict(answer.verdict).value})"
        )
    session.expire(answer)
    if ProbeStatus(probe.status) == ProbeStatus.finished:
        probe.summary = {**(probe.summary or {}), **_totals(_per_question(session, probe))}
    session.flush()
    return {"answer_id": answer.id, "probe_id": probe.id, "verdict": verdict.value}


# --- export -----------------------------------------------------------------------------


def pick_refusal(prompt_hash: str, phrasings: Sequence[str]) -> str:
    """One of `phrasings`, chosen by the question's content hash (the same every time)."""
    digest = hashlib.sha256(prompt_hash.encode("utf-8")).digest()
    return phrasings[int.from_bytes(digest[:8], "big") % len(phrasings)]


def export_probe(
    session: Session,
    *,
    project: str | int,
    probe_id: int,
    min_wrong: float = CONFIDENTLY_WRONG,
    refusal_texts: Sequence[str] | None = None,
    created_by: int | None = None,
) -> tuple[Snapshot, bool, dict[str, Any]]:
    """An sft snapshot from a finished probe (see the module docstring); returns (snapshot,
    created, counts). refusal_texts: phrasings to use instead of the project's."""
    from labeling import snapshots

    row = _probe_project(session, project)
    probe = get_probe(session, probe_id, project=row)
    if ProbeStatus(probe.status) != ProbeStatus.finished:
        raise InvalidInput(
            f"probe {probe_id} is {ProbeStatus(probe.status).value}: only a finished probe "
            "can be exported"
        )
    try:
        min_wrong = float(min_wrong)
    except (TypeError, ValueError):
        raise InvalidInput("min_wrong must be a number from 0 to 1") from None
    if not 0 < min_wrong <= 1:
        raise InvalidInput("min_wrong must be above 0 and at most 1")
    phrasings = _check_phrases(list(refusal_texts), "refusals") if refusal_texts else refusals(row)
    counts = {"refusals": 0, "correct_answers": 0, "left_out": 0, "unjudged_only": 0}
    rows: list[tuple[str, dict[str, Any]]] = []
    for q in _per_question(session, probe, with_texts=True):
        judged = q["samples"] - q["unjudged"]
        if not judged:
            counts["unjudged_only"] += 1
            continue
        if q["incorrect"] / judged >= min_wrong - 1e-9:
            text, kind = pick_refusal(q["prompt_hash"], phrasings), "refusal"
            counts["refusals"] += 1
        elif q["correct"]:
            text = next(a["text"] for a in q["answers"] if a["verdict"] == "correct")
            kind = "probe_answer"
            counts["correct_answers"] += 1
        else:
            counts["left_out"] += 1
            continue
        split = "heldout" if q["split"] == "heldout" else "train"
        rows.append(
            (
                split,
                {
                    "messages": [
                        {"role": str(m["role"]), "content": str(m["content"])}
                        for m in q["messages"]
                    ]
                    + [{"role": "assistant", "content": text}],
                    "prompt_hash": q["prompt_hash"],
                    "task_hash": sha256_text(text),
                    "label_kind": kind,
                    "origin": SOURCE,
                },
            )
        )
    if not rows:
        raise InvalidInput(
            f"probe {probe_id} gives no rows: no question was wrong in at least "
            f"{min_wrong:.0%} of its samples or answered correctly"
        )
    filters = {
        "probe_id": probe.id,
        "checkpoint_id": probe.checkpoint_id,
        "min_wrong": min_wrong,
        "refusals": list(phrasings),
    }
    snapshot, created = snapshots.write_rows(
        session,
        project=row,
        kind=SnapshotKind.sft,
        rows=rows,
        filters=filters,
        stats={**counts, "labels": len(rows)},
        created_by=created_by,
    )
    return snapshot, created, counts
