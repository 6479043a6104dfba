"""Loading and validating `tokone.toml`.

The file is found at `--config PATH`, else `$TOKONE_CONFIG`, else `./tokone.toml`. String
values may contain `${ENV_VAR}` (or `${ENV_VAR:-default}`), substituted before validation,
so secrets stay in the environment. Validation is done by msgspec; a bad file raises
:class:`ConfigError` with one message naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

DEFAULT_DATABASE_URL = "sqlite:///tokone.db"
DEFAULT_MAX_CONNECTIONS = 10_000
"""Per-channel upstream connection cap unless `max_connections` says otherwise."""
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message says where and why."""


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[server]`: where to listen and how keys look."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    key_prefix: str = "sk-"
    secret: str = "tokone-dev-secret-change-me"
    """HMAC secret keys are hashed with. Change it (from `${ENV}`) before issuing real keys."""
    max_body_bytes: int = 16 * 1024 * 1024
    log_level: str = "info"
    admin_keys: list[str] = []
    """Admin API credentials (Bearer tokens), distinct from user keys; usually `${ENV}`."""


class DatabaseConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[database]`: an SQLAlchemy URL (SQLite by default, PostgreSQL for several instances)."""

    url: str = DEFAULT_DATABASE_URL


class PluginsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins]`: extra plugin modules, built-ins to leave out, and each plugin's settings.

    Besides `modules` and `disable`, every `[plugins.NAME]` table holds the settings of the
    plugin registered as NAME. The loader collects them in :attr:`tables` as written; they are
    validated against the schema the plugin declares (its `plugin_config_schema` hook) when
    the plugins are loaded, by :func:`parse_plugin_config`.
    """

    modules: list[str] = []
    """Dotted module paths to load as plugins, besides the built-ins and entry points."""
    disable: list[str] = []
    """Names of plugins (built-in or entry point) not to load."""
    tables: dict[str, dict[str, Any]] = {}
    """The `[plugins.NAME]` tables by plugin name (set by the loader, not by a `tables` key:
    `[plugins.tables]` would be the table of a plugin named `tables`)."""


PLUGINS_KEYS = ("modules", "disable")
"""The keys of `[plugins]` itself; any other key must be a `[plugins.NAME]` table."""


DEFAULT_REFRESH_SECONDS = 1.0


class RefreshSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins.NAME]` of a plugin that keeps a database table in memory and re-reads it.

    The schema of `key_auth` (keys), `token_pricing` (groups) and `health` (manual channel
    switches): `refresh_seconds` is how old this process's copy may get, so how soon a
    change made elsewhere (another process, the CLI) takes effect here.
    """

    refresh_seconds: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_REFRESH_SECONDS
    """Seconds between two reads of the table (default 1)."""


def refresh_seconds(settings: object) -> float:
    """The interval in a plugin's `RefreshSettings` (the default for anything else)."""
    if isinstance(settings, RefreshSettings):
        return settings.refresh_seconds
    return DEFAULT_REFRESH_SECONDS


class TimeoutsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Per-provider timeouts in seconds."""

    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 60.0


class ProviderConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[[providers]]`: one upstream channel."""

    name: str
    adapter: str
    """Wire format: `openai`, `anthropic`, `gemini` or `mock` (or one a plugin registers)."""
    models: list[str]
    """Public model names served here; a trailing `*` matches a prefix."""
    base_url: str = ""
    api_key: str = ""
    model_map: dict[str, str] = {}
    """Public model name -> upstream model name."""
    priority: int = 0
    weight: int = 1
    enabled: bool = True
    timeouts: TimeoutsConfig = msgspec.field(default_factory=TimeoutsConfig)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Connections this channel may have open to its upstream at once (0 = no cap). A call
    that finds them all busy waits for one, within `timeouts.first_byte`."""
    keepalive_expiry: float = 15.0
    """Seconds an idle pooled connection is kept open for reuse (0 = close after each call)."""


