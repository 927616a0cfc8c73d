"""A policy checkpoint drafts probe questions from a document (labeling/question_drafts.py
stores them for people to review).

    rlhf probe draft --project facts --document handbook.md --checkpoint 7
                     [--per-passage 3] [--passage-chars 1200] [--max-new-tokens 192] --json
    -> {"project", "document", "passages", "drafted", "new", "duplicates", "unparsed_passages",
        "seconds"}

1. The document (UTF-8 text or Markdown, at most 2M characters) is cut into passages
   (labeling.question_drafts.passages: whole paragraphs while they fit).
2. The checkpoint answers one instruction per passage (DRAFT_INSTRUCTION: write N questions
   the passage answers, each with a short answer, as "Q: ..." / "A: ..." lines), greedily,
   batched by training/generate.py's generate_texts.
3. Each answer is parsed (parse_drafts); every new pair is stored as a pending draft with its
   passage, after each batch in its own transaction (the batches done stay if a later one
   fails). A passage whose answer has no Q/A pair counts in `unparsed_passages`.
A small model drafts poor questions: that is why a person reviews every one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from labeling import question_drafts as drafts
from labeling.errors import InvalidInput

DRAFT_INSTRUCTION = (
    "Read the passage below and write {n} questions that it answers. Each answer must be "
    "short: a name, a number, a date or a few words from the passage. Write them exactly in "
    "this form, one pair per two lines, and nothing else:\n"
    "Q: <question>\nA: <answer>\n\nPassage:\n{passage}"
)
MAX_PER_PASSAGE = 10


def read_document(path: str | Path) -> str:
    """The document's text; one sentence when it cannot be read."""
    path = Path(path)
    try:
        if path.stat().st_size > 4 * drafts.MAX_DOCUMENT_CHARS:
            raise InvalidInput(f"{path.name}: the document is too large to read")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"no such document: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not a document") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name}: not UTF-8 text (give a .txt or .md file)") from None
    except OSError as exc:
        raise InvalidInput(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    return drafts.check_document(path.name, text)


def draft_from_document(
    sessionmaker,
    *,
    project: str,
    document: str | Path,
    checkpoint_id: int,
    per_passage: int = 3,
    passage_chars: int = drafts.DEFAULT_PASSAGE_CHARS,
    max_new_tokens: int = 192,
    batch_size: int | None = None,
    created_by: int | None = None,
    progress: bool = True,
    generate_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Draft, parse and store; see the module docstring. generate_fn: as in
    training.generate.generate_texts (tests give the model its words)."""
    from labeling import generations
    from training.generate import CPU_ANSWER_BATCH, device_and_dtype, generate_texts
    from training.models import load_policy, resolve_model

    if not 1 <= per_passage <= MAX_PER_PASSAGE:
        raise InvalidInput(f"per_passage must be from 1 to {MAX_PER_PASSAGE}")
    if max_new_tokens < 16:
        raise InvalidInput("max_new_tokens must be at least 16")
    if batch_size is not None and batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    name = Path(document).name
    pieces = drafts.passages(read_document(document), passage_chars)
    with sessionmaker.begin() as s:
        project_name = drafts.draft_project(s, project).name
        generations.policy_checkpoint(s, checkpoint_id)  # a policy, or one sentence
        resolved = resolve_model(checkpoint_id, kind="policy", session=s)
    counts = {"drafted": 0, "new": 0, "unparsed_passages": 0}

    def store(indices: list[int], texts: list[str], _tokens: list[int], _cut: list[bool]):
        with sessionmaker.begin() as s:
            for i, text in zip(indices, texts, strict=True):
                pairs = drafts.parse_drafts(text)[:per_passage]
                counts["drafted"] += len(pairs)
                counts["unparsed_passages"] += not pairs
                counts["new"] += drafts.add_drafts(
                    s, project_name, document=name, passage_index=i, passage=pieces[i],
                    pairs=pairs, checkpoint_id=checkpoint_id, created_by=created_by,
                )  # fmt: skip

    device, dtype = device_and_dtype()
    model, tokenizer = load_policy(resolved.path, dtype=dtype)
    model.to(device)
    prompts = [
        [{"role": "user", "content": DRAFT_INSTRUCTION.format(n=per_passage, passage=p)}]
        for p in pieces
    ]
    out = generate_texts(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
        batch_size=batch_size, progress=progress, on_batch=store, generate_fn=generate_fn,
        cpu_batch_cap=CPU_ANSWER_BATCH, label=f"draft {project_name}", unit="passages",
    )  # fmt: skip
    return {
        "project": project_name,
        "document": name,
        "passages": len(pieces),
        **counts,
        "duplicates": counts["drafted"] - counts["new"],
        "seconds": round(out.seconds, 3),
    }
