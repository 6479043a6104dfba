"""audit log, settings, code batches, usage index by channel

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:10:00.000000

The operators' audit log (`audit_log`), settings stored in the database (`settings`), and
an index on usage records by channel and time for the admin console's channel filter, and
the batch name, expiry and disabling of redemption codes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", TEXT(), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("action", TEXT(), nullable=False),
        sa.Column("target", TEXT(), nullable=False),
        sa.Column("before", TEXT(), nullable=False),
        sa.Column("after", TEXT(), nullable=False),
        sa.Column("ip", TEXT(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_target_time", "audit_log", ["target", "created_at"])
    op.create_table(
        "settings",
        sa.Column("name", TEXT(), nullable=False),
        sa.Column("value", TEXT(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", TEXT(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_usage_provider_time", "usage_records", ["provider", "created_at"])
    with op.batch_alter_table("redemption_codes") as batch:
        batch.add_column(sa.Column("batch", TEXT(), nullable=False, server_default=""))
        batch.add_column(sa.Column("expires_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("disabled_at", sa.Float(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("redemption_codes") as batch:
        for name in ("disabled_at", "expires_at", "batch"):
            batch.drop_column(name)
    op.drop_index("ix_usage_provider_time", table_name="usage_records")
    op.drop_table("settings")
    op.drop_table("audit_log")
