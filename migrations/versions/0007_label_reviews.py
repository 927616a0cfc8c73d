"""label reviews: a reviewer's accept / reject / relabel per label; paused labelers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHOICES = "'a', 'b', 'tie', 'both_bad'"


def upgrade() -> None:
    op.create_table(
        "label_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("preference_id", sa.Integer(), nullable=True),
        sa.Column("ranking_id", sa.Integer(), nullable=True),
        sa.Column("demonstration_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("choice", sa.String(length=32), nullable=True),
        sa.Column("strength", sa.Integer(), nullable=True),
        sa.Column("order", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(CASE WHEN preference_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN ranking_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN demonstration_id IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_label_reviews_one_label"),
        ),
        sa.CheckConstraint(
            "action <> 'relabel' OR choice IS NOT NULL OR \"order\" IS NOT NULL",
            name=op.f("ck_label_reviews_relabel_has_judgment"),
        ),
        sa.CheckConstraint(
            "strength IS NULL OR (strength BETWEEN 1 AND 3)",
            name=op.f("ck_label_reviews_strength_range"),
        ),
        sa.CheckConstraint(
            "action IN ('accept', 'reject', 'relabel')", name=op.f("ck_label_reviews_action")
        ),
        sa.CheckConstraint(f"choice IN ({_CHOICES})", name=op.f("ck_label_reviews_choice")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_label_reviews_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_label_reviews_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["preference_id"],
            ["preferences.id"],
            name=op.f("fk_label_reviews_preference_id_preferences"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ranking_id"],
            ["rankings.id"],
            name=op.f("fk_label_reviews_ranking_id_rankings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["demonstration_id"],
            ["demonstrations.id"],
            name=op.f("fk_label_reviews_demonstration_id_demonstrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["users.id"],
            name=op.f("fk_label_reviews_reviewer_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_reviews")),
    )
    op.create_index("ix_label_reviews_project", "label_reviews", ["project_id", "id"])
    op.create_index("ix_label_reviews_preference", "label_reviews", ["preference_id"])
    op.create_index("ix_label_reviews_ranking", "label_reviews", ["ranking_id"])
    op.create_index("ix_label_reviews_demonstration", "label_reviews", ["demonstration_id"])
    # Adding a column never recreates the table, on SQLite either.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0004 explains: batch mode would recreate `users`.
    op.drop_column("users", "paused_at")
    op.drop_table("label_reviews")
