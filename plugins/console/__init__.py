"""The console: a browser UI where API users sign up, make keys, watch usage and top up.

Mounted at ``/`` (dashboard, or the sign-in page), ``/signup``, ``/login``, ``/logout``,
``/keys``, ``/usage`` (and ``/usage.csv``), ``/topup``, ``/prices``, ``/models`` and
``/settings``, and for users with the ``admin`` role the admin console under ``/manage``
(:mod:`tokone.plugins.console.admin_pages`); server-rendered Jinja templates and one
stylesheet, shipped as package data (nothing is loaded from another site). Settings come
from ``[plugins.console]`` (:class:`~tokone.plugins.console.settings.ConsoleConfig`; the
sign-up ones can be overridden in the database from the admin Settings page);
``[plugins] disable = ["console"]`` removes it. Operators manage logins with ``tokone users ...``.

Modules: :mod:`~tokone.plugins.console.pages` (the :class:`Console` service — settings,
templates, sessions, page data, actions — and the router that mounts everything with the
console injected as the ``console`` dependency), the pages by family in
:mod:`~tokone.plugins.console.auth_pages` (sign in, sign up, verify, forgot / reset, sign out),
:mod:`~tokone.plugins.console.key_pages` (the key list, create, actions, one key's page and
limits) and :mod:`~tokone.plugins.console.account_pages` (dashboard, usage and its CSV, top up,
pricing, models, settings); the admin console in
:mod:`~tokone.plugins.console.admin_pages` (its layout, data and router), its pages in
:mod:`~tokone.plugins.console.admin_account_pages` (accounts, users, keys),
:mod:`~tokone.plugins.console.admin_catalog_pages` (groups, channels, codes) and
:mod:`~tokone.plugins.console.admin_site_pages` (overview, usage, audit log, settings), and
its operations in :mod:`~tokone.plugins.console.admin_ops`; SQL for the pages in
:mod:`~tokone.plugins.console.queries`, charts in :mod:`~tokone.plugins.console.charts`,
limit and alert forms in :mod:`~tokone.plugins.console.limit_forms`, mail in
:mod:`~tokone.plugins.console.mail`, ``tokone users`` in :mod:`~tokone.plugins.console.cli`.

Top-up methods: a code from ``tokone codes create`` is redeemed on the Top up page; a payment
plugin adds its own method there through the console's ``console_topup_methods`` hook
(:mod:`tokone.plugins.console.hookspecs`).
"""

from __future__ import annotations

from typing import Any

import typer
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.plugins.console.settings import ConsoleConfig

NAME = "console"


@hookimpl
def plugin_config_schema() -> type[ConsoleConfig]:
    """The `[plugins.console]` table: sign-up policy, credit, sessions, throttling."""
    return ConsoleConfig


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """Mount the console pages (one router, CSRF-protected)."""
    from tokone.plugins.console.pages import Console

    return [Console(gateway).router()]


@hookimpl
def register_commands(app: typer.Typer) -> None:
    """`tokone users ...`: create, list, disable, enable, promote, demote and reset the
    password of users."""
    from tokone.plugins.console.cli import users_app

    app.add_typer(users_app, name="users")
