"""billing indexes: ledger entries by account and kind, usage records by model and time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:00:00.000000

`tokone accounts check` sums an account's captures (account_id, kind) and `tokone usage
--model` filters usage records by model over a time range.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_account_kind", ["account_id", "kind"], unique=False)
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_model_time", ["model", "created_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_model_time")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_account_kind")
