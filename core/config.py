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
from typing import Any

import msgspec

DEFAULT_DATABASE_URL = "sqlite:///tokone.db"
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
    """`[plugins]`: extra plugin modules and built-ins to leave out."""

    modules: list[str] = []
    """Dotted module paths to load as plugins, besides the built-ins and entry points."""
    disable: list[str] = []
    """Names of plugins (built-in or entry point) not to load."""


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


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole `tokone.toml`."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    plugins: PluginsConfig = msgspec.field(default_factory=PluginsConfig)
    providers: list[ProviderConfig] = []
    prices: dict[str, ModelPrice] = {}
    groups: dict[str, GroupConfig] = msgspec.field(default_factory=lambda: {"default": GroupConfig()})
    billing: BillingConfig = msgspec.field(default_factory=BillingConfig)
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


def _resolve_sqlite_path(config: Config, path: Path) -> None:
    """Relative SQLite paths are relative to the config file's directory, not the cwd."""
    url = config.database.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        relative = url[len(prefix) :]
        config.database.url = prefix + str((path.parent / relative).resolve())
