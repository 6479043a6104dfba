"""Admin API authentication: bearer tokens from `[server] admin_keys`, distinct from user keys."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Schema
from tokone.core.gateway import Gateway

ADMIN_PATH = "/admin"


def admin_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The bearer token of an admin request ('' when absent)."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def make_admin_guard(gateway: Gateway) -> Any:
    """A Litestar guard admitting only the configured admin keys (compared in constant time)."""
    keys = [k.encode() for k in gateway.config.server.admin_keys if k]

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = admin_token(connection).encode()
        if not token or not any(hmac.compare_digest(token, k) for k in keys):
            raise NotAuthorizedException(
                "A valid admin key is required (Authorization: Bearer <admin key>); "
                "admin keys are set in [server] admin_keys."
            )

    return guard


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    """OpenAI's error object: what went wrong, its type, the offending parameter, a code."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorOut(msgspec.Struct, forbid_unknown_fields=True):
    """The error shape of the admin API and the dashboard (OpenAI's)."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "Bad input: a malformed body, a wrong type, an unknown field, a bad amount",
    401: "No or unknown key",
    403: "The key is disabled, revoked or expired",
    404: "Unknown account, key, group, code or provider",
    409: "Conflict: the name exists already, the key is revoked, the refund or code was used",
    503: "The database is unreachable",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI response specs in the real (OpenAI) error shape for `statuses`."""
    return {
        status: ResponseSpec(
            data_container=ErrorOut,
            description=ERROR_DESCRIPTIONS.get(status, "Error"),
            generate_examples=False,
        )
        for status in statuses
    }


def document_errors(handlers: list[Any], *statuses: int) -> list[Any]:
    """Give every route handler in `handlers` the error responses of `statuses` (in place)."""
    specs = error_responses(*statuses)
    for handler in handlers:
        handler.responses = {**specs, **(handler.responses or {})}
    return handlers


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's msgspec schema plugin, plus `additionalProperties: false` for a Struct that
    forbids unknown fields (the server refuses them, so the schema must too)."""

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Any:
        """The Struct's component schema, closed when it forbids unknown fields."""
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if getattr(info, "forbid_unknown_fields", False):
            schema.additional_properties = False
        overrides = getattr(field_definition.type_, "__openapi_properties__", None)
        if overrides and schema.properties is not None:  # constraints a union loses in Litestar
            schema.properties = {**schema.properties, **overrides}
        one_of = getattr(field_definition.type_, "__openapi_one_of_required__", None)
        if one_of:  # "exactly one of these fields"
            schema.one_of = [Schema(required=[name]) for name in one_of]
        return schema
