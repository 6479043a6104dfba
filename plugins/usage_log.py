"""One structured log line per finished call (request id, account, model, tokens, cost)."""

from __future__ import annotations

from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Log the call; the key itself never appears, only its id."""
    principal = call.principal
    usage = outcome.usage
    gateway.log.info(
        "request",
        request_id=call.request_id,
        account=principal.account_name if principal else None,
        key_id=principal.key_id if principal else None,
        endpoint=call.endpoint,
        model=call.model,
        provider=outcome.provider,
        stream=call.stream,
        status=outcome.status,
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        estimated=usage.estimated,
        cost=outcome.charge.amount if outcome.charge else 0,
        latency_ms=round(outcome.latency_ms, 2),
        error=outcome.error,
    )
