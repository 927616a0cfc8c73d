"""The domain schema. Invariants live here: foreign keys, unique constraints, CHECKs, enums.

Enums are stored as constrained strings (not native PostgreSQL enums) so the same
migration runs on SQLite and PostgreSQL and adding a member is a CHECK change.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from labeling.kinds import (  # re-exported: the enums live there, free of SQLAlchemy
    AssignmentStatus,
    AuthorKind,
    CheckpointKind,
    Choice,
    DraftStatus,
    FlagReason,
    Origin,
    ProbeStatus,
    ProjectKind,
    ReviewAction,
    Role,
    RunKind,
    RunStatus,
    SnapshotKind,
    Split,
    TaskKind,
    TaskStatus,
    Verdict,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python; timestamptz on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def _enum(cls: type[enum.Enum], name: str) -> SAEnum:
    return SAEnum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set by a reviewer (labeling.quality.review.pause): the account still logs in and sees
    # its history, but claims no new tasks until unpaused.
    paused_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (CheckConstraint("length(name) > 0", name="name_not_empty"),)


class WebSession(Base):
    """A browser login that survives a page reload. Only the token's SHA-256 is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    __table_args__ = (Index("ix_web_sessions_user", "user_id"),)


class LoginThrottle(Base):
    """Failed logins per account name ("user:NAME") or client address ("ip:ADDR").

    Kept in the database, not in memory, so the backoff holds across server restarts and
    across several server processes. A key is recorded whether or not the account exists.
    """

    __tablename__ = "login_throttles"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (CheckConstraint("failures >= 0", name="failures_min"),)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[ProjectKind] = mapped_column(_enum(ProjectKind, "kind"))
    guidelines: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=1800)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    heldout_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    rank_k: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A regex whose first group (or whole match) is a completion's final answer, for
    # verifiable rewards; None: the verifier's \boxed{} / last number.
    answer_pattern: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        CheckConstraint("length(name) > 0", name="name_not_empty"),
        CheckConstraint("overlap >= 1 AND overlap <= 100", name="overlap_range"),
        CheckConstraint("lease_seconds >= 10", name="lease_min"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_range"),
        CheckConstraint("heldout_fraction >= 0 AND heldout_fraction <= 0.5", name="heldout_range"),
        CheckConstraint("rank_k IS NULL OR rank_k >= 2", name="rank_k_min"),
    )


class Prompt(Base):
    """A conversation to answer: a list of {role, content}, ending with a user turn; `answer`
    is a gold final answer a verifier checks completions against (None: none known)."""

    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    messages: Mapped[list[Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[Split] = mapped_column(_enum(Split, "split"), default=Split.train)
    source: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any] | None] = mapped_column()
    answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        Index("ix_prompts_project_split", "project_id", "split"),
    )


class Snapshot(Base):
    """Frozen labels in Parquet. Never changes once written."""

    __tablename__ = "snapshots"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    kind: Mapped[SnapshotKind] = mapped_column(_enum(SnapshotKind, "kind"))
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rows: Mapped[int] = mapped_column(Integer)
    splits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        CheckConstraint("rows >= 0", name="rows_nonnegative"),
        CheckConstraint("length(sha256) = 64", name="sha256_length"),
        UniqueConstraint("project_id", "kind", "sha256"),
    )


@event.listens_for(Snapshot, "before_update")
def _snapshots_never_change(mapper, connection, target) -> None:
    raise ValueError(f"snapshot {target.id} is immutable: create a new snapshot instead")


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[RunKind] = mapped_column(_enum(RunKind, "kind"))
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "status"), default=RunStatus.queued)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="RESTRICT"))
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64))
    base_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT", use_alter=True)
    )
    reward_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT", use_alter=True)
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    host: Mapped[str | None] = mapped_column(String(255))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (Index("ix_training_runs_status", "status", "id"),)


class RunMetric(Base):
    """One logging step of a run: {"loss": ..., "learning_rate": ...}."""

    __tablename__ = "run_metrics"
    run_id: Mapped[int] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column()
    logged_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CheckpointKind] = mapped_column(_enum(CheckpointKind, "kind"))
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str | None] = mapped_column(String(500))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="RESTRICT"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id", ondelete="RESTRICT"))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="RESTRICT"))
    snapshot_sha256: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    evaluation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str | None] = mapped_column(Text)  # the engineer's own words about it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
    )


class Response(Base):
    """An answer to a prompt, written by a labeler, generated by a checkpoint, or imported."""

    __tablename__ = "responses"
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    author_kind: Mapped[AuthorKind] = mapped_column(_enum(AuthorKind, "author_kind"))
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="RESTRICT")
    )
    sampling_params: Mapped[dict[str, Any] | None] = mapped_column()
    source: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        CheckConstraint(
            "author_kind <> 'checkpoint' OR checkpoint_id IS NOT NULL", name="checkpoint_author"
        ),
        Index("ix_responses_prompt_hash", "prompt_id", "content_hash"),
    )


