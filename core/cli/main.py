"""The `tokone` command line: serve, migrate, and manage accounts, keys and plugins.

Plugins add commands through the `register_commands` hook: a name that is not a built-in
command is looked up among the commands of the plugins the config (``--config``,
``$TOKONE_CONFIG`` or ``./tokone.toml``) loads, and ``tokone --help`` lists them too.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session, select
from tokone.core.cli.billing import register as register_billing
from tokone.core.cli.providers import providers_app
from tokone.core.config import Config, ConfigError, load_config
from tokone.core.domain import audit
from tokone.core.domain.accounts import account_summary, create_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.groups import known_groups
from tokone.core.domain.key_ops import create_key, list_keys, rotate_key, set_key_status
from tokone.core.domain.ledger_entries import add_entry
from tokone.core.domain.money import format_amount, parse_amount
from tokone.core.domain.reconcile import reconcile
from tokone.core.domain.spend_limits import (
    check_cidrs,
    check_period,
    key_limit_info,
    limit_summary,
    set_key_limits,
)
from tokone.core.store.db import (
    SchemaStatus,
    known_revisions,
    make_engine,
    normalise_url,
    schema_status,
    upgrade,
)
from tokone.core.store.tables import Account
from typer.core import TyperGroup

if TYPE_CHECKING:
    import pluggy
    from tokone.core.plugins import LoadedPlugin
    from typer._click import Command, Context  # typer's own click, the types TyperGroup uses

_PLUGINS_META = "tokone.plugins"
_COMMANDS_META = "tokone.plugin_commands"


class PluginCommandGroup(TyperGroup):
    """The top-level `tokone` group: the built-in commands, then those plugins register.

    Plugins are loaded (from the config the command line names) only when a name is not a
    built-in command, or to list commands for ``--help``, so a built-in command never pays
    for importing them and a built-in name always means the built-in command.
    """

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """A built-in command, else a plugin's; a bad config ends the run with its one line."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return plugin_commands(ctx, strict=not ctx.resilient_parsing).get(cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        """Built-in command names, then plugins' (none when the config cannot be loaded)."""
        names = super().list_commands(ctx)
        return names + [n for n in plugin_commands(ctx, strict=False) if n not in names]


app = typer.Typer(
    cls=PluginCommandGroup,
    help="TokOne: one key for OpenAI-, Anthropic- and Gemini-compatible APIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts and their prepaid balances.", no_args_is_help=True)
keys_app = typer.Typer(help="User API keys (shown once, stored hashed).", no_args_is_help=True)
plugins_app = typer.Typer(help="Loaded plugins.", no_args_is_help=True)
config_app = typer.Typer(help="The tokone.toml file.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (accounts_app, "accounts"),
    (keys_app, "keys"),
    (plugins_app, "plugins"),
    (config_app, "config"),
):
    app.add_typer(sub, name=name)
app.add_typer(providers_app, name="providers")

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Path to tokone.toml (default: $TOKONE_CONFIG or ./tokone.toml).",
        is_eager=True,  # processed before a later --help, which lists the plugin commands
    ),
]
_state: dict[str, Any] = {"config": None, "meta": {}}
"""This invocation's `--config` and its context's shared `meta` (set by the callback)."""


@app.callback()
def main(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Global options."""
    _state["config"] = config
    _state["meta"] = ctx.meta


