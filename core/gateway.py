"""The Gateway: config, plugins, database and provider adapters, built once per process."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import Engine
from tokone.core.config import Config, ConfigError
from tokone.core.domain.keys import KeyHasher
from tokone.core.plugins import make_plugin_manager
from tokone.core.store.db import make_engine
from tokone.core.upstream import Adapter


class Gateway:
    """Everything a request needs that outlives it; handed to every hook as `gateway`."""

    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.pm, self.plugins = make_plugin_manager(config)
        self._plugin_configs = {plugin.name: plugin.config for plugin in self.plugins}
        self.hook = self.pm.hook
        self.engine = engine or make_engine(config.database.url)
        self.hasher = KeyHasher(config.server.secret)
        self.log = structlog.get_logger("tokone")
        self.state: dict[str, Any] = {}
        """Per-gateway state of plugins, keyed by plugin name."""
        self.adapter_types = self._adapter_types()
        self.adapters: dict[str, Adapter] = {}
        for i, provider in enumerate(config.providers):
            adapter_type = self.adapter_types.get(provider.adapter)
            if adapter_type is None:
                known = ", ".join(sorted(self.adapter_types))
                raise ConfigError(
                    f"{config.path}: key providers[{i}].adapter: unknown adapter "
                    f"{provider.adapter!r} (expected one of: {known})"
                )
            self.adapters[provider.name] = adapter_type(provider)
        self.translated: list[Adapter] = [
            wrapper
            for adapter in self.adapters.values()
            for found in self.hook.register_translators(adapter=adapter, gateway=self)
            for wrapper in found or ()
        ]
        """Adapters serving other families through a channel's own (`register_translators`)."""

    def plugin_config(self, name: str) -> Any:
        """The validated settings of the plugin registered as `name`, from `[plugins.NAME]`.

        An instance of the Struct type the plugin's `plugin_config_schema` hook returns (its
        defaults when the file has no such table); None for a plugin that declares no schema
        or is not loaded. Validated once, when the gateway is built.
        """
        return self._plugin_configs.get(name)

    def _adapter_types(self) -> dict[str, type[Adapter]]:
        merged: dict[str, type[Adapter]] = {}
        for found in reversed(self.hook.register_providers()):
            merged.update(found or {})
        return merged

    async def start(self) -> None:
        """Run every plugin's `startup` hook."""
        await gather_awaitables(self.hook.startup(gateway=self))

    async def stop(self) -> None:
        """Run every plugin's `shutdown` hook, then close upstream connections."""
        await gather_awaitables(self.hook.shutdown(gateway=self))
        for adapter in self.adapters.values():
            await adapter.aclose()


async def gather_awaitables(results: Iterable[Any]) -> list[Any]:
    """Await the awaitable results of an all-run hook, in order; pass the others through.

    When one raises, the coroutines after it are closed unawaited (a refused call must not
    go on to hold money), and the error propagates.
    """
    pending = list(results)
    out = []
    for index, result in enumerate(pending):
        try:
            out.append(await result if inspect.isawaitable(result) else result)
        except BaseException:
            for rest in pending[index + 1 :]:
                if inspect.iscoroutine(rest):
                    rest.close()
            raise
    return out
