"""Snapshots: a project's labels frozen into Parquet. Training reads these and nothing else.

A snapshot is a directory under the data root, written once and never changed:

    $RLHF_HOME/snapshots/<project id>-<kind>-<sha256>/
        train.parquet     rows whose prompt is in the train split (Prompt.split)
        heldout.parquet   rows whose prompt is held out (an empty split is a valid, empty file)
        manifest.json     kind, sha256, row counts, stats, filters, columns, margin mapping

The Snapshot row records it (its `path` is relative to the data root; use `snapshot_dir`).

Formats are TRL's conversational ones, so a split loads straight into a trainer with
`datasets.load_dataset("parquet", data_files=...)`:

    sft         messages                    prompt messages + {"role": "assistant", ...}
                                            (the demonstration's text)
    preference  prompt, chosen, rejected,   prompt = the prompt messages; chosen/rejected =
                margin (float)              [{"role": "assistant", "content": ...}]
    kto         prompt, completion,         unpaired: the preferred answer True, the other
                label (bool)                False; both_bad gives two False rows

Gold answers (verifiable rewards): when a prompt of the project has a gold final answer
(Prompt.answer), the sft snapshot also has an `answer` column (the gold answer, null where a
prompt has none) and a `split` column (train / heldout, as the file), and it includes every
prompt with an answer that has no demonstration (unless an origin filter asks for labels of
one origin only; gold items only with include_gold): its `messages` are the prompt alone, no
assistant turn (label_kind "prompt"), so RL and `eval policy --verifiable` read problems
whether or not labelers wrote answers to them (SFT skips those rows). `filters` then records
the project's `answer_pattern` (also whenever the project has one set), and `stats` count
"answers" (rows with a gold answer) and "prompt_only" rows. A project without gold answers
gets exactly the columns, stats and hash it got before answers existed.

Every kind also carries four provenance columns that TRL's dataset preparation ignores
(tests/training/test_snapshots_trl.py runs them through RewardTrainer, DPOTrainer, SFTTrainer and
KTOTrainer): prompt_hash, task_hash (content hashes, not database ids), label_kind
(demonstration, preference or ranking) and origin (labeler or import). A quality-aware
snapshot (see the end) adds `labeler` (string, last) and, when aggregated, `confidence`
(float64, after margin / label); TRL ignores those too (same test file). No column is named
`text`, `labels`, `tools`, `images` or the like, which TRL would read.

Which labels go in:
- Each label is one item; with overlap > 1 every labeler's judgment is its own row
  (agreement counts twice, disagreement shows as both directions).
- Gold tasks (quality checks) are left out unless include_gold=True; the count left out
  is stats["gold_excluded"].
- Preferences: a/b give one pair. tie and both_bad give no pair (counted in stats "ties"
  and "both_bad"); for kto, both_bad gives both answers as False and a tie is left out.
- Rankings (best first) expand into every ordered pair: each answer over each one ranked
  below it (k answers give k(k-1)/2 pairs). For kto, the best answer is True, the worst
  False, and the ones in between are left out (stats "ranking_middle_left_out").
- A pair whose two answers have the same text is left out (stats "identical_pairs").

Margin (preference kind), Llama 2 style, from the labeler's strength:
    1 slightly better -> 1/3,  2 clearly better -> 2/3,  3 much better -> 1.0,
    no strength (imported pairs, ranking pairs) -> 0.0
RewardTrainer subtracts it inside the loss: -log sigmoid(r_chosen - r_rejected - margin).

Identity: the SHA-256 is over a canonical serialisation of the content, never over Parquet
bytes: a header line {format, kind, filters, stats} as canonical JSON, then per split (train,
heldout) a line {"split", "rows"} and one canonical JSON line per row. Rows are sorted by
content (prompt hash, task hash, the row's canonical JSON), never by database ids. The same
labels therefore give the same hash, and creating a snapshot again returns the existing one
(created=False); any label added (a tie included, through the stats) gives a new hash.

Writing is atomic: a temp directory under the snapshots directory, files fsynced, renamed
into place, and only then the Snapshot row is flushed (inside a savepoint; if that fails the
directory we made is removed). A transaction rolled back later by its caller can leave a
complete directory behind with no row: the next create of the same content reuses it.

Quality-aware snapshots (issue 12): which labels are trusted, and how overlap is combined.
    aggregate        "none": every label its own row (above). "majority" / "dawid-skene":
                     the preference labels of one item (task) become one judgment: the most
                     voted choice (majority), or the Dawid–Skene posterior's most probable
                     choice (labeling.quality.competence.fit over the labels that pass the
                     filters below, over all four choices; labels without a labeler, i.e.
                     anonymous imports, count as one pseudo-labeler). The row gets a
                     `confidence` column: the vote share of the choice (majority) or its
                     posterior probability (Dawid–Skene), rounded to 6 decimals. An item whose
                     vote has no single winner (1 a, 1 b; or a posterior tie) is left out and
                     counted in stats "vote_ties"; one whose consensus is tie or both_bad
                     gives no pair (stats "ties" / "both_bad" then count items; kto: both_bad
                     gives both answers False, as per label). margin = the median of the margins
                     of the labels that agree with the consensus (= margin_for(median strength),
                     halfway for an even count; 0.0 when none carries a strength), and with
                     confidence_margin=True that times the confidence. An aggregated row's
                     origin is its labels' origin ("mixed" when both), its labeler null.
                     Refused for sft snapshots (demonstrations are not votes) and for ranking
                     projects (no consensus of rankings is implemented; a ranking label in a
                     pairwise project stays its own row, confidence null).
    min_competence   drop every label of a labeler whose Dawid–Skene competence, as
                     quality_report reports it (the fit of labeling.quality.item_posteriors over
                     every label with a labeler in the project, reviews not applied), is
                     below it; a labeler with fewer than MIN_COMPETENCE_LABELS such labels
                     has no competence worth trusting and is dropped too (stats
                     "competence_unmeasured"). Labels with no labeler (anonymous imports) are
                     kept: use origin="labeler" to drop them.
                     Needs a pairwise or arena project (competence is measured on comparisons).
    exclude_labelers drop these labelers' labels (names; an unknown name is refused).
    exclude_rejected (default True) a label whose review in force (labeling.quality.review.
                     in_force: the latest) is reject leaves the snapshot. A relabel replaces the
                     label's choice and strength (preference) or order (ranking) with the
                     reviewer's, whatever exclude_rejected says; the row keeps the label's
                     labeler (and in aggregation it is that labeler's vote, with the
                     reviewer's judgment). accept changes nothing; a demonstration has
                     nothing to relabel.
A dropped label counts once, under the first reason that applies, in this order: stats
"excluded_labelers", "rejected", "low_competence" / "competence_unmeasured"; "relabeled"
counts relabels applied. "labels", "preferences", "rankings", "demonstrations" then count the
labels that passed. With min_competence, stats "competence" gives each labeler met in the
scope their competence (4 decimals; null: unmeasured) and "competence_dropped" the names
dropped by it; with dawid-skene, stats "dawid_skene" the reliabilities of the fit used.

A snapshot is quality-aware when any of these options differs from its default or some
label in its scope has a review in force. Only then do `filters` record all of them
(aggregate, min_competence, exclude_labelers sorted, exclude_rejected, confidence_margin),
do `stats` carry the counts above, and do the rows carry a `labeler` column (the labeler's
name; null for labels without one and for aggregated rows). A default snapshot of a project
without reviews keeps exactly the columns, filters, stats and hash it had before, so the
snapshots made earlier still de-duplicate.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from labeling import atomic
from labeling.errors import InvalidInput, NotFound, Unavailable
from labeling.hashing import canonical_json
from labeling.models import (
    Choice,
    Demonstration,
    Origin,
    Preference,
    Project,
    Prompt,
    Ranking,
    Response,
    Snapshot,
    SnapshotKind,
    Task,
    TaskCandidate,
    TaskKind,
    User,
)
from labeling.projects import get_project, lock_labels
from labeling.quality import competence
from labeling.quality import data as quality_data
from labeling.settings import load_settings, resolve_under
from labeling.snapshot_quality import (  # the options, validated
    AGGREGATE_STATS,
    COMPETENCE_DECIMALS,
    CONFIDENCE_DECIMALS,
    NO_LABELER,
    QUALITY_STATS,
    quality_options,
)
from labeling.snapshot_quality import QualityOptions as _Quality
from labeling.tempdirs import clean_stale_temp_dirs

FORMAT_VERSION = 1
SPLITS = ("train", "heldout")
FILES = {"train": "train.parquet", "heldout": "heldout.parquet", "manifest": "manifest.json"}

#: strength (1 slightly, 2 clearly, 3 much better) -> margin; no strength -> UNKNOWN_MARGIN.
MARGINS: dict[int, float] = {1: 1 / 3, 2: 2 / 3, 3: 1.0}
UNKNOWN_MARGIN = 0.0

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
_CONVERSATION = pa.list_(_MESSAGE)
_PROVENANCE = [
    ("prompt_hash", pa.string()),
    ("task_hash", pa.string()),
    ("label_kind", pa.string()),
    ("origin", pa.string()),
]
_ANSWER_COLUMNS = [("answer", pa.string()), ("split", pa.string())]
SCHEMAS: dict[SnapshotKind, pa.Schema] = {
    SnapshotKind.sft: pa.schema([("messages", _CONVERSATION), *_PROVENANCE]),
    SnapshotKind.preference: pa.schema(
        [
            ("prompt", _CONVERSATION),
            ("chosen", _CONVERSATION),
            ("rejected", _CONVERSATION),
            ("margin", pa.float64()),
            *_PROVENANCE,
        ]
    ),
    SnapshotKind.kto: pa.schema(
        [
            ("prompt", _CONVERSATION),
            ("completion", _CONVERSATION),
            ("label", pa.bool_()),
            *_PROVENANCE,
        ]
    ),
}


#: the sft layout when some prompt has a gold answer (see the module docstring)
SFT_WITH_ANSWERS = pa.schema([("messages", _CONVERSATION), *_ANSWER_COLUMNS, *_PROVENANCE])


def schema_for(
    kind: SnapshotKind, with_answers: bool, *, labeler: bool = False, confidence: bool = False
) -> pa.Schema:
    """The Parquet layout: answers (sft with gold answers), `confidence` (aggregated
    preference/kto, after margin / label) and `labeler` (quality-aware, last)."""
    schema = SFT_WITH_ANSWERS if with_answers and kind == SnapshotKind.sft else SCHEMAS[kind]
    if confidence and kind != SnapshotKind.sft:
        after = schema.get_field_index("margin" if kind == SnapshotKind.preference else "label")
        schema = schema.insert(after + 1, pa.field("confidence", pa.float64()))
    if labeler:
        schema = schema.append(pa.field("labeler", pa.string()))
    return schema


def margin_for(strength: int | None) -> float:
    return MARGINS.get(strength, UNKNOWN_MARGIN) if strength is not None else UNKNOWN_MARGIN


# --- reading labels ---------------------------------------------------------------------


def _conversation(messages: list[Any]) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _provenance(
    prompt: Prompt, task: Task, label_kind: str, origin: Origin | str, labeler: str | None
) -> dict[str, Any]:
    return {
        "prompt_hash": prompt.content_hash,
        "task_hash": task.content_hash,
        "label_kind": label_kind,
        "origin": origin if origin == "mixed" else Origin(origin).value,
        "labeler": labeler,  # dropped again unless the snapshot is quality-aware
    }


def _scope(query, label_cls, project: Project, include_gold: bool, origin: Origin | None):
    query = query.where(Task.project_id == project.id)
    if not include_gold:
        query = query.where(~Task.is_gold)
    if origin is not None:
        query = query.where(label_cls.origin == origin)
    return query


def _gold_count(session: Session, label_cls, project: Project, origin: Origin | None) -> int:
    query = (
        select(func.count())
        .select_from(label_cls)
        .join(Task, Task.id == label_cls.task_id)
        .where(Task.project_id == project.id, Task.is_gold)
    )
    if origin is not None:
        query = query.where(label_cls.origin == origin)
    return int(session.scalar(query) or 0)


Row = tuple[str, dict[str, Any]]  # (split, row)


def _sft_rows(session, project, include_gold, origin, stats: Counter, quality=None) -> list[Row]:
    quality = quality or _Quality()
    query = _scope(
        select(Demonstration, Task, Prompt, Response, User.name)
        .join(Task, Task.id == Demonstration.task_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(Response, Response.id == Demonstration.response_id)
        .outerjoin(User, User.id == Demonstration.user_id),
        Demonstration,
        project,
        include_gold,
        origin,
    )
    with_answers = _has_answers(session, project)
    rows: list[Row] = []
    demonstrated: set[int] = set()
    for demo, task, prompt, response, name in session.execute(query):
        kept, _relabel = quality.admit("demonstration", demo.id, demo.user_id, name, stats)
        if not kept:  # a relabel of a demonstration carries no text: nothing to replace
            continue
        stats["labels"] += 1
        stats["demonstrations"] += 1
        row = {
            "messages": _conversation(prompt.messages) + _assistant(response.text),
            **_provenance(prompt, task, "demonstration", demo.origin, name),
        }
        if with_answers:
            row.update(answer=prompt.answer, split=prompt.split.value)
            stats["answers"] += prompt.answer is not None
        demonstrated.add(prompt.id)
        rows.append((prompt.split.value, row))
    if not include_gold:
        stats["gold_excluded"] += _gold_count(session, Demonstration, project, origin)
    if with_answers and origin is None:  # a prompt's answer is not a label of either origin
        for prompt, task_hash in _answered_prompts(session, project, include_gold):
            if prompt.id in demonstrated:
                continue
            demonstrated.add(prompt.id)
            stats["answers"] += 1
            stats["prompt_only"] += 1
            row = {
                "messages": _conversation(prompt.messages),
                "answer": prompt.answer,
                "split": prompt.split.value,
                "prompt_hash": prompt.content_hash,
                "task_hash": task_hash or "",
                "label_kind": "prompt",
                "origin": "",
                "labeler": None,
            }
            rows.append((prompt.split.value, row))
    return rows


def _has_answers(session: Session, project: Project) -> bool:
    return (
        session.scalar(
            select(Prompt.id)
            .where(Prompt.project_id == project.id, Prompt.answer.is_not(None))
            .limit(1)
        )
        is not None
    )


def _answered_prompts(session: Session, project: Project, include_gold: bool):
    """(prompt, the hash of its write task or None) for each prompt with a gold answer; a
    prompt served as a gold (quality-check) item is left out unless include_gold."""
    write_task, gold_task = aliased(Task), aliased(Task)
    query = (
        select(Prompt, write_task.content_hash)
        .outerjoin(
            write_task,
            (write_task.prompt_id == Prompt.id) & (write_task.kind == TaskKind.write),
        )
        .where(Prompt.project_id == project.id, Prompt.answer.is_not(None))
        .order_by(Prompt.id)
    )
    if not include_gold:
        query = query.where(~exists().where(gold_task.prompt_id == Prompt.id, gold_task.is_gold))
    return session.execute(query).all()


@dataclass
class _Judgment:
    """A decided preference, a valid ranking or an aggregated item: texts best first."""

    prompt: Prompt
    task: Task
    label_kind: str
    origin: str
    labeler: str | None
    texts: list[str]
    margin: float
    all_bad: bool
    confidence: float | None = None


@dataclass
class _Vote:
    """One preference label after the filters (a relabel applied)."""

    prompt: Prompt
    task: Task
    origin: str
    user_id: int | None
    labeler: str | None
    choice: Choice
    strength: int | None
    text_a: str
    text_b: str


def _judgments(
    session, project, include_gold, origin, stats: Counter, quality=None
) -> list[_Judgment]:
    """Preferences and rankings that pass the quality filters: one judgment per decided
    preference or valid ranking, or per aggregated item. quality None: the defaults, no
    reviews (what a project without any gets)."""
    quality = quality or _Quality()
    response_a, response_b = aliased(Response), aliased(Response)
    prefs = _scope(
        select(Preference, Task, Prompt, response_a.text, response_b.text, User.name)
        .join(Task, Task.id == Preference.task_id)
        .join(Prompt, Prompt.id == Task.prompt_id)
        .join(response_a, response_a.id == Task.response_a_id)
        .join(response_b, response_b.id == Task.response_b_id)
        .outerjoin(User, User.id == Preference.user_id),
        Preference,
        project,
        include_gold,
        origin,
    )
    votes: list[_Vote] = []
    for pref, task, prompt, text_a, text_b, name in session.execute(prefs):
        kept, relabel = quality.admit("preference", pref.id, pref.user_id, name, stats)
        if not kept:
            continue
        choice, strength = Choice(pref.choice), pref.strength
        if relabel is not None and relabel.choice is not None:
            stats["relabeled"] += 1
            choice, strength = Choice(relabel.choice), relabel.strength
            if choice not in (Choice.a, Choice.b):
                strength = None
        stats["labels"] += 1
        stats["preferences"] += 1
        votes.append(
            _Vote(prompt, task, Origin(pref.origin).value, pref.user_id, name, choice, strength,
                  text_a, text_b)
        )  # fmt: skip

    out = _aggregate(votes, quality, stats) if quality.aggregated else _per_label(votes, stats)

    rankings = list(
        session.execute(
            _scope(
                select(Ranking, Task, Prompt, User.name)
                .join(Task, Task.id == Ranking.task_id)
                .join(Prompt, Prompt.id == Task.prompt_id)
                .outerjoin(User, User.id == Ranking.user_id),
                Ranking,
                project,
                include_gold,
                origin,
            )
        )
    )
    candidates: dict[int, dict[int, str]] = {}
    task_ids = {task.id for _, task, _, _ in rankings}
    if task_ids:
        for task_id, response_id, text in session.execute(
            select(TaskCandidate.task_id, Response.id, Response.text)
            .join(Response, Response.id == TaskCandidate.response_id)
            .where(TaskCandidate.task_id.in_(task_ids))
        ):
            candidates.setdefault(task_id, {})[response_id] = text
    for ranking, task, prompt, name in rankings:
        kept, relabel = quality.admit("ranking", ranking.id, ranking.user_id, name, stats)
        if not kept:
            continue
        order_value = ranking.order
        if relabel is not None and relabel.order is not None:
            stats["relabeled"] += 1
            order_value = relabel.order
        stats["labels"] += 1
        stats["rankings"] += 1
        known = candidates.get(task.id, {})
        try:
            order = [int(r) for r in order_value]
        except (TypeError, ValueError):
            order = []
        if len(order) < 2 or len(set(order)) != len(order) or not set(order) <= set(known):
            stats["invalid_rankings"] += 1
            continue
        texts = [known[r] for r in order]
        out.append(
            _Judgment(prompt, task, "ranking", Origin(ranking.origin).value, name, texts,
                      UNKNOWN_MARGIN, False)
        )  # fmt: skip

    if not include_gold:
        stats["gold_excluded"] += _gold_count(session, Preference, project, origin)
        stats["gold_excluded"] += _gold_count(session, Ranking, project, origin)
    return out


def _per_label(votes: list[_Vote], stats: Counter) -> list[_Judgment]:
    out = []
    for v in votes:
        if v.choice == Choice.tie:
            stats["ties"] += 1
            continue
        all_bad = v.choice == Choice.both_bad
        if all_bad:
            stats["both_bad"] += 1
        texts = [v.text_b, v.text_a] if v.choice == Choice.b else [v.text_a, v.text_b]
        margin = 0.0 if all_bad else margin_for(v.strength)
        out.append(
            _Judgment(v.prompt, v.task, "preference", v.origin, v.labeler, texts, margin, all_bad)
        )
    return out


_CHOICES = tuple(Choice(c) for c in quality_data.CHOICES)  # a, b, tie, both_bad: codes 0..3


def _aggregate(votes: list[_Vote], quality: _Quality, stats: Counter) -> list[_Judgment]:
    """One judgment per item (task) from its votes: the majority, or Dawid–Skene's most
    probable choice; see the module docstring."""
    by_task: dict[int, list[_Vote]] = {}
    for v in votes:
        by_task.setdefault(v.task.id, []).append(v)
    # a canonical order (content, not ids): the same labels give the same fit, bit for bit
    items = sorted(by_task.values(), key=lambda vs: vs[0].task.content_hash)
    for vs in items:
        vs.sort(key=lambda v: (v.labeler or "", _CHOICES.index(v.choice), v.strength or 0))
    C = len(_CHOICES)
    if quality.aggregate == "dawid-skene" and items:
        keys = sorted({(v.labeler or "", v.user_id or 0) for vs in items for v in vs})
        index = {key: j for j, key in enumerate(keys)}
        item = np.array([i for i, vs in enumerate(items) for _ in vs], np.int64)
        labeler = np.array([index[(v.labeler or "", v.user_id or 0)] for vs in items for v in vs])
        value = np.array([_CHOICES.index(v.choice) for vs in items for v in vs], np.int64)
        fit = competence.fit(item, labeler, value, len(items), len(keys), C)
        posterior = fit.posterior
        quality.dawid_skene = {
            "iterations": int(fit.iterations),
            "reliability": {
                (name or NO_LABELER): round(float(r), COMPETENCE_DECIMALS)
                for (name, _), r in zip(keys, fit.reliability, strict=True)
            },
        }
    else:
        posterior = np.zeros((len(items), C))
        for i, vs in enumerate(items):
            for v in vs:
                posterior[i, _CHOICES.index(v.choice)] += 1
            posterior[i] /= len(vs)
    out = []
    for i, vs in enumerate(items):
        stats["aggregated_items"] += 1
        p = posterior[i]
        best = int(np.argmax(p))
        if np.sum(p >= p[best] - 1e-9) > 1:  # no single winner: 1 a vs 1 b, or a flat posterior
            stats["vote_ties"] += 1
            continue
        choice = _CHOICES[best]
        if choice == Choice.tie:
            stats["ties"] += 1
            continue
        all_bad = choice == Choice.both_bad
        if all_bad:
            stats["both_bad"] += 1
        confidence = round(float(p[best]), CONFIDENCE_DECIMALS)
        margins = [margin_for(v.strength) for v in vs if v.choice == choice and v.strength]
        margin = float(np.median(margins)) if margins and not all_bad else UNKNOWN_MARGIN
        if quality.confidence_margin:
            margin *= confidence
        first = vs[0]
        texts = [first.text_b, first.text_a] if choice == Choice.b else [first.text_a, first.text_b]
        origins = {v.origin for v in vs}
        origin = origins.pop() if len(origins) == 1 else "mixed"
        out.append(
            _Judgment(first.prompt, first.task, "preference", origin, None, texts, margin,
                      all_bad, confidence)
        )  # fmt: skip
    return out


def _preference_rows(
    session, project, include_gold, origin, stats: Counter, quality=None
) -> list[Row]:
    quality = quality or _Quality()
    rows: list[Row] = []
    for j in _judgments(session, project, include_gold, origin, stats, quality):
        if j.all_bad:
            continue
        conversation = _conversation(j.prompt.messages)
        provenance = _provenance(j.prompt, j.task, j.label_kind, j.origin, j.labeler)
        for i, better in enumerate(j.texts):
            for worse in j.texts[i + 1 :]:
                if better == worse:
                    stats["identical_pairs"] += 1
                    continue
                if j.label_kind == "ranking":
                    stats["ranking_pairs"] += 1
                row = {
                    "prompt": conversation,
                    "chosen": _assistant(better),
                    "rejected": _assistant(worse),
                    "margin": float(j.margin),
                    **provenance,
                }
                if quality.aggregated:
                    row["confidence"] = j.confidence
                rows.append((j.prompt.split.value, row))
    return rows


def _kto_rows(session, project, include_gold, origin, stats: Counter, quality=None) -> list[Row]:
    quality = quality or _Quality()
    rows: list[Row] = []
    for j in _judgments(session, project, include_gold, origin, stats, quality):
        texts = j.texts
        if not j.all_bad and texts[0] == texts[-1]:
            stats["identical_pairs"] += 1
            continue
        if j.all_bad:
            labeled = [(text, False) for text in texts]
        else:
            labeled = [(texts[0], True), (texts[-1], False)]
            stats["ranking_middle_left_out"] += len(texts) - 2
        conversation = _conversation(j.prompt.messages)
        provenance = _provenance(j.prompt, j.task, j.label_kind, j.origin, j.labeler)
        for text, label in labeled:
            row = {
                "prompt": conversation,
                "completion": _assistant(text),
                "label": label,
                **provenance,
            }
            if quality.aggregated:
                row["confidence"] = j.confidence
            rows.append((j.prompt.split.value, row))
    return rows


_BUILDERS = {
    SnapshotKind.sft: _sft_rows,
    SnapshotKind.preference: _preference_rows,
    SnapshotKind.kto: _kto_rows,
}

_STAT_KEYS = {
    SnapshotKind.sft: ("labels", "demonstrations", "gold_excluded"),
    SnapshotKind.preference: (
        "labels",
        "preferences",
        "rankings",
        "ties",
        "both_bad",
        "gold_excluded",
        "ranking_pairs",
        "identical_pairs",
        "invalid_rankings",
    ),
    SnapshotKind.kto: (
        "labels",
        "preferences",
        "rankings",
        "ties",
        "both_bad",
        "gold_excluded",
        "ranking_middle_left_out",
        "identical_pairs",
        "invalid_rankings",
    ),
}


# --- content identity -------------------------------------------------------------------


def _sort_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["prompt_hash"], row["task_hash"], canonical_json(row))


def content_sha256(header: dict[str, Any], splits: dict[str, list[dict[str, Any]]]) -> str:
    """SHA-256 over the canonical serialisation: header line, then each split's rows in order."""
    digest = hashlib.sha256()
    digest.update((canonical_json(header) + "\n").encode("utf-8"))
    for split in SPLITS:
        rows = splits.get(split, [])
        digest.update((canonical_json({"split": split, "rows": len(rows)}) + "\n").encode("utf-8"))
        for row in rows:
            digest.update((canonical_json(row) + "\n").encode("utf-8"))
    return digest.hexdigest()