def fail(message: str) -> typer.Exit:
    """Print `message` to stderr and return an Exit with status 1 (to raise)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def config_or_exit() -> Config:
    """Load the config or exit with its one-line error."""
    try:
        return load_config(_state["config"])
    except ConfigError as exc:
        raise fail(str(exc)) from None


def loaded_plugins(
    ctx: Context | None = None,
) -> tuple[Config, pluggy.PluginManager, list[LoadedPlugin]]:
    """The config and plugins of this invocation, loaded once and kept in its context.

    The config is the one ``--config`` names (read from the parsed command line when `ctx`
    is given, so this works before the group's callback has run), else ``$TOKONE_CONFIG``
    or ./tokone.toml. Raises :class:`ConfigError` for a bad file or `[plugins.NAME]` table.
    """
    from tokone.core.plugins import make_plugin_manager

    meta: dict[str, Any] = ctx.meta if ctx is not None else _state["meta"]
    if _PLUGINS_META not in meta:
        path = ctx.find_root().params.get("config") if ctx is not None else _state["config"]
        config = load_config(path)
        pm, loaded = make_plugin_manager(config)
        meta[_PLUGINS_META] = (config, pm, loaded)
    result: tuple[Config, pluggy.PluginManager, list[LoadedPlugin]] = meta[_PLUGINS_META]
    return result


def plugin_commands(ctx: Context, strict: bool = True) -> dict[str, Command]:
    """The commands the loaded plugins add through `register_commands`, by name.

    `strict`: a config that cannot be loaded ends the run with its one-line error (when a
    plugin command is asked for); otherwise it means no plugin commands (for ``--help``).
    """
    if _COMMANDS_META not in ctx.meta:
        try:
            _config, pm, _loaded = loaded_plugins(ctx)
        except ConfigError as exc:
            if strict:
                raise fail(str(exc)) from None
            return {}
        extra = typer.Typer(rich_markup_mode=None)
        pm.hook.register_commands(app=extra)
        group = typer.main.get_group(extra)
        ctx.meta[_COMMANDS_META] = dict(group.commands)
    commands: dict[str, Command] = ctx.meta[_COMMANDS_META]
    return commands


def plugin_config(name: str) -> Any:
    """The validated `[plugins.NAME]` settings of plugin `name`, for a plugin's CLI command.

    The same object ``gateway.plugin_config(name)`` gives the server: an instance of the
    Struct the plugin's `plugin_config_schema` returns, or None for a plugin that declares
    none or is not loaded. A bad config exits with its one-line error.
    """
    try:
        _config, _pm, loaded = loaded_plugins()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return next((plugin.config for plugin in loaded if plugin.name == name), None)


def migrated_engine(config: Config) -> Engine:
    """An engine on an up-to-date database, checked cheaply (no alembic when it is current).

    A new or older SQLite database is upgraded in place, saying so on stderr; a PostgreSQL
    one that is not current ends the command with a one-line hint to run `tokone db
    upgrade` (instances share it: migrating is a deliberate step there), as does a
    database a newer TokOne migrated.
    """
    url = config.database.url
    engine = make_engine(url)
    status, revision = schema_status(engine)
    if status is SchemaStatus.CURRENT:
        return engine
    _known, head = known_revisions()
    if status is SchemaStatus.AHEAD:
        raise fail(
            f"database: at revision {revision}, which this TokOne does not know "
            f"(newest {head}); was it migrated by a newer version?"
        )
    if url.startswith("sqlite"):
        upgrade(url)
        what = "created" if status is SchemaStatus.EMPTY else f"upgraded from revision {revision}"
        typer.echo(f"database {shown_url(url)}: {what} (now at revision {head})", err=True)
        return engine
    engine.dispose()
    where = "empty" if status is SchemaStatus.EMPTY else f"at revision {revision or 'none'}"
    raise fail(
        f"database {shown_url(url)} is {where}, this TokOne needs revision {head}: "
        "run `tokone db upgrade`"
    )


def shown_url(url: str) -> str:
    """`url` as it may be printed: the password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(normalise_url(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: [server] host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: [server] port).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: [server] workers).")
    ] = None,
) -> None:
    """Run the gateway. An SQLite database is created and upgraded on the way up."""
    import uvicorn
    from tokone.core.plugins import make_plugin_manager

    config = config_or_exit()
    try:
        make_plugin_manager(config)  # plugins import and their [plugins.NAME] tables are valid
    except ConfigError as exc:
        raise fail(str(exc)) from None
    check_database_or_exit(config)
    if config.database.url.startswith("sqlite"):
        migrated_engine(config).dispose()  # alembic only for a new or older database
    if config.path and config.path != "<defaults>":
        os.environ["TOKONE_CONFIG"] = os.path.abspath(config.path)
    host = host or config.server.host
    port = port or config.server.port
    workers = workers or config.server.workers
    typer.echo(
        f"TokOne listening on http://{host}:{port} ({workers} worker(s), config {config.path})",
        err=True,
    )
    uvicorn.run(
        "tokone.core.http.asgi:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the client address is judged by a plugin (`ip_allow`)
        loop="auto",
        http="auto",
    )


