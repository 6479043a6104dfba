"""TokOne's hooks: the table of contents of the gateway.

A request goes through them in this order::

    authenticate -> admit -> route -> (adapter sends) -> price -> meter

plus `register_providers` (which wire formats exist), `channel_health` (who keeps the
channels' breakers and manual switches), `routes` (extra HTTP endpoints),
`startup` / `shutdown` (background work), `plugin_config_schema` (the settings a plugin
takes from its `[plugins.NAME]` table, read back with ``gateway.plugin_config(NAME)``) and
`register_commands` (extra `tokone` CLI commands). Plugins implement them with
``@hookimpl``::

    from tokone.core.hookspecs import hookimpl

    @hookimpl(wrapper=True)
    def price(call, usage, gateway):
        charge = yield
        charge.amount = max(charge.amount, 100)  # a minimum charge of 100 micro-units
        return charge

Hooks that *decide* are ``firstresult`` (the first non-None answer wins; a wrapper may adjust
it); hooks that *observe* run every implementation. Refusals are raised as
:class:`tokone.core.errors.GatewayError`, which the core answers in the caller's API family's
error shape.

With ``TOKONE_TRACE_PLUGINS=1`` in the environment every call of a hook implementation is
printed to stderr: hook, plugin, a summary of the arguments (keys and secrets redacted),
duration and result.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import msgspec
    import typer
    from tokone.core.gateway import Gateway
    from tokone.core.health import ChannelHealth
    from tokone.core.types import Call, Candidate, Charge, Outcome, Principal, Usage
    from tokone.core.upstream import Adapter

PROJECT = "tokone"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers() -> dict[str, type[Adapter]]:  # type: ignore[empty-body]  # pluggy spec, never called
    """Return the provider adapters this plugin brings, by adapter name.

    All implementations run and their dicts are merged (later plugins win on a name clash),
    so a third-party package can add a wire format that `[[providers]] adapter = "..."` then
    names in `tokone.toml`.
    """


@hookspec(firstresult=True)
def authenticate(key: str, gateway: Gateway) -> Principal | Awaitable[Principal | None] | None:
    """Resolve a client's key to a :class:`Principal`, or return None if it is unknown.

    firstresult: one scheme recognises the key and the rest need not look. Raise
    ``GatewayError("forbidden", ...)`` for a key that is known but disabled, revoked or
    expired. Called on every request, so answer from memory (a cache) where you can; return
    an awaitable only when you must look further (the core awaits it).
    """


@hookspec
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Decide whether `call` may go upstream; raise a GatewayError to refuse it.

    All implementations run (each is one independent check: model allowed, rate limits,
    balance hold); one that needs I/O returns an awaitable, which the core awaits in order
    (and closes, unawaited, once an earlier one refused). Whatever an implementation reserves
    here (a hold, a concurrency slot) it must give back in `meter`, which runs for every
    admitted call, failed ones included. Headers for the client's response go in
    `call.response_headers`.
    """


@hookspec(firstresult=True)
def route(call: Call, gateway: Gateway) -> list[Candidate] | None:
    """Return the upstream candidates for `call`, best first.

    firstresult: one routing policy decides. The core tries the candidates in order and
    fails over to the next on connect errors, timeouts, 401/403, 429 and 5xx, but only before
    the first byte has reached the client. An empty list means the model is unknown (404).
    """


@hookspec(firstresult=True)
def channel_health(gateway: Gateway) -> ChannelHealth | None:
    """Return the object that keeps the channels' health (breakers, manual switches).

    firstresult: one owner. Asked once per gateway; the failover loop then asks it before
    each attempt and reports each attempt's result, and the router asks which channels are
    usable (see :class:`tokone.core.health.ChannelHealth`). With no implementation every
    enabled channel is always tried and manual switches are refused (the built-in `health`
    plugin is the default owner).
    """


@hookspec(firstresult=True)
def price(call: Call, usage: Usage, gateway: Gateway) -> Charge | None:
    """Return what `usage` costs the caller, in integer micro-units.

    firstresult: one pricing policy decides; another policy can wrap it with
    ``@hookimpl(wrapper=True)`` to adjust the amount (a discount, a minimum charge).
    """


