"""Alembic environment: the URL comes from the caller (tokone db upgrade) or TOKONE_DATABASE_URL."""

from __future__ import annotations

import os

import tokone.core.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

from alembic import context

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("TOKONE_DATABASE_URL", "")
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade --sql`)."""
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations against a live connection."""
    connectable = engine_from_config(
        {"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