def check_database_or_exit(config: Config) -> None:
    """Exit with one line naming the database (password masked) if it cannot be reached.

    `tokone serve` refuses to start without its database rather than serving 503s: the
    line says which URL failed and why, instead of an ASGI start-up traceback.
    """
    from sqlalchemy import text

    url = config.database.url
    shown = shown_url(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise fail(
            f"cannot reach the database at {shown}: {reason[0] if reason else type(exc).__name__}"
        ) from None
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply database migrations (SQLite or PostgreSQL, from [database] url)."""
    config = config_or_exit()
    upgrade(config.database.url, revision)
    typer.echo(f"database at revision {revision}")


@accounts_app.command("create")
def accounts_create(
    name: str, group: Annotated[str, typer.Option(help="Pricing group.")] = "default"
) -> None:
    """Create an account with a zero balance in a group of tokone.toml or the database."""
    config = config_or_exit()
    engine = migrated_engine(config)
    try:
        account = create_account(engine, name, group, known_groups(engine, config.groups))
    except AccountError as exc:
        raise fail(str(exc)) from None
    audit.record(engine, "cli", "account.create", f"account:{name}", after={"group": group})
    typer.echo(f"created account {account.name} (id {account.id}, group {account.group})")


@accounts_app.command("topup")
def accounts_topup(
    name: str,
    amount: Annotated[str, typer.Argument(help="Amount in currency units, e.g. 10 or 2.5.")],
) -> None:
    """Add prepaid balance to an account (a `topup` ledger entry)."""
    config = config_or_exit()
    try:
        micro = parse_amount(amount)
        balance = add_entry(migrated_engine(config), name, "topup", micro, actor="cli")
    except AccountError as exc:
        raise fail(str(exc)) from None
    audit.record(
        migrated_engine(config),
        "cli",
        "account.topup",
        f"account:{name}",
        after={"balance": format_amount(balance), "amount": format_amount(micro)},
    )
    typer.echo(f"{name}: +{format_amount(micro)}, balance {format_amount(balance)}")


@accounts_app.command("show")
def accounts_show(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Balance, group, multiplier override, usage totals and keys of one account."""
    config = config_or_exit()
    try:
        data = account_summary(migrated_engine(config), name)
    except AccountError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    usage, keys = data["usage"], data["keys"]
    override = data["multiplier_override"]
    typer.echo(f"account  {data['name']} (id {data['id']})")
    own = f" (own multiplier {override:g})" if override is not None else ""
    typer.echo(f"group    {data['group']}{own}")
    typer.echo(f"balance  {data['balance']}  (held {format_amount(data['held_micro'])})")
    typer.echo(
        f"usage    {usage['requests']} requests, {usage['input_tokens']} input + "
        f"{usage['output_tokens']} output tokens, cost {usage['cost']}"
    )
    typer.echo("keys" if keys else "keys     none")
    for k in keys:
        typer.echo(f"  {k['id']:>4}  {k['prefix']:<14} {k['status']:<9} {k['name']}")


@accounts_app.command("list")
def accounts_list() -> None:
    """All accounts with their balances."""
    config = config_or_exit()
    with Session(migrated_engine(config)) as session:
        rows = session.exec(select(Account).order_by(Account.name)).all()
    typer.echo(f"{'NAME':<24} {'GROUP':<12} {'BALANCE':>16}")
    for account in rows:
        typer.echo(f"{account.name:<24} {account.group:<12} {format_amount(account.balance):>16}")


@accounts_app.command("check")
def accounts_check(name: str) -> None:
    """Recompute balance, holds and charges from the ledger, holds and usage records."""
    config = config_or_exit()
    try:
        result = reconcile(migrated_engine(config), name)
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"balance {format_amount(result.balance)} (ledger "
        f"{format_amount(result.ledger_balance)}), held {result.held} "
        f"(open holds {result.open_holds}), charged {format_amount(result.captured)} "
        f"(usage records {format_amount(result.usage_cost)}): "
        f"{'OK' if result.ok else 'MISMATCH'}"
    )
    if not result.ok:
        raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Option(help="Account the key bills to.")],
    name: Annotated[str, typer.Option(help="A label for listings.")] = "",
    models: Annotated[
        str, typer.Option(help="Comma-separated models the key may use (default: all).")
    ] = "",
    expires_in: Annotated[float | None, typer.Option(help="Days until the key expires.")] = None,
    spend_limit: Annotated[
        str | None, typer.Option(help="Total spend cap, e.g. 100 (see `tokone limits key`).")
    ] = None,
    period_limit: Annotated[
        str | None, typer.Option(help="Spend cap per --period, e.g. 5.")
    ] = None,
    period: Annotated[str, typer.Option(help="day, week or month (for --period-limit).")] = "day",
    ips: Annotated[
        str, typer.Option(help="Comma-separated CIDR ranges the key may be used from.")
    ] = "",
) -> None:
    """Create a key. It is printed once, alone on the last line; only its hash is stored."""
    config = config_or_exit()
    from tokone.core.domain.keys import KeyHasher

    try:
        # Checked before the key exists, so a bad limit leaves no key behind.
        total = parse_amount(spend_limit) if spend_limit else None
        per_period = parse_amount(period_limit) if period_limit else None
        allowed = check_cidrs([r for r in ips.split(",") if r.strip()])
        check_period(period)
        row, key = create_key(
            migrated_engine(config),
            KeyHasher(config.server.secret),
            config.server.key_prefix,
            account,
            name=name,
            models=[m.strip() for m in models.split(",") if m.strip()],
            expires_in_days=expires_in,
        )
        if total is not None or per_period is not None or allowed:
            assert row.id is not None
            set_key_limits(
                migrated_engine(config),
                row.id,
                total=total,
                per_period=per_period,
                period=period,
                allowed_ips=allowed,
            )
    except AccountError as exc:
        raise fail(str(exc)) from None
    audit.record(
        migrated_engine(config),
        "cli",
        "key.create",
        f"key:{row.id}",
        after={"account": account, "prefix": row.prefix, "name": row.name},
    )
    typer.echo(
        f"created key {row.id} for {account}; store it now, it is not shown again:", err=True
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
) -> None:
    """Keys (id, visible prefix, status, account) — never the keys themselves."""
    config = config_or_exit()
    try:
        rows = list_keys(migrated_engine(config), account)
    except AccountError as exc:
        raise fail(str(exc)) from None
    engine = migrated_engine(config)
    settings = plugin_config("key_limits")
    zone = getattr(settings, "timezone", "UTC")
    typer.echo(
        f"{'ID':>4}  {'PREFIX':<14} {'STATUS':<9} {'ACCOUNT':<16} {'EXPIRES':<20} "
        f"{'SPENT / LIMIT':<30} NAME"
    )
    for key, account_name in rows:
        expires = (
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.expires_at)) if key.expires_at else "-"
        )
        spend = limit_summary(key_limit_info(engine, key, zone))
        typer.echo(
            f"{key.id:>4}  {key.prefix:<14} {key.status:<9} {account_name:<16} {expires:<20} "
            f"{spend:<30} {key.name}"
        )


