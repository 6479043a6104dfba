"""Per-key model allow-lists: a key created with `--models a,b` may call only those models."""

from __future__ import annotations

from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.model_names import model_allowed
from tokone.core.types import Call


@hookimpl
def admit(call: Call, gateway: Gateway) -> None:
    """Refuse (403) a model the key is not allowed to use."""
    principal = call.principal
    if principal is not None and not model_allowed(call.model, principal.models):
        raise GatewayError(
            "model_not_allowed",
            f"This API key is not allowed to use the model '{call.model}'.",
            param="model",
        )