class ModelPrice(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[prices."model"]`: prices in currency units per million tokens (or per request)."""

    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    per_request: float = 0.0


class GroupConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[groups.NAME]`: a price multiplier shared by the accounts in the group."""

    multiplier: float = 1.0


class BillingConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[billing]`: how holds are sized and how unknown prices are treated."""

    default_max_output_tokens: int = 4096
    """Output cap assumed for the hold when the request sets none."""
    hold_timeout_seconds: int = 600
    """Holds older than this (left by a crashed process) are released."""
    service_tiers: dict[str, float] = msgspec.field(
        default_factory=lambda: {"flex": 0.5, "default": 1.0, "priority": 2.0}
    )
    allow_unpriced: bool = False
    """Serve models with no `[prices]` entry for free (default: refuse them with 403, so a
    model added to a provider without a price is never given away by mistake)."""


class RoutingConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[routing]`: the failover budget and each channel's circuit breaker.

    A channel (a `[[providers]]` entry) that fails `failure_threshold` times in a row
    (connect error, timeout, 429, 5xx, or a stream broken mid-way) is skipped for
    `cooldown_seconds`; then one request is let through as a probe. A successful probe
    closes the breaker; a failed one opens it again for twice as long, up to
    `max_cooldown_seconds`. Breaker state is per process; the manual switch
    (`tokone providers disable`) is in the database and seen by every process within a second.
    """

    max_attempts: int = 3
    """Candidates tried at most for one request (the first try included)."""
    failure_threshold: int = 3
    """Consecutive failures that open a channel's breaker."""
    cooldown_seconds: float = 30.0
    """How long a channel is skipped after its breaker opens the first time."""
    max_cooldown_seconds: float = 600.0
    """Cap of the cooldown, which doubles each time a probe fails."""


class LimitSet(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Rate limits; a field left out inherits, 0 means unlimited.

    `rpm`/`tpm` count per key, `account_*` per account (all its keys), `group_*` per group
    (all its accounts together). Tokens are the actual input + output tokens of finished
    calls; a call is refused while the minute's count is already at the limit.
    """

    rpm: int | None = None
    tpm: int | None = None
    account_rpm: int | None = None
    account_tpm: int | None = None
    group_rpm: int | None = None
    group_tpm: int | None = None
    max_concurrent: int | None = None
    """Requests one key may have in flight at once."""


KEY_LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent")


class RateLimitsConfig(LimitSet, forbid_unknown_fields=True, kw_only=True):
    """`[rate_limits]`: the defaults, `[rate_limits.groups.NAME]` and `[rate_limits.keys."ID"]`.

    A key's limits are the defaults, overlaid by its account's group, overlaid by its own
    entry (keyed by the key id `tokone keys list` shows; only `rpm`, `tpm`, `max_concurrent`).
    """

    storage: str = "memory://"
    """`memory://` (one process) or `redis://host:port/db` (shared by every process)."""
    strategy: str = "moving-window"
    """For request counts: `moving-window` (exact) or `fixed-window` (cheaper). Token counts
    always use a fixed one-minute window, which can record a call that overshoots."""
    key_prefix: str = "tokone"
    """Prefix of every storage key (Redis)."""
    groups: dict[str, LimitSet] = {}
    keys: dict[str, LimitSet] = {}


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole `tokone.toml`."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    providers: list[ProviderConfig] = []
    prices: dict[str, ModelPrice] = {}
    groups: dict[str, GroupConfig] = msgspec.field(
        default_factory=lambda: {"default": GroupConfig()}
    )
    billing: BillingConfig = msgspec.field(default_factory=BillingConfig)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    rate_limits: RateLimitsConfig = msgspec.field(default_factory=RateLimitsConfig)
    path: str = ""
    """Where this config was read from (set by the loader, not by the file)."""


def find_config_path(explicit: str | None = None) -> Path | None:
    """Return the config path: explicit, else `$TOKONE_CONFIG`, else `./tokone.toml` if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TOKONE_CONFIG")
    if env:
        return Path(env)
    default = Path("tokone.toml")
    return default if default.exists() else None


def substitute_env(value: Any, where: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a parsed TOML tree."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")

        return _ENV_PATTERN.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML tree into a :class:`Config`, or raise :class:`ConfigError`."""
    try:
        data = substitute_env(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if isinstance(data.get("plugins"), dict):
        data = {**data, "plugins": _split_plugin_tables(data["plugins"], source)}
    for section, entry_type in (("prices", ModelPrice), ("groups", GroupConfig)):
        entries = data.get(section)
        if isinstance(entries, dict):
            for name, entry in entries.items():
                try:
                    msgspec.convert(entry, entry_type, strict=False)
                except msgspec.ValidationError as exc:
                    raise ConfigError(f"{source}: {_explain(exc, f'{section}.{name}')}") from None
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc)}") from None
    _check_semantics(config, source)
    config.path = source
    if (env_url := os.environ.get("TOKONE_DATABASE_URL")) is not None:
        config.database.url = env_url
    return config


