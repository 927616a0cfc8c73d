"""Bulk import of prompts, demonstrations and preference pairs into a project.

    result = import_file(session, project="hh", path="pairs.jsonl")   # the caller commits

Formats (see labeling.import_formats): prompts, messages, prompt-completion, preference
(standard, conversational, implicit prompt), hh-rlhf, candidates, comparison (prompt, a, b,
choice) and alpacafarm (instruction, input, output_1, output_2, preference). A ColumnMap
(`--map prompt=instruction,...`, `--map-values choice:1=a,...`) renames other files' columns
to these. TRL types no project kind can hold (KTO, stepwise, plain text, tool calls, images)
are refused with the reason. What a row becomes depends on the project kind:

    sft       prompts -> write task (to answer); messages / prompt-completion -> write task
              with an imported Demonstration (labels_count 1)
    pairwise  preference / hh-rlhf -> compare task (A = chosen) with an imported Preference
              (choice a); comparison / alpacafarm -> compare task (A = a / output_1) with the
              row's choice (a, b, tie, both_bad), unlabeled where the row has none; with
              unlabeled=True only the task, A/B order by a coin from its hash; candidates
              with exactly 2 responses -> unlabeled compare task
    ranking   candidates -> rank task with k TaskCandidate rows
    any       prompts -> prompts only (answers come later from checkpoints)

Identity is the content hash (labeling.hashing): a prompt, task or imported response that
already exists is reused, so importing a file twice adds nothing the second time.

Gold answers (an `answer` column, any format): stored on the prompt (Prompt.answer). A prompt
that exists without one gets it (counted in `answers_added`, the row itself a duplicate); the
same answer again changes nothing; a different answer than the stored one, or two rows of the
file giving one prompt different answers, is a row error: a gold answer is never replaced
silently.

Labelers' labels (existing annotations from another tool, to audit here): pair rows may carry
`labeler`, `shown_left`, `strength`, `seconds` and `created_at` (labeling.import_formats). A
row with a labeler is that labeler's label on the item (the pair de-duplicated by content as
above, in either order): Preference.user_id is the account of that name, created inactive
(role labeler, no password: it cannot log in; counted in `labelers_created`) when unknown;
left_response_id is the answer shown on the left, time_spent_ms and created_at come from
`seconds` and `created_at`. Several labelers on one item are several labels on one task, whose
overlap is raised to its label count where the labels would exceed it. One label per (item,
labeler): a row whose labeler already has a label on the item (in the database, or an equal
row earlier in the file) is a duplicate whatever its choice, so re-importing adds nothing; two
rows of the file giving one labeler's item different choices (or strengths) are a row error.
Imported labels keep origin "import" (a snapshot's origin filter still tells them from labels
given in the app); label quality (labeling.quality) counts every label with a labeler, so an
imported labeler is audited like one in the app. A row without a labeler is the file's own
label on a new item as before (it may carry the other four fields too), one per item.

All or nothing by default: every row is parsed and checked before anything is written; any
bad row raises ImportFailed (an InvalidInput carrying the summary) and nothing is written.
skip_invalid=True writes the good rows and lists the skipped ones.

Speed: no ORM object per row. Existing hashes are looked up with chunked IN queries, ids
are allocated in bulk (a sequence on PostgreSQL, max(id)+1 under SQLite's write lock) and
rows go in with COPY (PostgreSQL) or executemany on the DBAPI cursor (SQLite), written in
the same representation the ORM's column types would write (labeling/bulk_insert.py).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from json.encoder import encode_basestring as _json_string  # what json.dumps uses for str
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, exists, insert, select, update
from sqlalchemy.orm import Session

from labeling.bulk_insert import (
    DEMO_COLUMNS,
    LABELED_PREF_COLUMNS,
    PREF_COLUMNS,
    PROMPT_COLUMNS,
    RESPONSE_COLUMNS,
    TASK_COLUMNS,
    _Background,
    _PostgresWriter,
    _SQLiteWriter,
)
from labeling.errors import InvalidInput
from labeling.hashing import sha256_text, split_for_hash
from labeling.import_formats import (
    DEFAULT_LIMITS,
    FORMATS,
    LABEL_FIELDS,
    MEANING_COLUMNS,
    REFUSED,
    ROW_KIND,
    ColumnMap,
    Limits,
    Row,
    RowProblem,
    detect_format,
    looks_like,
    no_format_message,
    open_source,
    parse_row,
)
from labeling.models import (
    AuthorKind,
    Choice,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Role,
    Task,
    TaskKind,
    TaskStatus,
    User,
    utcnow,
)
from labeling.projects import get_project

LOOKUP_CHUNK = 5000
MAX_ERRORS_IN_MESSAGE = 20

# Which formats each project kind takes.
ACCEPTS = {
    ProjectKind.sft: ("prompts", "messages", "prompt-completion"),
    ProjectKind.pairwise: (
        "prompts",
        "preference",
        "hh-rlhf",
        "candidates",
        "comparison",
        "alpacafarm",
    ),
    ProjectKind.ranking: ("prompts", "candidates"),
    ProjectKind.arena: ("prompts",),
}


@dataclass
class RowError:
    number: int
    unit: str  # "line" (JSONL, CSV) or "row" (Parquet, datasets, JSON array, Python rows)
    error: str

    def __str__(self) -> str:
        return f"{self.unit} {self.number}: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.number, "where": f"{self.unit} {self.number}", "error": self.error}


@dataclass
class ImportResult:
    project: str
    format: str | None
    rows_read: int = 0
    imported: int = 0
    duplicates: int = 0
    skipped: list[RowError] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    prompts_added: int = 0
    responses_added: int = 0
    tasks_added: int = 0
    labels_added: int = 0
    answers_added: int = 0
    # Accounts made for unknown labelers; None (left out of as_dict) when no row names one
    # (or with unlabeled, which leaves the label columns out).
    labelers_created: int | None = None
    notes: list[str] = field(default_factory=list)
    # Seconds spent reading and checking rows, planning (hashes, look-ups), inserting.
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        out = {
            "project": self.project,
            "format": self.format,
            "ok": self.ok,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "skipped": [e.as_dict() for e in self.skipped],
            "errors": [e.as_dict() for e in self.errors],
            "prompts_added": self.prompts_added,
            "responses_added": self.responses_added,
            "tasks_added": self.tasks_added,
            "labels_added": self.labels_added,
            "answers_added": self.answers_added,
            "notes": list(self.notes),
        }
        if self.labelers_created is not None:
            out["labelers_created"] = self.labelers_created
        return out


class ImportFailed(InvalidInput):
    """Some rows were bad and skip_invalid was off: nothing was written. `.result` says why."""

    def __init__(self, result: ImportResult, reason: str | None = None):
        self.result = result
        errors = result.errors
        lines = [str(e) for e in errors[:MAX_ERRORS_IN_MESSAGE]]
        if len(errors) > MAX_ERRORS_IN_MESSAGE:
            lines.append(f"... and {len(errors) - MAX_ERRORS_IN_MESSAGE} more")
        head = reason or (
            f"{len(errors)} of {result.rows_read} rows are invalid; nothing was imported "
            "(fix them, or pass --skip-invalid to import the other rows)"
        )
        super().__init__("\n  ".join([head, *lines]))


def import_file(
    session: Session,
    *,
    project: Project | str | int,
    path: str | Path,
    format: str = "auto",
    skip_invalid: bool = False,
    unlabeled: bool = False,
    source: str | None = None,
    split: str | None = None,
    mapping: ColumnMap | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ImportResult:
    """Import a JSONL / CSV / Parquet file or a saved `datasets` directory into `project`.

    `source` is stored on new prompts and responses for rows without their own `source`
    (default: the file's name). `split` picks a split of a saved DatasetDict (default train).
    `mapping` renames columns and translates values first; `limits` caps what is read.
    """
    project = _project(session, project)
    _check_format_name(format)
    opened = open_source(path, split=split, limits=limits)
    default_source = source if source is not None else Path(path).name[:200]
    with _no_gc():
        return _import(
            session,
            project,
            opened.rows,
            opened.unit,
            format,
            skip_invalid,
            unlabeled,
            default_source,
            mapping,
        )


def import_rows(
    session: Session,
    *,
    project: Project | str | int,
    rows: Iterable[dict[str, Any]],
    format: str = "auto",
    skip_invalid: bool = False,
    unlabeled: bool = False,
    source: str | None = None,
    mapping: ColumnMap | None = None,
) -> ImportResult:
    """Import rows given as dicts (numbered "row 1", "row 2", ... in errors)."""
    project = _project(session, project)
    _check_format_name(format)
    numbered = (
        (i, row if isinstance(row, dict) else RowProblem("expected an object"))
        for i, row in enumerate(rows, 1)
    )
    with _no_gc():
        return _import(
            session, project, numbered, "row", format, skip_invalid, unlabeled, source, mapping
        )


@contextmanager
def _no_gc() -> Iterator[None]:
    """Bulk loading makes millions of small objects and frees none of them: the cyclic
    collector would scan them again and again (it cost ~40% of an import). Reference
    counting still frees everything as usual; the collector is back on when we return."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _project(session: Session, project: Project | str | int) -> Project:
    return project if isinstance(project, Project) else get_project(session, project)


def _check_format_name(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: use auto or one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- parse and check


def _import(
    session: Session,
    project: Project,
    rows: Iterator[tuple[int, Any]],
    unit: str,
    fmt: str,
    skip_invalid: bool,
    unlabeled: bool,
    default_source: str | None,
    mapping: ColumnMap | None = None,
) -> ImportResult:
    result = ImportResult(project=project.name, format=None if fmt == "auto" else fmt)
    if fmt != "auto":
        _check_kind(project, fmt, unlabeled)
    parsed: list[Row] = []
    errors = result.errors
    rank_k = project.rank_k
    ignored: set[str] = set()  # meaning-carrying columns an explicit --format prompts leaves out
    first = True
    started = time.perf_counter()
    for number, row in rows:
        result.rows_read += 1
        if isinstance(row, RowProblem):
            errors.append(RowError(number, unit, str(row)))
            continue
        if mapping:
            if first and mapping.missing(row):
                raise InvalidInput(
                    f"--map names column {mapping.missing(row)[0]!r}, which the file does not "
                    f"have (its columns: {', '.join(sorted(map(str, row))) or 'none'})"
                )
            try:
                row = mapping.apply(row)
            except RowProblem as exc:
                errors.append(RowError(number, unit, str(exc)))
                continue
        first = False
        if fmt == "auto":
            detected = detect_format(row)
            if detected is None:
                errors.append(RowError(number, unit, no_format_message(row)))
                continue
            if result.format is None:
                _check_kind(project, detected, unlabeled)
                result.format = detected
            elif detected in REFUSED:
                errors.append(RowError(number, unit, REFUSED[detected]))
                continue
            elif detected != result.format and not looks_like(result.format, row):
                errors.append(
                    RowError(
                        number,
                        unit,
                        f"this row is in {detected} format but the rows before it are "
                        f"{result.format}: all rows of a file must share one format",
                    )
                )
                continue
        elif fmt == "prompts":
            ignored.update(k for k in MEANING_COLUMNS if row.get(k) is not None)
        try:
            parsed_row = parse_row(result.format, number, row, default_source)
            if parsed_row.kind == "candidates":
                k = len(parsed_row.texts)
                if project.kind == ProjectKind.pairwise and k != 2:
                    raise RowProblem(f"a pairwise project takes exactly 2 responses, got {k}")
                if project.kind == ProjectKind.ranking and rank_k and k != rank_k:
                    raise RowProblem(f"this ranking project ranks {rank_k} responses, got {k}")
        except RowProblem as exc:
            errors.append(RowError(number, unit, str(exc)))
            continue
        parsed.append(parsed_row)

    result.timings["read"] = time.perf_counter() - started
    if result.rows_read == 0:
        raise InvalidInput("no rows: the file is empty")
    answers = _check_answers(session, project, parsed, unit, errors)
    with_labelers = any(row.labeler is not None for row in parsed)
    if with_labelers and not unlabeled:
        _check_labelers(parsed, unit, errors)
    if errors:
        if not parsed:
            raise ImportFailed(result, f"none of the {result.rows_read} rows can be imported")
        if not skip_invalid:
            raise ImportFailed(result)
        result.skipped, result.errors = errors, []
        bad = {e.number for e in result.skipped}
        parsed = [row for row in parsed if row.number not in bad]
    _write(session, project, parsed, unlabeled, result)
    _store_answers(session, project, answers, result)
    if ROW_KIND[result.format] == "prompt" and project.kind != ProjectKind.sft:
        result.notes.append("prompts only: no tasks created")
    if unlabeled and any(row.has_label_details for row in parsed):
        result.notes.append(
            "--unlabeled: the pairs became tasks without labels; columns "
            f"{', '.join(LABEL_FIELDS)} were left out"
        )
    if ignored:
        result.notes.append(
            "--format prompts: the prompts alone were imported; columns "
            f"{', '.join(sorted(ignored))} were left out"
        )
    return result


def _check_kind(project: Project, fmt: str, unlabeled: bool) -> None:
    if fmt in REFUSED:
        raise InvalidInput(REFUSED[fmt])
    accepted = ACCEPTS[project.kind]
    if fmt not in accepted:
        raise InvalidInput(
            f"{fmt} rows cannot go into {project.kind.value} project {project.name!r}: "
            f"it takes {', '.join(accepted)}"
        )
    if unlabeled and ROW_KIND[fmt] == "sft":
        raise InvalidInput(
            "--unlabeled applies to preference pairs; to import prompts without answers "
            "use the prompts format"
        )


# --------------------------------------------------------------------------- gold answers


def _check_answers(
    session: Session, project: Project, rows: list[Row], unit: str, errors: list[RowError]
) -> dict[str, str]:
    """{prompt hash: gold answer} of the rows that carry one; a row whose answer contradicts
    an earlier row's or the stored one is a row error (appended to `errors`)."""
    answers: dict[str, str] = {}
    first_row: dict[str, int] = {}
    with_answer: list[tuple[Row, str]] = []
    for row in rows:
        if row.answer is None:
            continue
        ph = _prompt_json(row.messages)[0]
        if ph in answers and answers[ph] != row.answer:
            errors.append(
                RowError(
                    row.number,
                    unit,
                    f"'answer' is {row.answer[:40]!r} but {unit} {first_row[ph]} gives the same "
                    f"prompt the answer {answers[ph][:40]!r}",
                )
            )
            continue
        answers.setdefault(ph, row.answer)
        first_row.setdefault(ph, row.number)
        with_answer.append((row, ph))
    if not answers:
        return answers
    stored = dict(
        _lookup(session, Prompt.content_hash, Prompt.answer, set(answers),
                Prompt.project_id == project.id, Prompt.answer.is_not(None))
    )  # fmt: skip
    for row, ph in with_answer:
        if ph in stored and stored[ph] != row.answer:
            errors.append(
                RowError(
                    row.number,
                    unit,
                    f"the prompt already has the gold answer {stored[ph][:40]!r}; this row "
                    f"gives {row.answer[:40]!r} (a stored answer is never replaced)",
                )
            )
            answers.pop(ph, None)
    for ph in stored:
        answers.pop(ph, None)  # the same answer again: nothing to write
    errors.sort(key=lambda e: e.number)
    return answers


def _check_labelers(rows: list[Row], unit: str, errors: list[RowError]) -> None:
    """One label per (item, labeler): a row repeating an earlier row's label is a duplicate
    (skipped when writing), one giving the same labeler's item another choice or strength is
    a row error (appended to `errors`). The item is the prompt and the pair, in either order."""
    first: dict[tuple, tuple[int, tuple]] = {}
    for row in rows:
        if row.labeler is None:
            continue
        rhs = [sha256_text(t) for t in row.texts]
        key = (_prompt_json(row.messages)[0], frozenset(rhs), row.labeler)
        # The judgment in terms of content: the preferred answer's hash, or tie / both_bad.
        choice = row.choice
        judgment = (rhs[0] if choice == "a" else rhs[1] if choice == "b" else choice, row.strength)
        seen = first.setdefault(key, (row.number, judgment))
        if seen[1] != judgment:
            errors.append(
                RowError(
                    row.number,
                    unit,
                    f"'labeler' {row.labeler!r} labeled this pair on {unit} {seen[0]} with a "
                    f"different {'choice' if seen[1][0] != judgment[0] else 'strength'}: "
                    "a labeler gives an item one label",
                )
            )
    errors.sort(key=lambda e: e.number)


def _store_answers(
    session: Session, project: Project, answers: dict[str, str], result: ImportResult
) -> None:
    """Write the gold answers of new prompts and of existing prompts that had none (an UPDATE
    by id after the bulk insert: one code path for both, and the bulk writers stay as they
    are)."""
    if not answers:
        return
    table = Prompt.__table__
    ids = _lookup(session, Prompt.content_hash, Prompt.id, set(answers),
                  Prompt.project_id == project.id, Prompt.answer.is_(None))  # fmt: skip
    params = [{"pid": pid, "gold": answers[ph]} for ph, pid in ids]
    for chunk in _chunks(params):
        session.execute(
            update(table).where(table.c.id == bindparam("pid")).values(answer=bindparam("gold")),
            chunk,
        )
    result.answers_added = len(params)


# --------------------------------------------------------------------------- plan and write


def _write(
    session: Session, project: Project, rows: list[Row], unlabeled: bool, result: ImportResult
) -> None:
    started = time.perf_counter()
    session.flush()
    pid = project.id
    kind = project.kind

    # Hashes of everything the rows hold.
    compare_rows = ("pair", "candidates") if kind == ProjectKind.pairwise else ("pair",)
    compare = TaskKind.compare.value
    hashed = []
    stored_json: dict[str, str] = {}
    for row in rows:
        ph, stored_json[ph] = _prompt_json(row.messages)
        rhs = [sha256_text(t) for t in row.texts]
        order = tuple(range(len(rhs)))
        is_compare = row.kind in compare_rows
        if row.kind == "prompt":
            th = _task_hash(TaskKind.write.value, ph) if kind == ProjectKind.sft else None
        elif row.kind == "sft":
            th = _task_hash(TaskKind.write.value, ph, rhs)
        elif is_compare:
            th = _task_hash(compare, ph, rhs)
            if unlabeled and row.kind == "pair" and int(th[-1], 16) & 1:
                order = (1, 0)  # a coin from the hash: the chosen answer is not always A
                th = _task_hash(compare, ph, rhs[::-1])
        else:
            th = _task_hash(TaskKind.rank.value, ph, rhs)
        hashed.append((row, ph, rhs, th, order, is_compare))

    # Who labeled: labeler names -> user ids, unknown names made inactive accounts.
    user_ids = {} if unlabeled else _labelers(session, rows, result)

    # What exists already (only worth asking when the project has prompts at all).
    # A compare task is the same task with A and B the other way round.
    prompt_ids: dict[str, int] = {}
    existing_tasks: dict[str, int] = {}  # task hash -> id
    response_ids: dict[tuple[str, str], int] = {}
    has_prompts = session.scalar(select(exists().where(Prompt.project_id == pid)))
    if has_prompts:
        prompt_ids = dict(
            _lookup(
                session,
                Prompt.content_hash,
                Prompt.id,
                {h[1] for h in hashed},
                Prompt.project_id == pid,
            )
        )
        wanted = set()
        for _, ph, rhs, th, order, is_compare in hashed:
            if th is not None and ph in prompt_ids:
                wanted.add(th)
                if is_compare:
                    wanted.add(_task_hash(compare, ph, [rhs[i] for i in reversed(order)]))
        existing_tasks = dict(
            _lookup(session, Task.content_hash, Task.id, wanted, Task.project_id == pid)
        )
        hash_of = {v: k for k, v in prompt_ids.items()}
        with_texts = {prompt_ids[h[1]] for h in hashed if h[2] and h[1] in prompt_ids}
        for prompt_id, rid, rh in _imported_responses(session, with_texts):
            response_ids.setdefault((hash_of[prompt_id], rh), rid)

    # Decide row by row what is new.
    new_prompts: dict[str, Row] = {}
    new_responses: dict[tuple[str, str], tuple[str, str | None]] = {}
    # [th, ph, keys, row kind, the row's own imported label (a choice, "demo", a label
    #  tuple or None), the labelers' labels (a list of label tuples, or None)]
    new_tasks: list[list] = []
    seen_tasks: dict = {}  # within the file, a pair in either order is one task
    # labeler rows on tasks that exist: (row, task id, whether the task's A is the row's B)
    on_existing: list[tuple[Row, int, bool]] = []
    for row, ph, rhs, th, order, is_compare in hashed:
        if th is None:
            if ph in prompt_ids or ph in new_prompts:
                result.duplicates += 1
            else:
                new_prompts[ph] = row
                result.imported += 1
            continue
        uid = user_ids[row.labeler] if user_ids and row.labeler is not None else None
        seen_key = (ph, frozenset(rhs)) if is_compare else th
        entry = seen_tasks.get(seen_key)
        if entry is not None:
            if _add_to_new_task(entry, row, rhs, uid, unlabeled):
                result.imported += 1
            else:
                result.duplicates += 1
            continue
        if ph in prompt_ids:
            task_id = existing_tasks.get(th)
            if task_id is None and is_compare:
                task_id = existing_tasks.get(
                    _task_hash(compare, ph, [rhs[i] for i in reversed(order)])
                )
                flipped = True
            else:
                flipped = False
            if task_id is not None:
                if uid is None:
                    result.duplicates += 1
                else:
                    on_existing.append((row, task_id, flipped))
                continue
        if ph not in prompt_ids and ph not in new_prompts:
            new_prompts[ph] = row
        keys = []
        for i in order:
            key = (ph, rhs[i])
            if key not in response_ids and key not in new_responses:
                new_responses[key] = (row.texts[i], row.source)
            keys.append(key)
        if uid is not None:
            label, labels = None, [_label(row, uid, False)]
        elif unlabeled or row.kind in ("prompt", "candidates"):
            label, labels = None, None
        elif row.kind == "sft":
            label, labels = "demo", None
        else:
            label = _label(row, None, False) if row.has_label_details else row.choice
            labels = None
        entry = [th, ph, keys, row.kind, label, labels]
        seen_tasks[seen_key] = entry
        new_tasks.append(entry)
        result.imported += 1
    existing_labels, task_updates = _labels_on_existing(session, on_existing, user_ids, result)

    result.timings["plan"] = time.perf_counter() - started
    if not (new_prompts or new_tasks or existing_labels):
        return
    started = time.perf_counter()
    w = (
        _SQLiteWriter(session)
        if session.bind.dialect.name == "sqlite"
        else _PostgresWriter(session)
    )
    try:
        n_labels = len(existing_labels) + sum(
            (t[4] is not None) + len(t[5] or ()) for t in new_tasks
        )
        label_table = "demonstrations" if kind == ProjectKind.sft else "preferences"
        ids = {
            "prompts": w.ids("prompts", len(new_prompts)),
            "responses": w.ids("responses", len(new_responses)),
            "tasks": w.ids("tasks", len(new_tasks)),
            label_table: w.ids(label_table, n_labels),
        }
        # The database works on one batch in a thread while Python builds the next.
        with _Background(w) as out:
            _build_rows(
                out,
                ids,
                project,
                unlabeled,
                result,
                stored_json,
                prompt_ids,
                response_ids,
                new_prompts,
                new_responses,
                new_tasks,
                existing_labels,
            )
    finally:
        w.close()
    _count_labels(session, task_updates)
    result.timings["insert"] = time.perf_counter() - started


# --------------------------------------------------------------------------- labelers' labels

# A label: (user id or None, choice, strength, left side (0 A, 1 B) or None, ms, created_at),
# its choice and side relative to the task's A and B.
_FLIP = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}


def _label(row: Row, uid: int | None, flipped: bool) -> tuple:
    """The row's label for a task whose A is the row's first text (or, flipped, its second)."""
    left = row.shown_left
    if flipped:
        return (uid, _FLIP[row.choice], row.strength, None if left is None else 1 - left,
                row.ms, row.created_at)  # fmt: skip
    return (uid, row.choice, row.strength, left, row.ms, row.created_at)


def _add_to_new_task(entry: list, row: Row, rhs: list[str], uid: int | None, unlabeled: bool):
    """A further row on a task this import creates: a labeler's label (one per labeler), or
    the file's own imported label if only labelers' rows gave it labels so far. True if the
    row adds a label, False if it is a duplicate."""
    if uid is None and (entry[4] is not None or entry[5] is None or unlabeled):
        return False
    if row.kind != "pair":
        return False
    flipped = rhs[0] != entry[2][0][1]  # entry[2][0]: (prompt hash, the hash of A)
    if uid is None:
        entry[4] = _label(row, None, flipped)
        return True
    labels = entry[5]
    if labels is None:
        entry[5] = [_label(row, uid, flipped)]
        return True
    if any(label[0] == uid for label in labels):
        return False
    labels.append(_label(row, uid, flipped))
    return True


def _labelers(session: Session, rows: list[Row], result: ImportResult) -> dict[str, int]:
    """{labeler name: user id} for the rows' labelers; a name with no account gets one:
    inactive, role labeler, no password (it cannot log in until an admin sets a password and
    activates it). One insert for all of them, counted in `labelers_created`."""
    names = {row.labeler for row in rows if row.labeler is not None}
    if not names:
        return {}
    result.labelers_created = 0
    found = dict(_lookup(session, User.name, User.id, names))
    missing = sorted(names - found.keys())
    if missing:
        now = utcnow()
        session.execute(
            insert(User.__table__),
            [{"name": name, "role": Role.labeler, "password_hash": None, "active": False,
              "created_at": now} for name in missing],
        )  # fmt: skip
        found.update(_lookup(session, User.name, User.id, set(missing)))
        result.labelers_created = len(missing)
    return found


def _labels_on_existing(
    session: Session,
    rows: list[tuple[Row, int, bool]],
    user_ids: dict[str, int],
    result: ImportResult,
) -> tuple[list[tuple], dict[int, int]]:
    """Labelers' rows on tasks that exist already: a label per (task, labeler) that has none
    yet (an existing one makes the row a duplicate, whatever its choice). Returns the labels
    as (task id, user id, choice, strength, left response id, ms, created_at) and
    {task id: labels added}."""
    if not rows:
        return [], {}
    task_ids = {task_id for _, task_id, _ in rows}
    pair: dict[int, tuple[int, int]] = {}
    have: set[tuple[int, int]] = set()
    for chunk in _chunks(sorted(task_ids)):
        pair.update(
            (t, (a, b))
            for t, a, b in session.execute(
                select(Task.id, Task.response_a_id, Task.response_b_id).where(Task.id.in_(chunk))
            )
        )
        have.update(
            (t, u)
            for t, u in session.execute(
                select(Preference.task_id, Preference.user_id).where(
                    Preference.task_id.in_(chunk), Preference.user_id.is_not(None)
                )
            )
        )
    labels: list[tuple] = []
    added: dict[int, int] = {}
    for row, task_id, flipped in rows:
        uid = user_ids[row.labeler]
        if (task_id, uid) in have:
            result.duplicates += 1
            continue
        have.add((task_id, uid))
        _, choice, strength, left, ms, created_at = _label(row, uid, flipped)
        left_id = None if left is None else pair[task_id][left]
        labels.append((task_id, uid, choice, strength, left_id, ms, created_at))
        added[task_id] = added.get(task_id, 0) + 1
        result.imported += 1
    return labels, added


def _count_labels(session: Session, added: dict[int, int]) -> None:
    """Existing tasks that got labelers' labels: labels_count goes up, the overlap is raised
    to it where it would be exceeded (the CHECK `is_gold OR labels_count <= overlap`), and a
    task with all the labels it asks for is done (gold tasks never close). Relative to the
    row's values in the database, one executemany for all tasks."""
    if not added:
        return
    t = Task.__table__
    count = t.c.labels_count + bindparam("n", type_=Integer)
    statement = (
        update(t)
        .where(t.c.id == bindparam("tid"))
        .values(
            labels_count=count,
            overlap=case((and_(~t.c.is_gold, t.c.overlap < count), count), else_=t.c.overlap),
            status=case(
                (and_(~t.c.is_gold, count >= t.c.overlap), TaskStatus.done.value),
                else_=t.c.status,
            ),
        )
    )
    params = [{"tid": task_id, "n": n} for task_id, n in sorted(added.items())]
    for chunk in _chunks(params):
        session.execute(statement, chunk)


BATCH = 25_000


def _build_rows(
    out,
    ids,
    project,
    unlabeled,
    result,
    stored_json,
    prompt_ids,
    response_ids,
    new_prompts,
    new_responses,
    new_tasks,
    existing_labels=(),
) -> None:
    """The rows to insert, in foreign-key order, handed to `out` in batches."""
    pid, overlap, kind = project.id, project.overlap, project.kind
    now = out.timestamp(utcnow())
    dumps = json.dumps

    # Nothing trains on an arena's prompts: they are all held out.
    heldout = 1.0 if project.kind == ProjectKind.arena else project.heldout_fraction
    rows = []
    for new_id, (ph, row) in zip(ids["prompts"], new_prompts.items(), strict=True):
        prompt_ids[ph] = new_id
        rows.append(
            (
                new_id,
                pid,
                stored_json[ph],
                ph,
                split_for_hash(ph, heldout),
                row.source,
                row.category,
                dumps(row.tags, ensure_ascii=False) if row.tags is not None else None,
                now,
            )
        )
        if len(rows) == BATCH:
            out.insert("prompts", PROMPT_COLUMNS, rows)
            result.prompts_added += len(rows)
            rows = []
    out.insert("prompts", PROMPT_COLUMNS, rows)
    result.prompts_added += len(rows)

    imported_kind = AuthorKind.imported.value
    rows = []
    for new_id, (key, (text, source)) in zip(ids["responses"], new_responses.items(), strict=True):
        response_ids[key] = new_id
        rows.append((new_id, prompt_ids[key[0]], text, key[1], imported_kind, source, now))
        if len(rows) == BATCH:
            out.insert("responses", RESPONSE_COLUMNS, rows)
            result.responses_added += len(rows)
            rows = []
    out.insert("responses", RESPONSE_COLUMNS, rows)
    result.responses_added += len(rows)

    # Tasks, then what hangs off them: rank candidates and the imported labels.
    label_ids = iter(ids.get("demonstrations") or ids.get("preferences") or ())
    f = out.false
    task_rows, candidate_rows, demo_rows, pref_rows = [], [], [], []
    labeled_rows = []  # preferences with a labeler or other details (LABELED_PREF_COLUMNS)
    origin = Origin.imported.value
    choices = {c.value: c.value for c in Choice}
    done, open_ = TaskStatus.done.value, TaskStatus.open.value
    write, compare, rank = TaskKind.write.value, TaskKind.compare.value, TaskKind.rank.value
    stamp = out.timestamp
    for task_id, (th, ph, keys, row_kind, label, labels) in zip(
        ids["tasks"], new_tasks, strict=True
    ):
        n = 0 if label is None else 1
        task_overlap = overlap
        rids = [response_ids[k] for k in keys]
        a = b = None
        if row_kind == "prompt":
            task_kind = write
        elif row_kind == "sft":
            task_kind = write
            demo_rows.append((next(label_ids), task_id, origin, rids[0], now))
        elif row_kind == "pair" or kind == ProjectKind.pairwise:
            task_kind = compare
            a, b = rids
            if label.__class__ is str:
                pref_rows.append((next(label_ids), task_id, origin, choices[label], now))
            elif label is not None:
                labels = [label, *(labels or ())]
                n = 0
            if labels:
                for uid, choice, strength, left, ms, created_at in labels:
                    labeled_rows.append(
                        (next(label_ids), task_id, uid, origin, choices[choice], strength,
                         None if left is None else rids[left], ms,
                         now if created_at is None else stamp(created_at))
                    )  # fmt: skip
                n += len(labels)
                task_overlap = max(overlap, n)  # several labelers' labels: all of them fit
        else:
            task_kind = rank
            candidate_rows.extend((task_id, pos, rid) for pos, rid in enumerate(rids))
        task_rows.append(
            (
                task_id,
                pid,
                prompt_ids[ph],
                task_kind,
                a,
                b,
                th,
                f,
                done if n >= task_overlap else open_,
                task_overlap,
                n,
                0,
                0,
                0,
                now,
            )
        )
        if len(task_rows) == BATCH:
            out.insert("tasks", TASK_COLUMNS, task_rows)
            result.tasks_added += len(task_rows)
            task_rows = []
    out.insert("tasks", TASK_COLUMNS, task_rows)
    result.tasks_added += len(task_rows)
    for task_id, uid, choice, strength, left_id, ms, created_at in existing_labels:
        labeled_rows.append(
            (next(label_ids), task_id, uid, origin, choice, strength, left_id, ms,
             now if created_at is None else stamp(created_at))
        )  # fmt: skip
    out.insert("task_candidates", ("task_id", "position", "response_id"), candidate_rows)
    out.insert("demonstrations", DEMO_COLUMNS, demo_rows)
    out.insert("preferences", PREF_COLUMNS, pref_rows)
    out.insert("preferences", LABELED_PREF_COLUMNS, labeled_rows)
    result.labels_added = len(demo_rows) + len(pref_rows) + len(labeled_rows)


def _prompt_json(messages: list[dict[str, str]]) -> tuple[str, str]:
    """(prompt_hash(messages), the JSON to store), without a json.dumps per message.

    The hash input is exactly labeling.hashing.canonical_json of the messages (sorted keys,
    no spaces, non-ASCII kept): roles are known ASCII words and contents are encoded by
    the same function json.dumps uses for strings. A test checks the two agree.
    """
    canonical, stored = [], []
    for m in messages:
        content, role = _json_string(m["content"]), m["role"]
        canonical.append('{"content":' + content + ',"role":"' + role + '"}')
        stored.append('{"role":"' + role + '","content":' + content + "}")
    return (
        sha256(("[" + ",".join(canonical) + "]").encode("utf-8")).hexdigest(),
        "[" + ",".join(stored) + "]",
    )


def _task_hash(kind: str, prompt_sha: str, response_shas: list[str] = ()) -> str:
    """labeling.hashing.task_hash for hex digests, formatted directly (a test checks it)."""
    shas = ",".join('"' + h + '"' for h in response_shas)
    return sha256(f'["{kind}","{prompt_sha}",[{shas}]]'.encode()).hexdigest()


def _chunks(values: list, size: int = LOOKUP_CHUNK) -> Iterator[list]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _lookup(session: Session, key_col, value_col, keys: set[str], *where) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for chunk in _chunks(sorted(keys)):
        out.extend(session.execute(select(key_col, value_col).where(*where, key_col.in_(chunk))))
    return out


def _imported_responses(session: Session, prompt_ids: set[int]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for chunk in _chunks(sorted(prompt_ids)):
        out.extend(
            session.execute(
                select(Response.prompt_id, Response.id, Response.content_hash)
                .where(Response.prompt_id.in_(chunk), Response.author_kind == AuthorKind.imported)
                .order_by(Response.id)
            )
        )
    return out
