"""Default routing: providers serving the model, by priority, then weighted random."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

from tokone.core.config import ProviderConfig
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Candidate


def serves(provider: ProviderConfig, model: str) -> bool:
    """Whether `provider` lists `model` (exactly, through its model map, or by wildcard)."""
    return model in provider.model_map or any(
        pattern == model or ("*" in pattern and fnmatchcase(model, pattern))
        for pattern in provider.models
    )


def order_by_priority_and_weight(
    candidates: list[Candidate], rng: random.Random | None = None
) -> list[Candidate]:
    """Highest priority first; within a priority, a weighted random order (weight 0 last)."""
    rng = rng or random
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


@hookimpl
def route(call: Call, gateway: Gateway) -> list[Candidate]:
    """Every enabled provider whose adapter serves the call's endpoint and model."""
    candidates = [
        Candidate(adapter.provider, adapter, adapter.provider.model_map.get(call.model, call.model))
        for adapter in gateway.adapters.values()
        if adapter.provider.enabled
        and adapter.supports(call)
        and serves(adapter.provider, call.model)
    ]
    return order_by_priority_and_weight(candidates) if len(candidates) > 1 else candidates