class Task(Base):
    """What a labeler is asked to do. Counters on the row make claims one atomic statement.

    labels_count   labels received (gold tasks never close)
    active_leases  leases handed out in the current lease epoch and not yet returned
    lease_horizon  the latest expiry among those leases: once past, all of them are void
    """

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    kind: Mapped[TaskKind] = mapped_column(_enum(TaskKind, "kind"))
    response_a_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="CASCADE")
    )
    response_b_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="CASCADE")
    )
    content_hash: Mapped[str] = mapped_column(String(64))
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold: Mapped[dict[str, Any] | None] = mapped_column()
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus, "status"), default=TaskStatus.open)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    labels_count: Mapped[int] = mapped_column(Integer, default=0)
    active_leases: Mapped[int] = mapped_column(Integer, default=0)
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    lease_horizon: Mapped[datetime | None] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher is served first
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompt: Mapped[Prompt] = relationship(lazy="joined")
    response_a: Mapped[Response | None] = relationship(foreign_keys=[response_a_id])
    response_b: Mapped[Response | None] = relationship(foreign_keys=[response_b_id])

    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        CheckConstraint("labels_count >= 0 AND active_leases >= 0", name="counters_nonnegative"),
        CheckConstraint("overlap >= 1", name="overlap_min"),
        CheckConstraint("is_gold OR labels_count <= overlap", name="labels_within_overlap"),
        CheckConstraint(
            "(kind IN ('compare', 'arena')) = "
            "(response_a_id IS NOT NULL AND response_b_id IS NOT NULL)",
            name="pair_has_two_responses",
        ),
        CheckConstraint(
            "response_a_id IS NULL OR response_a_id <> response_b_id", name="pair_distinct"
        ),
        CheckConstraint("NOT is_gold OR gold IS NOT NULL", name="gold_has_answer"),
    )


# The claim scan: open tasks of one project, higher priority first, then oldest first.
Index("ix_tasks_claim", Task.project_id, Task.status, Task.is_gold, Task.priority.desc(), Task.id)


class TaskCandidate(Base):
    """The k responses of a rank task, in the order they were added."""

    __tablename__ = "task_candidates"
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"))
    __table_args__ = (UniqueConstraint("task_id", "response_id"),)


class Assignment(Base):
    """A lease of one task to one labeler. Unique per (task, user): nobody does a task twice."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[AssignmentStatus] = mapped_column(
        _enum(AssignmentStatus, "status"), default=AssignmentStatus.active
    )
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Which response the labeler sees on the left (randomized per task and labeler).
    swap_sides: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # When this labeler last took back their label here (labeling.undo): labels they gave
    # before that moment can no longer be undone (one step back only).
    undone_at: Mapped[datetime | None] = mapped_column()

    task: Mapped[Task] = relationship()

    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        Index("ix_assignments_user_project_status", "user_id", "project_id", "status"),
    )


class Demonstration(Base):
    """An ideal answer (SFT). The text is a Response authored by the labeler."""

    __tablename__ = "demonstrations"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    origin: Mapped[Origin] = mapped_column(_enum(Origin, "origin"), default=Origin.labeler)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"))
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    response: Mapped[Response] = relationship()

    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        CheckConstraint("time_spent_ms IS NULL OR time_spent_ms >= 0", name="time_nonnegative"),
    )


class Preference(Base):
    """A pairwise judgment. `choice` refers to the task's response A and B, never screen sides."""

    __tablename__ = "preferences"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    origin: Mapped[Origin] = mapped_column(_enum(Origin, "origin"), default=Origin.labeler)
    choice: Mapped[Choice] = mapped_column(_enum(Choice, "choice"))
    # 1 slightly, 2 clearly, 3 much better; only for a decided choice.
    strength: Mapped[int | None] = mapped_column(Integer)
    left_response_id: Mapped[int | None] = mapped_column(
        ForeignKey("responses.id", ondelete="SET NULL")
    )
    rationale: Mapped[str | None] = mapped_column(Text)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        CheckConstraint("strength IS NULL OR (strength BETWEEN 1 AND 3)", name="strength_range"),
        CheckConstraint("strength IS NULL OR choice IN ('a', 'b')", name="strength_only_decided"),
        CheckConstraint("time_spent_ms IS NULL OR time_spent_ms >= 0", name="time_nonnegative"),
    )


