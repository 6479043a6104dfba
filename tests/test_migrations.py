"""Migrations apply (and revert) on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest
import tokone.core.store.tables  # noqa: F401
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel
from tokone.core.store.db import alembic_config, normalise_url, upgrade

from alembic import command

TABLES = {name for name in SQLModel.metadata.tables}


def tables(url: str) -> set[str]:
    engine = create_engine(normalise_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def roundtrip(url: str) -> None:
    upgrade(url)
    assert tables(url) == TABLES
    command.downgrade(alembic_config(url), "base")
    assert tables(url) == set()
    upgrade(url)
    assert tables(url) == TABLES


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgres_upgrade_downgrade_upgrade(postgres_url):
    roundtrip(postgres_url)


def test_models_and_migrations_agree(tmp_path):
    """Autogenerate finds nothing to add: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], diff


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u@h/db"])
def test_postgres_urls_use_psycopg3(url):
    assert normalise_url(url).startswith("postgresql+psycopg://")