def load_config(explicit: str | None = None) -> Config:
    """Find, read and validate the config; with no file at all, the built-in defaults."""
    path = find_config_path(explicit)
    if path is None:
        return parse_config({}, "<defaults>")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(data, str(path))
    _resolve_sqlite_path(config, path)
    return config


def _split_plugin_tables(plugins: dict[str, Any], source: str) -> dict[str, Any]:
    """`[plugins]` as written -> `modules`, `disable` and `tables` (every `[plugins.NAME]`)."""
    kept: dict[str, Any] = {key: plugins[key] for key in PLUGINS_KEYS if key in plugins}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in plugins.items():
        if key in PLUGINS_KEYS:
            continue
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: key plugins.{key}: unknown key (expected modules, disable or a "
                f"[plugins.NAME] table of a plugin's settings)"
            )
        tables[key] = value
    kept["tables"] = tables
    return kept


S = TypeVar("S", bound=msgspec.Struct)


def parse_plugin_config(config: Config, name: str, schema: type[S]) -> S:
    """Validate the `[plugins.NAME]` table (an empty one if the file has none) into `schema`.

    Raises :class:`ConfigError` in the file's one-line style, naming the table and the key:
    `tokone.toml: key plugins.NAME.KEY: unknown key (...)` for a key the schema does not
    declare (checked here at the top level even if the schema does not forbid unknown
    fields), `... expected int, got str` for a wrong type, `... required but missing` when
    the schema has a required field the table leaves out.
    """
    table = config.plugins.tables.get(name, {})
    where = f"plugins.{name}"
    known = {field.encode_name for field in msgspec.structs.fields(schema)}
    for key in table:
        if key not in known:
            expected = ", ".join(sorted(known)) or "no settings"
            raise ConfigError(
                f"{config.path}: key {where}.{key}: unknown key (plugin {name!r} takes {expected})"
            )
    try:
        return msgspec.convert(table, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{config.path}: {_explain(exc, where)}") from None


def _explain(exc: msgspec.ValidationError, base: str = "") -> str:
    """Turn msgspec's `Expected X, got Y - at $.a.b[0]` into `key a.b[0]: expected X, got Y`."""
    text = str(exc)
    message, _, where = text.partition(" - at ")
    key = where.strip("`").removeprefix("$").lstrip(".")
    key = ".".join(part for part in (base, key) if part) or "(top level)"
    if message.startswith("Object contains unknown field"):
        field = message.split("`")[1]
        key = f"{key}.{field}" if key != "(top level)" else field
        return f"key {key}: unknown key (check the spelling against the documented sections)"
    if message.startswith("Object missing required field"):
        field = message.split("`")[1]
        key = f"{key}.{field}" if key != "(top level)" else field
        return f"key {key}: required but missing"
    return f"key {key}: {message[0].lower()}{message[1:]}"


def _check_semantics(config: Config, source: str) -> None:
    """Checks a type system cannot express: unique names, known references, sane numbers."""
    names: set[str] = set()
    for i, provider in enumerate(config.providers):
        if provider.name in names:
            raise ConfigError(f"{source}: key providers[{i}].name: duplicate provider name")
        names.add(provider.name)
        if provider.weight < 0:
            raise ConfigError(f"{source}: key providers[{i}].weight: expected >= 0")
        if provider.max_connections < 0:
            raise ConfigError(f"{source}: key providers[{i}].max_connections: expected >= 0")
        if provider.keepalive_expiry < 0:
            raise ConfigError(f"{source}: key providers[{i}].keepalive_expiry: expected >= 0")
        if provider.adapter != "mock" and not provider.base_url:
            raise ConfigError(f"{source}: key providers[{i}].base_url: required for this adapter")
    for name, group in config.groups.items():
        if group.multiplier < 0:
            raise ConfigError(f"{source}: key groups.{name}.multiplier: expected >= 0")
    if "default" not in config.groups:
        config.groups["default"] = GroupConfig()
    for model, price in config.prices.items():
        for field in ("input", "output", "per_request"):
            if getattr(price, field) < 0:
                raise ConfigError(f"{source}: key prices.{model}.{field}: expected >= 0")
    if not config.server.key_prefix:
        raise ConfigError(f"{source}: key server.key_prefix: expected a non-empty string")
    _check_routing(config.routing, source)
    _check_rate_limits(config.rate_limits, source)


def _check_routing(routing: RoutingConfig, source: str) -> None:
    """`[routing]`: a positive budget and threshold, a cooldown no longer than its cap."""
    for field in ("max_attempts", "failure_threshold"):
        if getattr(routing, field) < 1:
            raise ConfigError(f"{source}: key routing.{field}: expected >= 1")
    if routing.cooldown_seconds <= 0:
        raise ConfigError(f"{source}: key routing.cooldown_seconds: expected > 0")
    if routing.max_cooldown_seconds < routing.cooldown_seconds:
        raise ConfigError(
            f"{source}: key routing.max_cooldown_seconds: expected >= routing.cooldown_seconds"
        )


def _check_rate_limits(limits: RateLimitsConfig, source: str) -> None:
    """`[rate_limits]`: a known storage and strategy, no negative limits, key-only overrides."""
    if not limits.storage.startswith(("memory://", "redis://", "rediss://")):
        raise ConfigError(
            f"{source}: key rate_limits.storage: expected 'memory://' or a 'redis://' URL"
        )
    if limits.strategy not in ("moving-window", "fixed-window"):
        raise ConfigError(
            f"{source}: key rate_limits.strategy: expected 'moving-window' or 'fixed-window'"
        )
    sections: dict[str, LimitSet] = {"rate_limits": limits}
    sections.update({f"rate_limits.groups.{n}": s for n, s in limits.groups.items()})
    sections.update({f'rate_limits.keys."{n}"': s for n, s in limits.keys.items()})
    for where, section in sections.items():
        for field in LimitSet.__struct_fields__:
            value = getattr(section, field)
            if value is not None and value < 0:
                raise ConfigError(f"{source}: key {where}.{field}: expected >= 0")
    for key_id, section in limits.keys.items():
        where = f'rate_limits.keys."{key_id}"'
        if not key_id.isdigit():
            raise ConfigError(f"{source}: key {where}: expected a key id (a number)")
        for field in LimitSet.__struct_fields__:
            if field not in KEY_LIMIT_FIELDS and getattr(section, field) is not None:
                raise ConfigError(
                    f"{source}: key {where}.{field}: a key may override only "
                    f"{', '.join(KEY_LIMIT_FIELDS)}"
                )


def _resolve_sqlite_path(config: Config, path: Path) -> None:
    """Relative SQLite paths are relative to the config file's directory, not the cwd."""
    url = config.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        relative = url[len(prefix) :]
        config.database.url = prefix + str((path.parent / relative).resolve())
