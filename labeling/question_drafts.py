"""Questions drafted from a document by a model, reviewed by people before use.

The probe's questions (labeling/probes.py) are facts the team trusts. Writing hundreds by
hand is slow, so a model may draft them from the team's own documents: the document is cut
into passages (`passages`), the model writes a few question/answer lines per passage
(training/question_drafts.py), `parse_drafts` reads them, and each becomes a pending
QuestionDraft showing its passage. A person then accepts it (as written or edited: it becomes
a prompt of the sft project with its gold answer, exactly like one written on the Write page,
so probes, snapshots and writers see it) or rejects it. Nothing a model drafts is a question
before a person said so.

    rlhf probe draft --project facts --document handbook.md --checkpoint 7 --json
    rlhf probe drafts --project facts --json
    rlhf probe accept --project facts --draft 12 [--question TEXT] [--answer TEXT]
    rlhf probe reject --project facts --draft 13

Service functions take the session first and never commit; no torch here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from labeling import tasks
from labeling.errors import InvalidInput, NotFound
from labeling.hashing import sha256_text
from labeling.models import DraftStatus, Project, ProjectKind, QuestionDraft, utcnow
from labeling.projects import get_project

MAX_DOCUMENT_CHARS = 2_000_000
DEFAULT_PASSAGE_CHARS = 1200
MIN_PASSAGE_CHARS, MAX_PASSAGE_CHARS = 200, 8000
MAX_QUESTION_CHARS, MAX_ANSWER_CHARS = 500, 200
MAX_LIST = 1000
SOURCE = "document"  # the accepted prompt's source: "document:<name>"

# "Q: ...", "Question 2: ...", "1. Q: ..."; "A: ...", "Answer: ..." (Markdown bold allowed)
_Q = re.compile(r"^\W*(?:\d+[.)]\s*)?\**\s*(?:q|question)\s*\d*\s*\**\s*[:.)-]\s*(.+)$", re.I)
_A = re.compile(r"^\W*(?:\d+[.)]\s*)?\**\s*(?:a|answer)\s*\d*\s*\**\s*[:.)-]\s*(.+)$", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# a marker inside a line ("... Q: x? A: y Q: ...") starts a line of its own
_INLINE_MARKER = re.compile(r"[ \t]+(?=\**(?:q|question|a|answer)\s*\d*\**\s*:)", re.I)


def passages(text: str, max_chars: int = DEFAULT_PASSAGE_CHARS) -> list[str]:
    """The document cut into passages of at most `max_chars`: whole paragraphs joined while
    they fit, a longer paragraph cut at sentence ends (a sentence longer still, at spaces)."""
    if not MIN_PASSAGE_CHARS <= max_chars <= MAX_PASSAGE_CHARS:
        raise InvalidInput(
            f"passage length must be from {MIN_PASSAGE_CHARS} to {MAX_PASSAGE_CHARS} characters"
        )
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                pieces.append(sentence[:cut])
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 2 + len(piece) <= max_chars:
            out[-1] = f"{out[-1]}\n\n{piece}"
        else:
            out.append(piece)
    return out


def parse_drafts(text: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from a model's "Q: ... / A: ..." lines; a question without an
    answer line, and over-long or empty ones, are dropped; repeats are kept once."""
    out: list[tuple[str, str]] = []
    question: str | None = None
    for line in _INLINE_MARKER.sub("\n", text or "").splitlines():
        line = line.strip()
        q, a = _Q.match(line), _A.match(line)
        if q:
            question = q.group(1).strip().strip("*").strip()
        elif a and question:
            answer = a.group(1).strip().strip("*").strip()
            if answer.endswith(".") and answer.count(".") == 1:  # "1969." but not "U.S."
                answer = answer[:-1].rstrip()
            pair = (question, answer)
            if (0 < len(question) <= MAX_QUESTION_CHARS and 0 < len(answer) <= MAX_ANSWER_CHARS
                    and pair not in out):  # fmt: skip
                out.append(pair)
            question = None
    return out


def _draft_hash(question: str, answer: str) -> str:
    return sha256_text(f"{' '.join(question.lower().split())}\n{' '.join(answer.split())}")


def draft_project(session: Session, project: str | int | Project) -> Project:
    row = project if isinstance(project, Project) else get_project(session, project)
    if row.kind != ProjectKind.sft:
        raise InvalidInput(
            f"project {row.name!r} is a {row.kind.value} project: questions go to an sft project"
        )
    return row