def _header(kind: SnapshotKind, filters: dict[str, Any], stats: dict[str, int]) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "kind": kind.value, "filters": filters, "stats": stats}


# --- files ------------------------------------------------------------------------------


def snapshot_dir(snapshot: Snapshot) -> Path:
    """The snapshot's directory, resolved under the data root (RLHF_HOME)."""
    return resolve_under(load_settings().home, snapshot.path)


def snapshot_files(snapshot: Snapshot) -> dict[str, Path]:
    """{"train": .../train.parquet, "heldout": .../heldout.parquet, "manifest": .../manifest.json}"""
    root = snapshot_dir(snapshot)
    return {key: root / name for key, name in FILES.items()}


def read_split(snapshot: Snapshot, split: str) -> list[dict[str, Any]]:
    """The rows of one split as plain Python values (the order they were written in)."""
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    path = snapshot_files(snapshot)[split]
    if not path.is_file():
        raise NotFound(f"snapshot {snapshot.id} has no file {path}")
    return pq.read_table(path).to_pylist()


def verify_snapshot(snapshot: Snapshot) -> str:
    """Re-read the Parquet files and check their content against the recorded SHA-256."""
    splits = {split: read_split(snapshot, split) for split in SPLITS}
    header = _header(SnapshotKind(snapshot.kind), dict(snapshot.filters), dict(snapshot.stats))
    actual = content_sha256(header, splits)
    if actual != snapshot.sha256:
        raise InvalidInput(
            f"snapshot {snapshot.id} does not match its hash: files {actual}, "
            f"recorded {snapshot.sha256}"
        )
    return actual


