"""spend limits, budgets, IP allow-lists and alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:05:00.000000

Per-key spend limits and IP allow-lists (`api_keys`), account budgets and alert settings
(`accounts`), the spend counters and their leases (`spend_counters`, `spend_holds`), and
the alert state and deliveries (`alert_states`, `alert_deliveries`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("spend_limit", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("period_limit", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("limit_period", TEXT(), nullable=True))
        batch.add_column(sa.Column("limit_timezone", TEXT(), nullable=False, server_default=""))
        batch.add_column(sa.Column("allowed_ips", TEXT(), nullable=False, server_default=""))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("budget", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("budget_period", TEXT(), nullable=True))
        batch.add_column(sa.Column("alert_threshold", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("alert_webhook", TEXT(), nullable=False, server_default=""))
        batch.add_column(sa.Column("alert_email", TEXT(), nullable=False, server_default=""))
    op.create_table(
        "spend_counters",
        sa.Column("scope", TEXT(), nullable=False),
        sa.Column("period", TEXT(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period"),
    )
    op.create_table(
        "spend_holds",
        sa.Column("lease_id", TEXT(), nullable=False),
        sa.Column("scope", TEXT(), nullable=False),
        sa.Column("period", TEXT(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lease_id"),
    )
    op.create_index("ix_spend_holds_scope_period", "spend_holds", ["scope", "period"])
    op.create_index("ix_spend_holds_created_at", "spend_holds", ["created_at"])
    op.create_table(
        "alert_states",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("below", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", TEXT(), nullable=False),
        sa.Column("dedupe", TEXT(), nullable=False),
        sa.Column("channel", TEXT(), nullable=False),
        sa.Column("target", TEXT(), nullable=False),
        sa.Column("payload", TEXT(), nullable=False),
        sa.Column("status", TEXT(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", TEXT(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe", "channel", name="uq_alert_dedupe_channel"),
    )
    op.create_index("ix_alert_deliveries_account_id", "alert_deliveries", ["account_id"])
    op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("alert_deliveries")
    op.drop_table("alert_states")
    op.drop_table("spend_holds")
    op.drop_table("spend_counters")
    with op.batch_alter_table("accounts") as batch:
        for name in ("alert_email", "alert_webhook", "alert_threshold", "budget_period", "budget"):
            batch.drop_column(name)
    with op.batch_alter_table("api_keys") as batch:
        for name in (
            "allowed_ips",
            "limit_timezone",
            "limit_period",
            "period_limit",
            "spend_limit",
        ):
            batch.drop_column(name)
