"""`/admin/groups`: pricing groups and their multipliers.

A change here reloads this process's group table at once (the `groups_changed` hook); the
other processes pick it up within about a second.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from tokone.core.domain.groups import create_group, list_groups, set_group
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.answers import GroupOut
from tokone.plugins.admin_api.bodies import GroupIn, GroupUpdate
from tokone.plugins.admin_api.shared import ERRORS, config_groups, record


class GroupController(Controller):
    """Pricing groups."""

    path = "/groups"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def groups_list(self, gateway: Gateway) -> list[GroupOut]:
        """Every pricing group (config and database) with its multiplier."""
        return [
            GroupOut(n, m, s) for n, m, s in list_groups(gateway.engine, config_groups(gateway))
        ]

    @post("/", sync_to_thread=True, responses=ERRORS)
    def groups_create(
        self, data: GroupIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> GroupOut:
        """Define a new group in the database."""
        group = create_group(gateway.engine, data.name, data.multiplier, config_groups(gateway))
        gateway.hook.groups_changed(gateway=gateway)  # here at once, elsewhere within a second
        record(
            gateway,
            request,
            "group.create",
            f"group:{group.name}",
            None,
            {"multiplier": group.multiplier},
        )
        return GroupOut(group.name, group.multiplier, "database")

    @put("/{name:str}", sync_to_thread=True, responses=ERRORS)
    def groups_update(
        self, name: str, data: GroupUpdate, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> GroupOut:
        """Change a group's multiplier (a config group gets a database override)."""
        before = {n: m for n, m, _ in list_groups(gateway.engine, config_groups(gateway))}
        group = set_group(gateway.engine, name, data.multiplier, config_groups(gateway))
        gateway.hook.groups_changed(gateway=gateway)
        record(
            gateway,
            request,
            "group.set",
            f"group:{name}",
            {"multiplier": before.get(name)},
            {"multiplier": group.multiplier},
        )
        return GroupOut(group.name, group.multiplier, "database")