def _write_dir(
    final: Path, kind: SnapshotKind, splits: dict[str, list[dict[str, Any]]], manifest: dict
) -> bool:
    """Write the snapshot directory atomically. False if it already existed (same content)."""
    if final.is_dir():
        return False
    columns = manifest["columns"]
    schema = schema_for(
        kind, "answer" in columns, labeler="labeler" in columns, confidence="confidence" in columns
    )
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    # What a killed writer left here (the UI's snapshot page included; the CLI also cleans
    # at start-up): stale temp directories take space and are never renamed into place.
    clean_stale_temp_dirs(load_settings().home, dirs=("snapshots",))
    tmp = atomic.temp_dir_beside(final)
    try:
        for split in SPLITS:
            table = pa.Table.from_pylist(splits[split], schema=schema)
            pq.write_table(table, tmp / FILES[split])
            os.chmod(tmp / FILES[split], 0o444)
        with open(tmp / FILES["manifest"], "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp / FILES["manifest"], 0o444)
        os.chmod(tmp, 0o755)
        # fsync, rename; False when someone else wrote the same content first
        return atomic.publish(tmp, final, if_exists="keep")
    except BaseException as exc:
        atomic.discard(tmp)
        if isinstance(exc, OSError) and _disk_full(exc):
            raise Unavailable(
                f"disk full writing a snapshot under {parent}: free some space and retry; "
                "nothing was written"
            ) from exc
        raise


def _disk_full(exc: OSError) -> bool:
    # pyarrow re-raises a failed write as its own OSError, keeping the text but not the errno.
    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or (
        "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)
    )


# --- services ---------------------------------------------------------------------------


def _find(session: Session, project_id: int, kind: SnapshotKind, sha256: str) -> Snapshot | None:
    return session.scalar(
        select(Snapshot).where(
            Snapshot.project_id == project_id, Snapshot.kind == kind, Snapshot.sha256 == sha256
        )
    )


def create_snapshot(
    session: Session,
    *,
    project: Project | str | int,
    kind: str | SnapshotKind,
    created_by: int | None = None,
    include_gold: bool = False,
    origin: str | Origin | None = None,
    aggregate: str = "none",
    min_competence: float | None = None,
    exclude_labelers: Sequence[str] | str = (),
    exclude_rejected: bool = True,
    confidence_margin: bool = False,
) -> tuple[Snapshot, bool]:
    """Freeze the project's labels of this kind. Returns (snapshot, created).

    created is False when a snapshot with the same content already exists: that one is
    returned (its files are rewritten if their directory has gone missing).
    project: a Project, or its name or id. origin: only labels from "labeler" or "import"
    (None: both). aggregate ("none", "majority", "dawid-skene"), min_competence (0..1),
    exclude_labelers (names), exclude_rejected and confidence_margin: the quality options
    of the module docstring. Bad input raises InvalidInput before anything is written.
    """
    if not isinstance(project, Project):
        project = get_project(session, project)
    lock_labels(session, project.id)  # an undo waits until this snapshot is saved
    try:
        kind = SnapshotKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown snapshot kind {kind!r}: use one of {', '.join(k.value for k in SnapshotKind)}"
        ) from None
    if origin is not None:
        try:
            origin = Origin(origin)
        except ValueError:
            raise InvalidInput(
                f"unknown origin {origin!r}: use one of {', '.join(o.value for o in Origin)}"
            ) from None
    quality = quality_options(
        session, project, kind, aggregate=aggregate, min_competence=min_competence,
        exclude_labelers=exclude_labelers, exclude_rejected=exclude_rejected,
        confidence_margin=confidence_margin,
    )  # fmt: skip

    counts: Counter = Counter()
    rows = _BUILDERS[kind](session, project, include_gold, origin, counts, quality)
    with_answers = any("answer" in row for _, row in rows)
    stat_keys = _STAT_KEYS[kind] + (("answers", "prompt_only") if with_answers else ())
    stats: dict[str, Any] = {key: int(counts[key]) for key in stat_keys}
    if quality.active:
        keys = QUALITY_STATS + (() if kind == SnapshotKind.sft else AGGREGATE_STATS)
        stats.update({key: int(counts[key]) for key in keys})
        if quality.min_competence is not None:
            stats.update(quality.competence_stats())
        if quality.dawid_skene is not None:
            stats["dawid_skene"] = quality.dawid_skene
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for split, row in rows:
        if not quality.active:
            del row["labeler"]  # the layout (and hash) of a plain snapshot, as before
        splits[split].append(row)
    for split in SPLITS:
        splits[split].sort(key=_sort_key)
    total = sum(len(v) for v in splits.values())
    if total == 0:
        left_out = {k: v for k, v in stats.items() if v and k != "labels"}
        detail = f" (left out: {canonical_json(left_out)})" if left_out else ""
        raise InvalidInput(
            f"no labels to snapshot: project {project.name!r} has no {kind.value} rows{detail}"
        )
    stats["rows"] = total

    filters: dict[str, Any] = {"include_gold": bool(include_gold)}
    if origin is not None:
        filters["origin"] = origin.value
    if with_answers or project.answer_pattern:  # what training reads the final answer with
        filters["answer_pattern"] = project.answer_pattern
    if quality.active:
        filters.update(quality.filters())
    columns = schema_for(
        kind, with_answers, labeler=quality.active, confidence=quality.aggregated
    ).names
    sha = content_sha256(_header(kind, filters, stats), splits)
    split_counts = {split: len(splits[split]) for split in SPLITS}
    name = f"{project.id}-{kind.value}-{sha}"
    snapshots_root = load_settings().snapshots_dir
    final = resolve_under(snapshots_root, name)
    relative = final.relative_to(load_settings().home).as_posix()
    manifest = {
        "format": FORMAT_VERSION,
        "project": project.name,
        "kind": kind.value,
        "sha256": sha,
        "rows": total,
        "splits": split_counts,
        "stats": stats,
        "filters": filters,
        "files": {split: FILES[split] for split in SPLITS},
        "columns": columns,
        "margins": {"1": MARGINS[1], "2": MARGINS[2], "3": MARGINS[3], "none": UNKNOWN_MARGIN}
        if kind == SnapshotKind.preference
        else None,
        "hash": "sha256 over canonical JSON lines: header {format, kind, filters, stats}, "
        'then per split {"split", "rows"} and one line per row',
    }

    existing = _find(session, project.id, kind, sha)
    if existing is not None:
        _write_dir(final, kind, splits, manifest)  # restores the files if they went missing
        return existing, False

    made = _write_dir(final, kind, splits, manifest)
    snapshot = Snapshot(
        project_id=project.id,
        kind=kind,
        filters=filters,
        rows=total,
        splits=split_counts,
        stats=stats,
        sha256=sha,
        path=relative,
        created_by=created_by,
    )
    try:
        with session.begin_nested():
            session.add(snapshot)
    except IntegrityError:
        existing = _find(session, project.id, kind, sha)  # created at the same time elsewhere
        if existing is not None:
            return existing, False
        if made:
            shutil.rmtree(final, ignore_errors=True)
        raise
    except BaseException:
        if made:
            shutil.rmtree(final, ignore_errors=True)
        raise
    return snapshot, True


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    return snapshot