@hookspec
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Observe a finished call: settle its hold, record usage, log, count metrics.

    All implementations run, after the response has been sent, for every admitted call
    (successful, failed or cut). They must not block: queue writes and return.

    Each runs in isolation: the core calls them one by one and logs one that raises
    (`meter_failed`, with the request id and plugin name) without stopping the rest. Order:
    pluggy's (last registered first), except that ``tryfirst`` implementations run before
    all others; the ledger's is ``tryfirst``, so the hold is settled and the capture and
    usage record queued before any other plugin sees the call. Wrappers are not supported.
    `outcome.usage` counts are sane (non-negative integers); a side the upstream did not
    report is estimated and `usage.estimated` set.
    """


@hookspec
def routes(gateway: Gateway) -> list[Any]:  # type: ignore[empty-body]  # pluggy spec, never called
    """Return extra Litestar route handlers (admin API, dashboards) to mount.

    All implementations run; their lists are concatenated.
    """


@hookspec
def startup(gateway: Gateway) -> Awaitable[None] | None:
    """Start background work when the server starts; may return an awaitable to await.

    All implementations run, in registration order.
    """


@hookspec
def shutdown(gateway: Gateway) -> Awaitable[None] | None:
    """Flush and stop background work when the server stops; may return an awaitable.

    All implementations run. Pending ledger and usage writes must be flushed here.
    """


@hookspec
def groups_changed(gateway: Gateway) -> None:
    """A pricing group was created or its multiplier changed by this process (admin API).

    Reload whatever caches the groups (the `token_pricing` group table) now, so the change
    applies here at once; other processes pick it up at their next refresh. All
    implementations run.
    """


@hookspec
def plugin_config_schema() -> type[msgspec.Struct] | None:
    """Return the msgspec Struct type that this plugin's `[plugins.NAME]` table must match.

    NAME is the name the plugin is registered under (``tokone plugins list``: the module's
    last dotted part for ``[plugins] modules``, the entry-point name otherwise). When the
    plugins load, the table (an empty one if the file has none) is validated into an
    instance of this type, which ``gateway.plugin_config(NAME)`` returns (and, in a plugin's
    CLI command, ``tokone.core.cli.main.plugin_config(NAME)``). A key the type does not declare,
    a wrong type or a missing required field is a one-line config error naming the file, the
    table and the key (declare nested Structs with ``forbid_unknown_fields=True`` for their
    keys to be checked too; a ``__post_init__`` raising ValueError refuses a bad value).
    Called once per plugin, not as an all-results hook; return None (or do not implement
    it) for a plugin without settings, and then a `[plugins.NAME]` table is an error.
    """


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands to the `tokone` CLI with ``@app.command()`` or ``app.add_typer(...)``.

    All implementations run, after the plugins of the config (``--config``,
    ``$TOKONE_CONFIG`` or ``./tokone.toml``) are loaded, when the command asked for is not a
    built-in one and for ``tokone --help`` (which lists them); a built-in name always means
    the built-in command. `app` is a fresh ``typer.Typer`` whose commands sit beside the
    built-in ones; a command reads its settings with ``tokone.core.cli.main.plugin_config(NAME)``
    and the whole config with ``tokone.core.cli.main.config_or_exit()``.
    """


@hookspec
def register_translators(adapter: Adapter, gateway: Gateway) -> list[Adapter]:  # type: ignore[empty-body]  # pluggy spec, never called
    """Return adapters that serve other API families through the channel adapter `adapter`.

    Called once per configured channel when the gateway is built; all implementations run
    and their lists are concatenated into ``gateway.translated``. Each returned adapter has
    the channel's `provider` and says in `supports` which client calls it takes (e.g. an
    OpenAI chat call for an Anthropic channel); its `send` turns the request into the
    channel's family, sends it with `adapter`, and turns the reply (whole, or each stream
    event) back, keeping the usage the channel's own parser read, so billing is exact.
    Routing tries native candidates first and translated ones after them. Return an empty
    list for a channel that needs no translation (it already speaks the family).
    """
