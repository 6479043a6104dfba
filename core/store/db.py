"""Database engine and migrations.

SQLite (the default) runs in WAL mode so the server and the CLI can use the file at once;
PostgreSQL URLs (``postgresql://…``) use psycopg 3. Migrations are alembic's, shipped inside
the package as ``tokone.migrations`` so they work from a wheel as well as a checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from alembic import command


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for bare `postgresql://` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """Create an engine with sane pooling and, for SQLite, WAL + a busy timeout."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrations_dir() -> Path:
    """The directory holding alembic's env.py and versions/."""
    import tokone.migrations

    for entry in tokone.migrations.__path__:
        if (Path(entry) / "env.py").exists():
            return Path(entry)
    raise RuntimeError("tokone.migrations has no env.py; the installation is broken")


def alembic_config(url: str) -> AlembicConfig:
    """An alembic Config pointing at the packaged migrations and `url`."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)