def list_snapshots(session: Session, *, project: Project | None = None) -> list[Snapshot]:
    """Snapshots, newest first; only one project's when `project` is given."""
    query = select(Snapshot).order_by(Snapshot.id.desc())
    if project is not None:
        query = query.where(Snapshot.project_id == project.id)
    return list(session.scalars(query))


def describe(session: Session, snapshot: Snapshot) -> dict[str, Any]:
    """Plain values for the CLI and pages: id, sha256, rows, splits, path (absolute), ..."""
    project_name = session.scalar(select(Project.name).where(Project.id == snapshot.project_id))
    creator = (
        session.scalar(select(User.name).where(User.id == snapshot.created_by))
        if snapshot.created_by is not None
        else None
    )
    return {
        "id": snapshot.id,
        "project": project_name,
        "kind": SnapshotKind(snapshot.kind).value,
        "sha256": snapshot.sha256,
        "rows": snapshot.rows,
        "splits": {split: int(snapshot.splits.get(split, 0)) for split in SPLITS},
        "stats": dict(snapshot.stats),
        "filters": dict(snapshot.filters),
        "path": str(snapshot_dir(snapshot)),
        "created_by": creator,
        "created_at": snapshot.created_at,
    }


def write_rows(
    session: Session,
    *,
    project: Project,
    kind: SnapshotKind,
    rows: list[Row],
    filters: dict[str, Any],
    stats: dict[str, Any],
    created_by: int | None = None,
) -> tuple[Snapshot, bool]:
    """Freeze rows built elsewhere (labeling/probes.py's export: refusals and a model's own
    correct answers) as a snapshot of `kind`, with the same files, hash, de-duplication and
    atomic write as create_snapshot. rows: (split, row) with the kind's columns (the plain
    layout: no answer, labeler or confidence column); `filters` record where they came from
    (their lineage), `stats` what was counted. Returns (snapshot, created)."""
    kind = SnapshotKind(kind)
    schema = SCHEMAS[kind]
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for split, row in rows:
        if split not in splits:
            raise InvalidInput(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if set(row) != set(schema.names):
            raise InvalidInput(f"a {kind.value} row has the columns {', '.join(schema.names)}")
        splits[split].append(dict(row))
    for split in SPLITS:
        splits[split].sort(key=_sort_key)
    total = sum(len(v) for v in splits.values())
    if total == 0:
        raise InvalidInput(f"no rows to snapshot for project {project.name!r}")
    stats = {**stats, "rows": total}
    sha = content_sha256(_header(kind, filters, stats), splits)
    split_counts = {split: len(splits[split]) for split in SPLITS}
    final = resolve_under(load_settings().snapshots_dir, f"{project.id}-{kind.value}-{sha}")
    manifest = {
        "format": FORMAT_VERSION, "project": project.name, "kind": kind.value, "sha256": sha,
        "rows": total, "splits": split_counts, "stats": stats, "filters": filters,
        "files": {split: FILES[split] for split in SPLITS}, "columns": schema.names,
        "margins": None,
        "hash": "sha256 over canonical JSON lines: header {format, kind, filters, stats}, "
        'then per split {"split", "rows"} and one line per row',
    }  # fmt: skip
    existing = _find(session, project.id, kind, sha)
    made = _write_dir(final, kind, splits, manifest)  # restores the files of an existing one
    if existing is not None:
        return existing, False
    snapshot = Snapshot(
        project_id=project.id, kind=kind, filters=filters, rows=total, splits=split_counts,
        stats=stats, sha256=sha, path=final.relative_to(load_settings().home).as_posix(),
        created_by=created_by,
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(snapshot)
    except BaseException:
        if made:
            shutil.rmtree(final, ignore_errors=True)
        raise
    return snapshot, True
