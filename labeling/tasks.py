"""Creating prompts, responses and tasks one at a time (demo data, generated answers, tests).

Bulk loading goes through labeling.importer, which writes the same rows without the ORM.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.errors import Conflict, InvalidInput
from labeling.hashing import prompt_hash, sha256_text, split_for_hash, task_hash
from labeling.models import (
    AuthorKind,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Split,
    Task,
    TaskCandidate,
    TaskKind,
)

ROLES = {"system", "user", "assistant"}


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """A prompt: a non-empty list of {role, content} ending with a user turn."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("a prompt must be a string or a non-empty list of messages")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise InvalidInput(f"message {i}: needs 'role' and a string 'content'")
        if m.get("role") not in ROLES:
            raise InvalidInput(f"message {i}: role must be one of {', '.join(sorted(ROLES))}")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "user":
        raise InvalidInput("a prompt must end with a user turn")
    return clean


def add_prompt(
    session: Session,
    project: Project,
    messages: Any,
    *,
    source: str | None = None,
    category: str | None = None,
) -> Prompt:
    """The project's prompt with this content, created if new (de-duplicated by hash)."""
    messages = validate_messages(messages)
    digest = prompt_hash(messages)
    prompt = session.scalar(
        select(Prompt).where(Prompt.project_id == project.id, Prompt.content_hash == digest)
    )
    if prompt is None:
        prompt = Prompt(
            project_id=project.id, messages=messages, content_hash=digest,
            split=Split.heldout if project.kind == ProjectKind.arena  # nothing trains on it
            else Split(split_for_hash(digest, project.heldout_fraction)),
            source=source, category=category,
        )  # fmt: skip
        session.add(prompt)
        session.flush()
    return prompt


def add_response(
    session: Session,
    prompt: Prompt,
    text: str,
    *,
    author_kind: AuthorKind = AuthorKind.imported,
    author_user_id: int | None = None,
    checkpoint_id: int | None = None,
    sampling_params: dict[str, Any] | None = None,
    source: str | None = None,
) -> Response:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("a response must be non-empty text")
    response = Response(
        prompt_id=prompt.id, text=text, content_hash=sha256_text(text), author_kind=author_kind,
        author_user_id=author_user_id, checkpoint_id=checkpoint_id,
        sampling_params=sampling_params, source=source,
    )  # fmt: skip
    session.add(response)
    session.flush()
    return response


def _task(session: Session, project: Project, prompt: Prompt, kind: TaskKind, digest: str,
          gold: dict[str, Any] | None, priority: int, **columns: Any) -> Task:  # fmt: skip
    existing = session.scalar(
        select(Task).where(Task.project_id == project.id, Task.content_hash == digest)
    )
    if existing is not None:
        return existing
    task = Task(
        project_id=project.id, prompt_id=prompt.id, kind=kind, content_hash=digest,
        is_gold=gold is not None, gold=gold, overlap=project.overlap, priority=priority,
        **columns,
    )  # fmt: skip
    session.add(task)
    session.flush()
    return task


def add_write_task(
    session: Session, project: Project, prompt: Prompt, *, gold_text: str | None = None,
    priority: int = 0,
) -> Task:  # fmt: skip
    gold = {"text": gold_text} if gold_text is not None else None
    digest = task_hash(TaskKind.write.value, prompt.content_hash)
    return _task(session, project, prompt, TaskKind.write, digest, gold, priority)


def add_compare_task(
    session: Session,
    project: Project,
    prompt: Prompt,
    response_a: Response,
    response_b: Response,
    *,
    kind: TaskKind = TaskKind.compare,
    gold_choice: str | None = None,
    priority: int = 0,
) -> Task:
    if response_a.id == response_b.id:
        raise InvalidInput("a comparison needs two different responses")
    if gold_choice is not None and gold_choice not in ("a", "b", "tie", "both_bad"):
        raise InvalidInput("gold choice must be a, b, tie or both_bad")
    gold = {"choice": gold_choice} if gold_choice is not None else None
    digest = task_hash(
        kind.value, prompt.content_hash, [response_a.content_hash, response_b.content_hash]
    )
    return _task(
        session, project, prompt, kind, digest, gold, priority,
        response_a_id=response_a.id, response_b_id=response_b.id,
    )  # fmt: skip


def add_rank_task(
    session: Session, project: Project, prompt: Prompt, responses: list[Response], *,
    priority: int = 0,
) -> Task:  # fmt: skip
    if len(responses) < 2 or len({r.id for r in responses}) != len(responses):
        raise InvalidInput("a ranking needs at least two different responses")
    digest = task_hash(
        TaskKind.rank.value, prompt.content_hash, [r.content_hash for r in responses]
    )
    task = _task(session, project, prompt, TaskKind.rank, digest, None, priority)
    if not session.scalar(select(TaskCandidate.task_id).where(TaskCandidate.task_id == task.id)):
        session.add_all(
            TaskCandidate(task_id=task.id, position=i, response_id=r.id)
            for i, r in enumerate(responses)
        )
        session.flush()
    return task


MAX_PROBLEM_CHARS = 20_000


def add_problem(
    session: Session, project: Project, text: str, *, answer: str | None = None,
    source: str | None = "write page",
) -> tuple[Prompt, Task]:  # fmt: skip
    """A problem written by hand (the Write page) for an sft project: a one-turn prompt with an
    optional gold final answer, and its write task. The same problem twice is the same prompt;
    an answer is added to one that had none, never replaced (Conflict)."""
    from labeling.import_formats import RowProblem, gold_answer

    if project.kind != ProjectKind.sft:
        raise InvalidInput("problems are written for sft projects")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("write the problem first")
    if len(text) > MAX_PROBLEM_CHARS:
        raise InvalidInput(f"the problem is too long: {len(text):,} characters "
                           f"(limit {MAX_PROBLEM_CHARS:,})")  # fmt: skip
    if "\x00" in text:
        raise InvalidInput("the problem contains a NUL character")
    try:
        answer = gold_answer(answer, "the final answer")
    except RowProblem as exc:
        raise InvalidInput(str(exc)) from None
    prompt = add_prompt(session, project, text.strip(), source=source)
    if answer is not None:
        if prompt.answer is not None and prompt.answer != answer:
            raise Conflict(
                f"this problem already has the final answer {prompt.answer[:40]!r}; "
                "a gold answer is never replaced"
            )
        prompt.answer = answer
    task = add_write_task(session, project, prompt)
    session.flush()
    return prompt, task
