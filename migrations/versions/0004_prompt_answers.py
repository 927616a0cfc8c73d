"""prompt answers: a gold final answer per prompt, an answer regex per project

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Adding a column never recreates the table, on SQLite either.
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer", sa.Text(), nullable=True))
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer_pattern", sa.Text(), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite it would recreate the tables, and dropping the old `prompts`
    # or `projects` with foreign keys on (they cannot be turned off inside the migration's
    # transaction) deletes every task and response through ON DELETE CASCADE. SQLite 3.35+
    # drops a plain column in place, as PostgreSQL does.
    op.drop_column("projects", "answer_pattern")
    op.drop_column("prompts", "answer")
