"""The ledger's hook implementations: hold at admission, settle at meter, start and stop."""

from __future__ import annotations

from collections.abc import Awaitable

from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome
from tokone.plugins.ledger.cost import worst_case_cost
from tokone.plugins.ledger.leases import leases


@hookimpl(trylast=True)
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Hold the worst-case cost; refuse with 402 when the available balance cannot cover it.

    trylast: every cheaper check (model allowed, rate limits) refuses before money is held.
    In the steady state this returns None: the hold comes from the process's lease.
    """
    if call.principal is None:
        return None
    amount = worst_case_cost(call, gateway)
    if amount <= 0:
        return None
    return leases(gateway).take(call, amount)


@hookimpl(tryfirst=True)
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Return the hold to the lease and queue the capture and the usage record.

    tryfirst: settlement runs before every other `meter` implementation (which the core
    runs each in isolation, so none of them can keep a call from being settled).
    """
    principal = call.principal
    if principal is None:
        return
    usage, charge = outcome.usage, outcome.charge
    leases(gateway).settle(
        principal.account_id,
        call.hold,
        {
            "request_id": call.request_id,
            "account_id": principal.account_id,
            "key_id": principal.key_id,
            "endpoint": call.endpoint,
            "stream": call.stream,
            "model": call.model,
            "provider": outcome.provider,
            "upstream_model": outcome.upstream_model,
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "estimated": usage.estimated,
            "cost": charge.amount if charge else 0,
            "multiplier": charge.multiplier if charge else 1.0,
            "tier": charge.tier if charge else (call.service_tier or "default"),
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
        },
    )
    call.hold = 0


@hookimpl
def startup(gateway: Gateway) -> None:
    """Start the writer, which first releases holds a crashed process left behind."""
    leases(gateway)


@hookimpl
def shutdown(gateway: Gateway) -> None:
    """Write every pending settlement and give the leases back before the process exits."""
    found = gateway.state.pop("ledger", None)
    if found is not None:
        found.stop()
