"""Channel health upkeep: manual switches kept fresh, broken streams counted as failures.

The breaker itself lives in :mod:`tokone.core.health` and is fed by the core's failover loop.
This plugin adds what happens outside a request: every process re-reads the operators'
switches (`tokone providers disable|enable`, `POST /admin/providers/{name}/disable`) from
the `channel_states` table once a second in the background, so the request path never
waits on the database; and a stream that broke after its first byte (reported to `meter`
as 502/504 with the provider that served it) counts as a failure of that channel.
"""

from __future__ import annotations

import asyncio
import contextlib

from tokone.core.gateway import Gateway
from tokone.core.health import health, read_switches
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome

REFRESH_SECONDS = 1.0
BROKEN_STREAM_STATUSES = frozenset({502, 504})


async def refresh(gateway: Gateway) -> None:
    """Re-read the manual switches from the database (in a thread).

    A read that overlapped a switch written by this process is dropped: it may predate it.
    """
    channels = health(gateway)
    writes = channels.switch_writes
    switches = await asyncio.to_thread(read_switches, gateway.engine)
    if channels.switch_writes == writes:
        channels.switches = switches


async def _refresh_forever(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            await refresh(gateway)
        except Exception as exc:  # the database is briefly unreachable: keep the last view
            gateway.log.warning("channel_states_refresh_failed", error=repr(exc))


@hookimpl
async def startup(gateway: Gateway) -> None:
    """Load the manual switches before serving, then keep them fresh in the background."""
    try:
        await refresh(gateway)
    except Exception as exc:
        gateway.log.warning("channel_states_refresh_failed", error=repr(exc))
    gateway.state["health_refresher"] = asyncio.create_task(_refresh_forever(gateway))


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    """Stop the background refresh."""
    task = gateway.state.pop("health_refresher", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """A reply that broke off after its first byte is a failure of the channel that sent it."""
    if outcome.provider and outcome.status in BROKEN_STREAM_STATUSES:
        health(gateway).failed(outcome.provider, outcome.error or f"status {outcome.status}")
