"""A call's hold: the worst case it can cost, priced by the `price` hook.

The prompt is estimated at one token per four bytes of the request body; the output cap is
the request's max tokens, else ``[billing] default_max_output_tokens`` (none for embeddings
and token counts), times the choices asked for; a tier the config does not list (such as
``auto``) is priced at the most expensive one.
"""

from __future__ import annotations

from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.types import Call, Usage

NO_OUTPUT_ENDPOINTS = frozenset(
    {
        "embeddings",
        "responses.input_tokens",
        "messages.count_tokens",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    }
)
"""Endpoints that generate no output tokens: their hold covers the prompt only."""


def worst_case_cost(call: Call, gateway: Gateway) -> int:
    """What the call can cost at most: its prompt estimate plus the output cap, priced.

    A model the pricing policy marks as unpriced is refused (403) unless
    `[billing] allow_unpriced` is set.
    """
    billing = gateway.config.billing
    cap = call.max_output_tokens
    if cap is None or cap <= 0:  # ingress refuses negatives; never let one shrink the hold
        cap = billing.default_max_output_tokens
    cap *= call.choices
    if call.endpoint in NO_OUTPUT_ENDPOINTS:
        cap = 0
    estimate = call.input_estimate
    tier = call.service_tier
    if tier is not None and tier not in billing.service_tiers and billing.service_tiers:
        tier = max(billing.service_tiers, key=billing.service_tiers.__getitem__)
    usage = Usage(input_tokens=estimate, output_tokens=cap, service_tier=tier)
    charge = gateway.hook.price(call=call, usage=usage, gateway=gateway)
    if charge is None:
        return 0
    if charge.detail.get("unpriced") and not billing.allow_unpriced:
        raise GatewayError(
            "model_not_allowed",
            f"The model '{call.model}' has no price on this gateway yet; the operator must add "
            f'[prices."{call.model}"] to tokone.toml (or set [billing] allow_unpriced).',
            param="model",
        )
    return max(0, charge.amount)
