"""`/admin/settings`: operator settings stored in the database (they win over `tokone.toml`).

Every process sees a change within about a second. Known names: see
:data:`tokone.core.domain.settings_store.KNOWN` (``console.signup``,
``console.signup_credit``, ``console.allowed_email_domains``).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Controller, Request, get, put
from tokone.core.domain.settings_store import KNOWN, read_settings, set_setting
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.shared import ERRORS, record


class SettingOut(msgspec.Struct):
    """A setting: its stored value (null: not stored, the config's value applies), who
    stored it and when."""

    name: str
    value: Any
    stored: bool
    updated_at: float | None
    updated_by: str


class SettingIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new value for a setting (null: remove it, back to the config's value)."""

    value: Any


class SettingsController(Controller):
    """Settings stored in the database."""

    path = "/settings"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def settings_list(self, gateway: Gateway) -> list[SettingOut]:
        """Every known setting and its stored value, if any."""
        stored = read_settings(gateway.engine)
        out = []
        for name in sorted(KNOWN):
            row = stored.get(name)
            out.append(
                SettingOut(
                    name=name,
                    value=json.loads(row.value) if row else None,
                    stored=row is not None,
                    updated_at=row.updated_at if row else None,
                    updated_by=row.updated_by if row else "",
                )
            )
        return out

    @put("/{name:str}", sync_to_thread=True, responses=ERRORS)
    def settings_put(
        self, name: str, data: SettingIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> SettingOut:
        """Store a setting (or with a null value remove it); audited."""
        before, after = set_setting(gateway.engine, name, data.value, "admin-api")
        record(
            gateway, request, "setting.set", f"setting:{name}", {"value": before}, {"value": after}
        )
        row = read_settings(gateway.engine).get(name)
        return SettingOut(
            name=name,
            value=after,
            stored=row is not None,
            updated_at=row.updated_at if row else None,
            updated_by=row.updated_by if row else "",
        )
