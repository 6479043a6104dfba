"""Spend limits per key (total and per day / week / month) and budgets per account.

Set with ``tokone limits key KEY_ID --per-period 5 --period day`` (or the admin API's
``PUT /admin/keys/{id}/limits``); defaults per group in ``[plugins.key_limits.groups.NAME]``;
see the README's "Spend limits, budgets and IP allow-lists".

How it holds: exactly as the ledger holds the balance (:mod:`tokone.plugins.ledger`). At
admission the call's worst-case cost (:func:`tokone.plugins.ledger.cost.worst_case_cost`) is
held under each limit that applies — the key's period limit, its total limit, the account's
budget — from a lease this process reserved in ``spend_holds`` (:mod:`.leases`). Only when a
lease cannot cover the call is it grown in the database, under the lock of the limit's
``spend_counters`` row, against ``limit - spent - leases of every process``
(:mod:`.store`); if the room cannot cover the call it is refused with 402, naming the key's
limit and when it resets. After the call its hold returns to the lease and its actual cost
is added to the counters in a grouped write. So processes sharing a database never lease
more than a limit, and a limit is overspent only by what calls cost beyond their holds (the
balance's tolerance, README "Billing"). Leases idle for half a second go back; those of a
killed process lapse after ``[billing] hold_timeout_seconds``.
"""

from tokone.plugins.key_limits.hooks import (
    admit,
    meter,
    plugin_config_schema,
    register_commands,
    shutdown,
    startup,
)

__all__ = ["admit", "meter", "plugin_config_schema", "register_commands", "shutdown", "startup"]
