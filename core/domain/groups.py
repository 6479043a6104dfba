"""Pricing groups: the config's and the database's (which wins on a clash)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import check_multiplier
from tokone.core.store.tables import Group


def list_groups(engine: Engine, config_groups: dict[str, float]) -> list[tuple[str, float, str]]:
    """Every group as (name, multiplier, source); the database wins over the config."""
    merged = {name: (multiplier, "config") for name, multiplier in config_groups.items()}
    with Session(engine) as session:
        for group in session.exec(select(Group)).all():
            merged[group.name] = (group.multiplier, "database")
    return [(name, m, source) for name, (m, source) in sorted(merged.items())]


def create_group(
    engine: Engine, name: str, multiplier: float | str, config_groups: Collection[str]
) -> Group:
    """Define a new pricing group in the database (a name not used yet)."""
    if not name or len(name) > 100:
        raise AccountError("a group name must be 1 to 100 characters")
    value = check_multiplier(multiplier)
    with Session(engine) as session:
        if name in config_groups or session.get(Group, name) is not None:
            raise AccountError(
                f"a group named {name!r} already exists (change it with `groups set`)", 409
            )
        group = Group(name=name, multiplier=value)
        session.add(group)
        session.commit()
        session.refresh(group)
        return group


def set_group(
    engine: Engine, name: str, multiplier: float | str, config_groups: Collection[str]
) -> Group:
    """Change a group's multiplier; a group from the config gets a database row overriding it."""
    value = check_multiplier(multiplier)
    with Session(engine) as session:
        group = session.get(Group, name)
        if group is None:
            if name not in config_groups:
                raise AccountError(f"no group named {name!r} (see `tokone groups list`)", 404)
            group = Group(name=name)
        group.multiplier = value
        session.add(group)
        session.commit()
        session.refresh(group)
        return group


def known_groups(engine: Engine, config_groups: Collection[str]) -> set[str]:
    """Names of every group (config and database)."""
    with Session(engine) as session:
        return set(config_groups) | set(session.exec(select(Group.name)).all())
