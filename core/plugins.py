"""Finding and loading plugins: built-ins, entry points, and modules named in `tokone.toml`.

Built-in policies are loaded exactly like third-party ones: each is a module with
``@hookimpl`` functions, registered under a short name. Third-party plugins come from the
``tokone`` entry-point group (``[project.entry-points.tokone]``) or from
``[plugins] modules = ["my_pkg.my_plugin"]``. ``[plugins] disable = ["name"]`` leaves one out.

Each loaded plugin's `[plugins.NAME]` table is validated against the schema it declares
(`plugin_config_schema`); a table for a plugin that is not loaded is an error, unless the
plugin is named in `disable` (so switching one off does not mean deleting its settings).
``TOKONE_TRACE_PLUGINS=1`` prints every hook implementation call to stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from importlib.metadata import entry_points
from inspect import isawaitable
from typing import Any

import msgspec
import pluggy
from tokone.core import hookspecs
from tokone.core.config import Config, ConfigError, parse_plugin_config

BUILTIN_PLUGINS: tuple[str, ...] = (
    "tokone.providers.mock",
    "tokone.providers.openai",
    "tokone.providers.anthropic",
    "tokone.providers.gemini",
    "tokone.plugins.key_auth",
    # registered before `access` so pluggy (last registered runs first) checks the model
    # before a rate-limit slot is taken
    "tokone.plugins.rate_limit",
    "tokone.plugins.access",
    "tokone.plugins.routing",
    "tokone.plugins.translate",
    "tokone.plugins.health",
    "tokone.plugins.channel_admin",
    "tokone.plugins.token_pricing",
    # before the ledger: both hold in admit as trylast, and pluggy runs the earlier-registered
    # trylast one first, so the limit holds come before the balance hold
    "tokone.plugins.key_limits",
    "tokone.plugins.ledger",
    "tokone.plugins.ip_allow",
    "tokone.plugins.admin_api",
    "tokone.plugins.dashboard",
    "tokone.plugins.console",
    "tokone.plugins.usage_log",
    "tokone.plugins.metrics",
    "tokone.plugins.alerts",
)
ENTRY_POINT_GROUP = "tokone"


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    """A registered plugin and where it came from (`builtin`, `entry point`, `config`)."""

    name: str
    module: str
    source: str
    config: Any = None
    """Its validated `[plugins.NAME]` settings (a Struct), or None if it declares no schema."""


def short_name(module: str) -> str:
    """`tokone.plugins.token_pricing` -> `token_pricing`."""
    return module.rsplit(".", 1)[-1]


def make_plugin_manager(config: Config) -> tuple[pluggy.PluginManager, list[LoadedPlugin]]:
    """Create the plugin manager with every enabled plugin registered, in a stable order."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(config.plugins.disable)
    loaded: list[LoadedPlugin] = []

    def register(name: str, module: object, source: str) -> None:
        if name in disabled or pm.has_plugin(name):
            return
        pm.register(module, name=name)
        loaded.append(LoadedPlugin(name, getattr(module, "__name__", repr(module)), source))

    for path in BUILTIN_PLUGINS:
        register(short_name(path), importlib.import_module(path), "builtin")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register(ep.name, ep.load(), "entry point")
    for path in config.plugins.modules:
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise ConfigError(
                f"{config.path}: key plugins.modules: cannot import plugin {path!r} ({exc})"
            ) from None
        register(short_name(path), module, "config")
    if tracing_enabled():
        trace_hook_calls(pm)
    return pm, apply_plugin_configs(pm, config, loaded)


def apply_plugin_configs(
    pm: pluggy.PluginManager, config: Config, loaded: list[LoadedPlugin]
) -> list[LoadedPlugin]:
    """Validate every `[plugins.NAME]` table against its plugin's schema; return `loaded`
    with each plugin's settings filled in, or raise :class:`ConfigError` (one line)."""
    names = {plugin.name for plugin in loaded}
    for name in config.plugins.tables:
        if name not in names and name not in config.plugins.disable:
            raise ConfigError(
                f"{config.path}: key plugins.{name}: no plugin named {name!r} is loaded "
                f"(add it to plugins.modules, or see `tokone plugins list`)"
            )
    schemas: dict[str, Any] = {}
    for impl in pm.hook.plugin_config_schema.get_hookimpls():
        if not (impl.wrapper or impl.hookwrapper):
            schemas[impl.plugin_name] = impl.function()
    result = []
    for plugin in loaded:
        schema = schemas.get(plugin.name)
        if schema is None:
            if plugin.name in config.plugins.tables:
                raise ConfigError(
                    f"{config.path}: key plugins.{plugin.name}: plugin {plugin.name!r} takes "
                    f"no settings (it declares no plugin_config_schema)"
                )
            result.append(plugin)
            continue
        if not (isinstance(schema, type) and issubclass(schema, msgspec.Struct)):
            raise TypeError(
                f"plugin {plugin.name!r}: plugin_config_schema must return a msgspec.Struct "
                f"type or None, not {schema!r}"
            )
        settings = parse_plugin_config(config, plugin.name, schema)
        result.append(dataclasses.replace(plugin, config=settings))
    return result


