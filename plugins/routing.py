"""Default routing: healthy providers serving the model, by priority, then weighted random.

A provider serves a model it lists exactly, by a `*` wildcard (never across a `/`), or
through its `model_map` (an alias: public name -> upstream name). Channels switched off by an
operator or cooling down after failures are left out (a half-open channel stays in, so its
probe can happen); channels whose upstream said `retry-after` go last until it has passed. A
model that is served but has no usable channel is refused with 503 ("unavailable"), not 404.

Which channels are usable is asked of the channel health owner (:mod:`tokone.core.health`;
the `health` plugin by default). Without one every enabled channel serving the model is
offered, so that 503 cannot happen.

The weighted order is drawn from a `random.Random` (the module's :data:`RNG` unless one is
passed), so a test can check the distribution with a seeded one instead of many HTTP calls.
"""

from __future__ import annotations

import math
import random
import time

from tokone.core.config import ProviderConfig
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.health import ChannelHealth, health
from tokone.core.hookspecs import hookimpl
from tokone.core.model_names import model_matches
from tokone.core.types import Call, Candidate


def serves(provider: ProviderConfig, model: str) -> bool:
    """Whether `provider` lists `model` (exactly, through its model map, or by wildcard)."""
    return model in provider.model_map or any(
        model_matches(model, pattern) for pattern in provider.models
    )


RNG = random.Random()
"""The draws behind the weighted order in a server."""


def order_by_priority_and_weight(
    candidates: list[Candidate], rng: random.Random = RNG
) -> list[Candidate]:
    """Highest priority first; within a priority, a weighted random order (weight 0 last).

    Each place is drawn among the candidates left with probability proportional to their
    weights, so the first is a channel of weight w with probability w / (sum of weights).
    """
    tiers: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        tiers.setdefault(candidate.provider.priority, []).append(candidate)
    ordered: list[Candidate] = []
    for priority in sorted(tiers, reverse=True):
        pool = tiers[priority]
        while pool:
            weights = [c.provider.weight for c in pool]
            if sum(weights) <= 0:
                ordered.extend(pool)
                break
            pick = rng.choices(range(len(pool)), weights=weights)[0]
            ordered.append(pool.pop(pick))
    return ordered


def no_healthy_channel(
    call: Call, channels: ChannelHealth, names: list[str], now: float
) -> GatewayError:
    """The 503 for a model whose every channel is switched off or cooling down."""
    wait = channels.usable_in(names, now)
    if wait is None:
        return GatewayError(
            "unavailable",
            f"No upstream for the model '{call.model}' is available: every channel serving it "
            "is disabled by an operator.",
        )
    seconds = max(1, math.ceil(wait))
    return GatewayError(
        "unavailable",
        f"No healthy upstream for the model '{call.model}' right now: every channel serving "
        f"it is cooling down after failures or being probed. Try again in {seconds}s.",
        headers={"retry-after": str(seconds)},
    )


@hookimpl
def route(call: Call, gateway: Gateway) -> list[Candidate]:
    """Usable providers for the call's endpoint and model, best first; 503 if none is usable."""
    served = [
        adapter
        for adapter in (*gateway.adapters.values(), *gateway.translated)
        if adapter.provider.enabled
        and adapter.supports(call)
        and serves(adapter.provider, call.model)
    ]
    if not served:
        return []
    channels, now = health(gateway), time.monotonic()
    candidates = [
        Candidate(adapter.provider, adapter, adapter.provider.model_map.get(call.model, call.model))
        for adapter in served
        if channels.usable(adapter.provider.name, now)
    ]
    if not candidates:
        raise no_healthy_channel(call, channels, [a.provider.name for a in served], now)
    if len(candidates) == 1:
        return candidates
    ordered = order_by_priority_and_weight(candidates)
    # stable: native before translated (`gateway.translated`); then channels with no
    # retry-after keep their order, deferred ones go last, soonest first
    return sorted(
        ordered,
        key=lambda c: (
            c.adapter is not gateway.adapters.get(c.provider.name),
            channels.deferred_for(c.provider.name, now),
        ),
    )
