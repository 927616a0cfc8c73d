"""The kinds and states the schema knows (roles, project kinds, statuses): plain StrEnums,
no SQLAlchemy, so a command line or a page can name them without loading the ORM.
labeling.models re-exports them; the columns store their values."""

from __future__ import annotations

import enum
import re

# An account name (labeling.accounts.users; also checked by the importer, which must stay
# light to load): e-mails fit, for single sign-on.
ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


def with_article(word: str) -> str:
    """ "an admin", "an engineer", "a labeler": how messages name a role."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class Role(enum.StrEnum):
    admin = "admin"
    engineer = "engineer"
    labeler = "labeler"


class ProjectKind(enum.StrEnum):
    sft = "sft"
    pairwise = "pairwise"
    ranking = "ranking"
    arena = "arena"


class Split(enum.StrEnum):
    train = "train"
    heldout = "heldout"


class AuthorKind(enum.StrEnum):
    labeler = "labeler"
    checkpoint = "checkpoint"
    imported = "import"


class TaskKind(enum.StrEnum):
    write = "write"
    compare = "compare"
    rank = "rank"
    arena = "arena"


class TaskStatus(enum.StrEnum):
    open = "open"
    done = "done"
    retired = "retired"


class AssignmentStatus(enum.StrEnum):
    active = "active"
    submitted = "submitted"
    skipped = "skipped"
    released = "released"
    expired = "expired"


class Origin(enum.StrEnum):
    labeler = "labeler"
    imported = "import"


class Choice(enum.StrEnum):
    a = "a"
    b = "b"
    tie = "tie"
    both_bad = "both_bad"


class FlagReason(enum.StrEnum):
    unsafe = "unsafe"
    unanswerable = "unanswerable"
    personal_data = "personal_data"
    other = "other"


class ReviewAction(enum.StrEnum):
    accept = "accept"  # the label stands (and leaves the review queue)
    reject = "reject"  # the label leaves every later snapshot; kept in the history
    relabel = "relabel"  # the reviewer's own judgment replaces the label in later snapshots


class SnapshotKind(enum.StrEnum):
    sft = "sft"
    preference = "preference"
    kto = "kto"


class RunKind(enum.StrEnum):
    sft = "sft"
    reward = "reward"
    dpo = "dpo"
    rl = "rl"


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class CheckpointKind(enum.StrEnum):
    policy = "policy"
    reward = "reward"


class ProbeStatus(enum.StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"


class DraftStatus(enum.StrEnum):
    """A question a model drafted from a document, before a person's review
    (labeling/question_drafts.py)."""

    pending = "pending"
    accepted = "accepted"  # became a question: a prompt with a gold answer
    rejected = "rejected"


class Verdict(enum.StrEnum):
    """A probe answer judged against the question's gold answer (labeling/probes.py)."""

    correct = "correct"
    incorrect = "incorrect"
    abstained = "abstained"  # "I don't know" and the like: neither right nor wrong
    unjudged = "unjudged"  # too long to match automatically: a person has to judge it