TRACE_ENV = "TOKONE_TRACE_PLUGINS"
"""Set to 1 to print every hook implementation call to stderr."""
_SECRET_ARGS = frozenset({"key", "api_key", "secret", "password", "token", "authorization"})


def tracing_enabled() -> bool:
    """Whether ``$TOKONE_TRACE_PLUGINS`` asks for hook tracing (set, and not 0/false/no/off)."""
    value = os.environ.get(TRACE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Make every registered hook implementation print a line to stderr when it is called.

    One line per implementation call: ``tokone trace: HOOK plugin=NAME 0.042 ms
    (arg=summary, ...) -> result``. Implementations are wrapped one by one, rather than
    through pluggy's ``add_hookcall_monitoring``, because the core calls some of them
    directly (`meter`, each in isolation; `plugin_config_schema`, per plugin) and because
    the time is then each plugin's own. A wrapper's time includes what it wraps; for an
    implementation that returns an awaitable only the synchronous part is timed.
    """
    for caller in vars(pm.hook).values():
        if not isinstance(caller, pluggy.HookCaller):
            continue
        for impl in caller.get_hookimpls():
            # pluggy marks `function` Final for type checkers; replacing it is the point here
            setattr(impl, "function", _traced(caller.name, impl))  # noqa: B010


def _traced(hook: str, impl: pluggy.HookImpl) -> Callable[..., Any]:
    """`impl.function`, printing a trace line per call (generators: when they finish)."""
    function: Callable[..., Any] = impl.function
    names = [*impl.argnames, *impl.kwargnames]

    def line(args: tuple[Any, ...], kwargs: dict[str, Any], started: float, result: str) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        values = dict(zip(names, args, strict=False)) | kwargs
        shown = ", ".join(f"{k}={summarize(v, k)}" for k, v in values.items())
        print(
            f"tokone trace: {hook} plugin={impl.plugin_name} {elapsed:.3f} ms ({shown}) {result}",
            file=sys.stderr,
            flush=True,
        )

    if impl.wrapper or impl.hookwrapper:

        def traced_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            started = time.perf_counter()
            try:
                result = yield from function(*args, **kwargs)
            except BaseException as exc:
                line(args, kwargs, started, f"(wrapper) raised {type(exc).__name__}")
                raise
            line(args, kwargs, started, f"(wrapper) -> {summarize(result)}")
            return result

        return traced_wrapper

    def traced(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            line(args, kwargs, started, f"raised {type(exc).__name__}: {summarize(str(exc))}")
            raise
        line(args, kwargs, started, f"-> {summarize(result)}")
        return result

    return traced


def summarize(value: Any, name: str = "") -> str:
    """A short, secret-free description of a hook argument or result for trace lines.

    Scalars as their repr (strings cut at 40 characters), dataclasses and Structs as their
    first few scalar fields, containers by size and first item, anything else by its type;
    an argument or field named like a credential (`key`, `api_key`, `secret`, ...) is never
    shown, only its length.
    """
    if name in _SECRET_ARGS and value:
        return f"<redacted, {len(str(value))} chars>"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isawaitable(value):
        return f"<awaitable {type(value).__name__}>"
    if isinstance(value, dict):
        keys = ", ".join(summarize(k) for k in list(value)[:4])
        return "{" + keys + (", ..." if len(value) > 4 else "") + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        more = f", ...{len(value) - 1} more" if len(value) > 1 else ""
        return f"[{summarize(value[0])}{more}]"
    fields: tuple[str, ...] = ()
    if dataclasses.is_dataclass(value):
        fields = tuple(f.name for f in dataclasses.fields(value))
    elif isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
    shown = []
    for field in fields:
        item = getattr(value, field, None)
        if field.startswith("_") or field in _SECRET_ARGS or item is None:
            continue
        if isinstance(item, str | int | float):  # bool is an int; StrEnum a str
            shown.append(f"{field}={summarize(str(item) if isinstance(item, str) else item)}")
        if len(shown) == 4:
            break
    return f"{type(value).__name__}({', '.join(shown)})" if fields else type(value).__name__
