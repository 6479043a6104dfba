"""Which models a key sees in the model listings (`GET /v1/models`, `GET /v1beta/models`).

The listings name the concrete models (no wildcards, plus the `model_map` aliases) of the
enabled channels, filtered by the key's allowed models. A family's own listing (Gemini's)
takes the channels that speak it natively and those a translator
(`register_translators`, :attr:`~tokone.core.gateway.Gateway.translated`) makes speak it:
the same adapters routing picks from, asked the same way (:meth:`Adapter.supports`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokone.core.gateway import Gateway
from tokone.core.model_names import model_allowed
from tokone.core.types import Call, Family, Principal
from tokone.core.upstream import Adapter


def model_names(adapters: Iterable[Adapter], principal: Principal) -> list[str]:
    """Sorted concrete model names of the enabled `adapters` that `principal` may call."""
    names: set[str] = set()
    for adapter in adapters:
        if adapter.provider.enabled:
            names.update(m for m in adapter.provider.models if "*" not in m)
            names.update(adapter.provider.model_map)
    return sorted(m for m in names if model_allowed(m, principal.models))


def serves_family(adapter: Adapter, family: Family, endpoints: Iterable[str]) -> bool:
    """Whether `adapter` takes a `family` call on any of `endpoints` (as routing asks it)."""
    return any(
        adapter.supports(Call(request_id="", family=family, endpoint=endpoint, model=""))
        for endpoint in endpoints
    )


def family_models(
    gateway: Gateway, principal: Principal, family: Family, endpoints: Iterable[str]
) -> list[str]:
    """Models `principal` may call from `family` on one of `endpoints`: through the channels
    that speak it natively or through a translated channel."""
    wanted = tuple(endpoints)
    adapters = (*gateway.adapters.values(), *gateway.translated)
    return model_names((a for a in adapters if serves_family(a, family, wanted)), principal)
