"""question drafts: questions a model drafted from a document, for people to review

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(column: str, table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_question_drafts_{column}_{table}"),
        ondelete=ondelete,
    )  # fmt: skip


def upgrade() -> None:
    # One new table only: nothing existing is altered (on SQLite nothing is recreated).
    op.create_table(
        "question_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("document", sa.String(length=255), nullable=False),
        sa.Column("passage_index", sa.Integer(), nullable=False),
        sa.Column("passage", sa.Text(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prompt_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("passage_index >= 0", name=op.f("ck_question_drafts_passage_index_min")),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected')", name=op.f("ck_question_drafts_status")
        ),
        _fk("project_id", "projects", "CASCADE"),
        _fk("checkpoint_id", "checkpoints", "SET NULL"),
        _fk("created_by", "users", "SET NULL"),
        _fk("reviewed_by", "users", "SET NULL"),
        _fk("prompt_id", "prompts", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_question_drafts")),
        sa.UniqueConstraint(
            "project_id", "content_hash", name=op.f("uq_question_drafts_project_id_content_hash")
        ),
    )
    op.create_index("ix_question_drafts_review", "question_drafts", ["project_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_question_drafts_review", table_name="question_drafts")
    op.drop_table("question_drafts")