def check_document(name: str, text: str) -> str:
    """The document's text, or one sentence on why it cannot be used."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{name}: the document is empty")
    if len(text) > MAX_DOCUMENT_CHARS:
        raise InvalidInput(
            f"{name}: the document is too long: {len(text):,} characters "
            f"(limit {MAX_DOCUMENT_CHARS:,})"
        )
    if "\x00" in text:
        raise InvalidInput(f"{name}: the document contains a NUL character (not plain text?)")
    return text


def add_drafts(
    session: Session,
    project: str | int | Project,
    *,
    document: str,
    passage_index: int,
    passage: str,
    pairs: Sequence[tuple[str, str]],
    checkpoint_id: int | None = None,
    created_by: int | None = None,
) -> int:
    """Store a passage's drafted pairs as pending drafts; a pair the project already has a
    draft of (any status: a rejected one stays rejected) is not stored again. Returns how
    many were new."""
    row = draft_project(session, project)
    hashes = {_draft_hash(q, a): (q, a) for q, a in pairs}
    if not hashes:
        return 0
    known = set(
        session.scalars(
            select(QuestionDraft.content_hash).where(
                QuestionDraft.project_id == row.id, QuestionDraft.content_hash.in_(list(hashes))
            )
        )
    )
    new = [
        QuestionDraft(
            project_id=row.id, document=document[:255], passage_index=int(passage_index),
            passage=passage, question=q, answer=a, content_hash=digest,
            checkpoint_id=checkpoint_id, created_by=created_by,
        )
        for digest, (q, a) in hashes.items() if digest not in known
    ]  # fmt: skip
    session.add_all(new)
    session.flush()
    return len(new)


def _describe(draft: QuestionDraft) -> dict[str, Any]:
    return {
        "draft_id": draft.id,
        "document": draft.document,
        "passage_index": draft.passage_index,
        "passage": draft.passage,
        "question": draft.question,
        "answer": draft.answer,
        "status": DraftStatus(draft.status).value,
        "prompt_id": draft.prompt_id,
    }


def list_drafts(
    session: Session,
    project: str | int,
    *,
    status: str = "pending",
    skip: Sequence[int] = (),
    limit: int = 50,
) -> dict[str, Any]:
    """{"project", "counts": {pending, accepted, rejected}, "drafts": [...]} oldest first."""
    row = draft_project(session, project)
    try:
        wanted = DraftStatus(status)
    except ValueError:
        raise InvalidInput(
            f"unknown status {status!r}: use {', '.join(s.value for s in DraftStatus)}"
        ) from None
    if not 1 <= int(limit) <= MAX_LIST:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIST}")
    counts = {s.value: 0 for s in DraftStatus}
    for value, n in session.execute(
        select(QuestionDraft.status, func.count())
        .where(QuestionDraft.project_id == row.id)
        .group_by(QuestionDraft.status)
    ):
        counts[DraftStatus(value).value] = int(n)
    query = select(QuestionDraft).where(
        QuestionDraft.project_id == row.id, QuestionDraft.status == wanted
    )
    if skip:
        query = query.where(QuestionDraft.id.not_in([int(i) for i in skip]))
    drafts = session.scalars(query.order_by(QuestionDraft.id).limit(int(limit)))
    return {"project": row.name, "counts": counts, "drafts": [_describe(d) for d in drafts]}


def projects_with_drafts(session: Session) -> list[tuple[str, int]]:
    """(project name, pending drafts) for every project that has some."""
    rows = session.execute(
        select(Project.name, func.count(QuestionDraft.id))
        .join(QuestionDraft, QuestionDraft.project_id == Project.id)
        .where(QuestionDraft.status == DraftStatus.pending)
        .group_by(Project.name)
        .order_by(Project.name)
    )
    return [(name, int(n)) for name, n in rows]


def _claim(session: Session, draft: QuestionDraft, status: DraftStatus, reviewed_by: int) -> None:
    """pending -> status, conditionally: of two reviewers at once, the second is told."""
    done = session.execute(
        update(QuestionDraft)
        .where(QuestionDraft.id == draft.id, QuestionDraft.status == DraftStatus.pending)
        .values(status=status, reviewed_by=reviewed_by, reviewed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(draft)
    if not done:
        raise InvalidInput(
            f"draft {draft.id} was already reviewed ({DraftStatus(draft.status).value})"
        )


def _get(session: Session, project: str | int, draft_id: int) -> QuestionDraft:
    row = draft_project(session, project)
    draft = session.get(QuestionDraft, int(draft_id))
    if draft is None or draft.project_id != row.id:
        raise NotFound(f"no question draft with id {draft_id} in project {row.name!r}")
    return draft


def accept_draft(
    session: Session,
    project: str | int,
    draft_id: int,
    *,
    reviewed_by: int,
    question: str | None = None,
    answer: str | None = None,
) -> dict[str, Any]:
    """The draft, as drafted or with the reviewer's edits, becomes a question: a prompt of the
    project with its gold answer and a write task (tasks.add_problem, which refuses a
    different answer for a question that already has one)."""
    draft = _get(session, project, draft_id)
    question = draft.question if question is None else question
    answer = draft.answer if answer is None else answer
    if not isinstance(answer, str) or not answer.strip():
        raise InvalidInput("a question needs its answer")
    if len(answer) > MAX_ANSWER_CHARS:
        raise InvalidInput(f"the answer is too long: {len(answer):,} characters "
                           f"(limit {MAX_ANSWER_CHARS})")  # fmt: skip
    # one savepoint: a problem add_problem refuses (an empty question, another gold answer)
    # leaves the draft pending even where the caller goes on with its transaction
    with session.begin_nested():
        _claim(session, draft, DraftStatus.accepted, reviewed_by)
        prompt, _task = tasks.add_problem(
            session, session.get(Project, draft.project_id), question, answer=answer.strip(),
            source=f"{SOURCE}:{draft.document}"[:200],
        )  # fmt: skip
    draft.question, draft.answer, draft.prompt_id = question.strip(), answer.strip(), prompt.id
    session.flush()
    return _describe(draft)


def reject_draft(
    session: Session, project: str | int, draft_id: int, *, reviewed_by: int
) -> dict[str, Any]:
    draft = _get(session, project, draft_id)
    _claim(session, draft, DraftStatus.rejected, reviewed_by)
    return _describe(draft)