def _set_status(key_id: int, status: str) -> None:
    config = config_or_exit()
    try:
        set_key_status(migrated_engine(config), key_id, status)
    except AccountError as exc:
        raise fail(str(exc)) from None
    action = {"disabled": "disable", "enabled": "enable", "revoked": "revoke"}[status]
    audit.record(
        migrated_engine(config), "cli", f"key.{action}", f"key:{key_id}", after={"status": status}
    )
    typer.echo(f"key {key_id} {status}")


@keys_app.command("disable")
def keys_disable(key_id: int) -> None:
    """Stop a key working (reversible with `enable`)."""
    _set_status(key_id, "disabled")


@keys_app.command("enable")
def keys_enable(key_id: int) -> None:
    """Let a disabled key work again."""
    _set_status(key_id, "enabled")


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Stop a key working for good."""
    _set_status(key_id, "revoked")


@keys_app.command("rotate")
def keys_rotate(key_id: int) -> None:
    """Replace a key's secret; prints the new key on the last line; the old one stops at once."""
    config = config_or_exit()
    from tokone.core.domain.keys import KeyHasher

    try:
        _row, key = rotate_key(
            migrated_engine(config),
            KeyHasher(config.server.secret),
            config.server.key_prefix,
            key_id,
        )
    except AccountError as exc:
        raise fail(str(exc)) from None
    audit.record(migrated_engine(config), "cli", "key.rotate", f"key:{key_id}", after={})
    typer.echo(f"rotated key {key_id}; the old key no longer works. New key:", err=True)
    typer.echo(key)


@plugins_app.command("list")
def plugins_list() -> None:
    """The plugins this config loads, where each comes from, and the hooks it implements."""
    from tokone.core.plugins import make_plugin_manager

    config = config_or_exit()
    try:
        pm, loaded = make_plugin_manager(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{'NAME':<16} {'SOURCE':<12} {'MODULE':<34} HOOKS")
    for plugin in loaded:
        hooks = sorted(h.name for h in pm.get_hookcallers(pm.get_plugin(plugin.name)) or [])
        typer.echo(f"{plugin.name:<16} {plugin.source:<12} {plugin.module:<34} {', '.join(hooks)}")


@config_app.command("check")
def config_check() -> None:
    """Validate tokone.toml (and that every provider's adapter exists); exit 1 if it is bad."""
    from tokone.core.plugins import make_plugin_manager

    config = config_or_exit()
    try:
        pm, _ = make_plugin_manager(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    adapters: dict[str, object] = {}
    for found in pm.hook.register_providers():
        adapters.update(found or {})
    for i, provider in enumerate(config.providers):
        if provider.adapter not in adapters:
            raise fail(
                f"{config.path}: key providers[{i}].adapter: unknown adapter "
                f"{provider.adapter!r} (expected one of: {', '.join(sorted(adapters))})"
            )
    typer.echo(
        f"{config.path}: OK ({len(config.providers)} providers, {len(config.prices)} "
        f"priced models, database {config.database.url.split('://')[0]})"
    )


register_billing(app, accounts_app)  # groups, codes, usage, accounts override|adjust|refund


def run() -> None:
    """The `tokone` console script: the CLI, with database trouble told in one line."""
    try:
        app()
    except (ProgrammingError, OperationalError) as exc:
        hint = "is the database up, and migrated? run `tokone db upgrade`"
        first_line = (str(exc.orig).strip().splitlines() or ["unreachable"])[0]
        typer.secho(f"error: database: {first_line} ({hint})", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    run()