class Ranking(Base):
    """An ordering of a rank task's candidates, best first (response ids)."""

    __tablename__ = "rankings"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    origin: Mapped[Origin] = mapped_column(_enum(Origin, "origin"), default=Origin.labeler)
    order: Mapped[list[Any]] = mapped_column()
    rationale: Mapped[str | None] = mapped_column(Text)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("task_id", "user_id"),
        CheckConstraint("time_spent_ms IS NULL OR time_spent_ms >= 0", name="time_nonnegative"),
    )


class LabelReview(Base):
    """A reviewer's decision on one label (exactly one of preference, ranking, demonstration).

    Append-only: the latest review of a label (highest id) is the one in force, earlier ones
    stay as its history. A relabel carries the reviewer's judgment (choice and strength for a
    preference, order for a ranking), which replaces the label's in later snapshots; the
    label row itself never changes.
    """

    __tablename__ = "label_reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    preference_id: Mapped[int | None] = mapped_column(
        ForeignKey("preferences.id", ondelete="CASCADE")
    )
    ranking_id: Mapped[int | None] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    demonstration_id: Mapped[int | None] = mapped_column(
        ForeignKey("demonstrations.id", ondelete="CASCADE")
    )
    action: Mapped[ReviewAction] = mapped_column(_enum(ReviewAction, "action"))
    choice: Mapped[Choice | None] = mapped_column(_enum(Choice, "choice"))
    strength: Mapped[int | None] = mapped_column(Integer)
    order: Mapped[list[Any] | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(Text)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN preference_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN ranking_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN demonstration_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_label",
        ),
        CheckConstraint(
            "action <> 'relabel' OR choice IS NOT NULL OR \"order\" IS NOT NULL",
            name="relabel_has_judgment",
        ),
        CheckConstraint("strength IS NULL OR (strength BETWEEN 1 AND 3)", name="strength_range"),
        Index("ix_label_reviews_project", "project_id", "id"),
        Index("ix_label_reviews_preference", "preference_id"),
        Index("ix_label_reviews_ranking", "ranking_id"),
        Index("ix_label_reviews_demonstration", "demonstration_id"),
    )


class Flag(Base):
    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[FlagReason] = mapped_column(_enum(FlagReason, "reason"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("task_id", "user_id", "reason"),)


class Draft(Base):
    """Server-side autosave of unfinished work: {"text": ...} or a partial judgment."""

    __tablename__ = "drafts"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (UniqueConstraint("task_id", "user_id"),)


class Probe(Base):
    """A hallucination probe: a policy checkpoint answers a project's questions (prompts with a
    gold answer) `samples` times each; each answer is judged (ProbeAnswer). labeling/probes.py."""

    __tablename__ = "probes"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"))
    samples: Mapped[int] = mapped_column(Integer)
    temperature: Mapped[float] = mapped_column(Float)
    max_new_tokens: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(16))  # heldout, train or all
    status: Mapped[ProbeStatus] = mapped_column(
        _enum(ProbeStatus, "status"), default=ProbeStatus.running
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        CheckConstraint("samples >= 1 AND samples <= 64", name="samples_range"),
        CheckConstraint("temperature >= 0", name="temperature_min"),
        CheckConstraint("max_new_tokens >= 1", name="max_new_tokens_min"),
        CheckConstraint("split IN ('heldout', 'train', 'all')", name="split"),
        Index("ix_probes_project", "project_id", "checkpoint_id", "id"),
    )


class ProbeAnswer(Base):
    """One sampled answer of a probe: the text is a Response authored by the checkpoint (with
    its sampling_params); judged_by is None for the automatic judge, else the person's id."""

    __tablename__ = "probe_answers"
    id: Mapped[int] = mapped_column(primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"))
    sample_index: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[Verdict] = mapped_column(_enum(Verdict, "verdict"))
    judged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("probe_id", "prompt_id", "sample_index"),
        CheckConstraint("sample_index >= 0", name="sample_index_min"),
    )


class QuestionDraft(Base):
    """A question and its short answer that a model drafted from a passage of a document, for
    a person to accept (it becomes a prompt with a gold answer, probe material), edit, or
    reject. labeling/question_drafts.py."""

    __tablename__ = "question_drafts"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    document: Mapped[str] = mapped_column(String(255))  # the file's name, as given
    passage_index: Mapped[int] = mapped_column(Integer)
    passage: Mapped[str] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))  # of (question, answer), per project
    status: Mapped[DraftStatus] = mapped_column(
        _enum(DraftStatus, "status"), default=DraftStatus.pending
    )
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column()
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id", ondelete="SET NULL"))
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        CheckConstraint("passage_index >= 0", name="passage_index_min"),
        Index("ix_question_drafts_review", "project_id", "status", "id"),
    )
