"""Finding and loading plugins: built-ins, entry points, and modules named in `tokone.toml`.

Built-in policies are loaded exactly like third-party ones: each is a module with
``@hookimpl`` functions, registered under a short name. Third-party plugins come from the
``tokone`` entry-point group (``[project.entry-points.tokone]``) or from
``[plugins] modules = ["my_pkg.my_plugin"]``. ``[plugins] disable = ["name"]`` leaves one out.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy
from tokone.core import hookspecs
from tokone.core.config import Config, ConfigError

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
    "tokone.plugins.health",
    "tokone.plugins.channel_admin",
    "tokone.plugins.token_pricing",
    "tokone.plugins.ledger",
    "tokone.plugins.admin_api",
    "tokone.plugins.dashboard",
    "tokone.plugins.usage_log",
    "tokone.plugins.metrics",
)
ENTRY_POINT_GROUP = "tokone"


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    """A registered plugin and where it came from (`builtin`, `entry point`, `config`)."""

    name: str
    module: str
    source: str


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
    return pm, loaded
