"""Database engine and migrations.

SQLite (the default) runs in WAL mode so the server and the CLI can use the file at once;
PostgreSQL URLs (``postgresql://…``) use psycopg 3. Migrations are alembic's, shipped inside
the package as ``tokone.migrations`` so they work from a wheel as well as a checkout.

Whether a database needs migrating is answered without alembic (:func:`schema_status`: one
``SELECT`` of ``alembic_version`` against the newest revision read from the migration
files), so a CLI command on an up-to-date database neither imports nor runs it; alembic is
loaded only to actually upgrade.
"""

from __future__ import annotations

import ast
import enum
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


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
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (default: the newest)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


@functools.cache
def known_revisions() -> tuple[frozenset[str], str]:
    """Every revision the packaged migrations define, and the newest (the one head).

    Read from the `revision` / `down_revision` assignments of the files in versions/
    (parsed, not imported: about 20 ms, once per process); alembic's own view is the same
    (tests/test_cli.py checks it).
    """
    revisions: dict[str, str | None] = {}
    for path in sorted((migrations_dir() / "versions").glob("*.py")):
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target: ast.expr
            if isinstance(node, ast.AnnAssign):
                target = node.target
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            else:
                continue
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                values[target.id] = node.value.value
        if isinstance(values.get("revision"), str):
            revisions[values["revision"]] = values.get("down_revision")
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        raise RuntimeError(f"tokone.migrations has {len(heads)} heads, expected one")
    return frozenset(revisions), heads.pop()


class SchemaStatus(enum.Enum):
    """How a database's schema compares with this TokOne's migrations."""

    CURRENT = "current"
    """At the newest revision."""
    EMPTY = "empty"
    """No tables at all: a new database."""
    BEHIND = "behind"
    """At an older revision (or tables without a revision): `tokone db upgrade` brings it up."""
    AHEAD = "ahead"
    """At a revision these migrations do not know: a newer TokOne migrated it."""


def schema_revision(engine: Engine) -> str | None:
    """The revision stored in `alembic_version`, or None when there is none."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        try:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None
    return str(found) if found is not None else None


def schema_status(engine: Engine) -> tuple[SchemaStatus, str | None]:
    """The database's schema status and its revision, without importing alembic.

    Raises SQLAlchemy's errors when the database cannot be reached.
    """
    revision = schema_revision(engine)
    known, head = known_revisions()
    if revision == head:
        return SchemaStatus.CURRENT, revision
    if revision is None:
        with engine.connect() as connection:
            empty = not inspect(connection).get_table_names()
        return (SchemaStatus.EMPTY if empty else SchemaStatus.BEHIND), None
    return (SchemaStatus.BEHIND if revision in known else SchemaStatus.AHEAD), revision
