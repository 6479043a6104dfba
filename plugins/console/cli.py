"""`tokone users ...`: console logins made and managed by an operator."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlmodel import Session
from tokone.core.cli.main import config_or_exit, fail, migrated_engine, plugin_config
from tokone.core.domain import audit, users
from tokone.core.domain.errors import AccountError
from tokone.core.domain.groups import known_groups
from tokone.plugins.console.pages import when
from tokone.plugins.console.settings import ConsoleConfig

users_app = typer.Typer(help="Console users (people who sign in).", no_args_is_help=True)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
]


def _settings() -> ConsoleConfig:
    return plugin_config("console") or ConsoleConfig()


def _password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked for twice (not echoed)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users_app.command("create")
def users_create(
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role.")] = False,
    account: Annotated[
        str | None, typer.Option(help="Log in to this existing account (default: a new one).")
    ] = None,
    group: Annotated[str, typer.Option(help="Pricing group of a new account.")] = "default",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a console user (a new account unless --account names an existing one)."""
    config = config_or_exit()
    engine = migrated_engine(config)
    password = _password(password_stdin)
    try:
        user = users.create_user(
            engine,
            email,
            password,
            policy=_settings().password_policy,
            display_name=name,
            role="admin" if admin else "user",
            account=account,
            group=group,
            known_groups=known_groups(engine, config.groups),
            actor="cli",
        )
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {user.role} {user.email} (id {user.id})")


@users_app.command("list")
def users_list() -> None:
    """Every user: id, e-mail, role, status, account, last login."""
    engine = migrated_engine(config_or_exit())
    typer.echo(f"{'ID':>5} {'EMAIL':<32} {'ROLE':<6} {'STATUS':<9} {'ACCOUNT':<24} LAST LOGIN")
    for user, account in users.list_users(engine):
        typer.echo(
            f"{user.id:>5} {user.email:<32} {user.role:<6} {user.status:<9} {account:<24} "
            f"{when(user.last_login_at)}"
        )


def _set_status(email: str, status: str) -> None:
    engine = migrated_engine(config_or_exit())
    try:
        user = users.set_status(engine, email, status)
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{user.email}: {user.status}")


@users_app.command("disable")
def users_disable(email: str) -> None:
    """Stop a user signing in and end their open sessions at once."""
    _set_status(email, "disabled")


@users_app.command("enable")
def users_enable(email: str) -> None:
    """Let a disabled user sign in again."""
    _set_status(email, "active")


@users_app.command("reset-password")
def users_reset_password(email: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password for a user and end all of their sessions."""
    engine = migrated_engine(config_or_exit())
    password = _password(password_stdin)
    try:
        user = users.reset_password(engine, email, password, _settings().password_policy)
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"password of {user.email} changed; their sessions are ended")


def _set_role(email: str, role: str, action: str) -> None:
    engine = migrated_engine(config_or_exit())
    try:
        with Session(engine) as session:
            before = users.get_user(session, email).role
        user = users.set_role(engine, email, role)
    except AccountError as exc:
        raise fail(str(exc)) from None
    audit.record(
        engine, "cli", action, f"user:{user.email}", before={"role": before}, after={"role": role}
    )
    typer.echo(f"{user.email}: {role}")


@users_app.command("promote")
def users_promote(email: str) -> None:
    """Give a user the admin role (the admin console under /manage)."""
    _set_role(email, "admin", "user.promote")


@users_app.command("demote")
def users_demote(email: str) -> None:
    """Take the admin role away from a user."""
    _set_role(email, "user", "user.demote")
