"""usage records say whether the call was streamed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:50:00.000000

A `stream` flag on `usage_records` (the console's Usage table and CSV show it); the rows
written before it are marked not streamed.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("stream", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("stream")
