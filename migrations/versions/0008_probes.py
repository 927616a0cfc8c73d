"""hallucination probes: a checkpoint's sampled answers to gold-answer questions, judged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Two new tables only: nothing existing is altered (on SQLite nothing is recreated).
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("max_new_tokens", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", JSON, nullable=False),
        sa.CheckConstraint("samples >= 1 AND samples <= 64", name=op.f("ck_probes_samples_range")),
        sa.CheckConstraint("temperature >= 0", name=op.f("ck_probes_temperature_min")),
        sa.CheckConstraint("max_new_tokens >= 1", name=op.f("ck_probes_max_new_tokens_min")),
        sa.CheckConstraint("split IN ('heldout', 'train', 'all')", name=op.f("ck_probes_split")),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'failed')", name=op.f("ck_probes_status")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_probes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_probes_checkpoint_id_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_probes_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
    )
    op.create_index("ix_probes_project", "probes", ["project_id", "checkpoint_id", "id"])
    op.create_table(
        "probe_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("probe_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("judged_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sample_index >= 0", name=op.f("ck_probe_answers_sample_index_min")),
        sa.CheckConstraint(
            "verdict IN ('correct', 'incorrect', 'abstained', 'unjudged')",
            name=op.f("ck_probe_answers_verdict"),
        ),
        sa.ForeignKeyConstraint(
            ["probe_id"],
            ["probes.id"],
            name=op.f("fk_probe_answers_probe_id_probes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name=op.f("fk_probe_answers_prompt_id_prompts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.id"],
            name=op.f("fk_probe_answers_response_id_responses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["judged_by"],
            ["users.id"],
            name=op.f("fk_probe_answers_judged_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_answers")),
        sa.UniqueConstraint(
            "probe_id",
            "prompt_id",
            "sample_index",
            name=op.f("uq_probe_answers_probe_id_prompt_id_sample_index"),
        ),
    )


def downgrade() -> None:
    op.drop_table("probe_answers")
    op.drop_index("ix_probes_project", table_name="probes")
    op.drop_table("probes")
