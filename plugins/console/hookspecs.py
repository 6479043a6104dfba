"""Hooks the console adds to TokOne's (registered when the console is mounted).

A payment plugin lists its top-up methods on the Top up page with::

    from tokone.core.hookspecs import hookimpl
    from tokone.plugins.console.hookspecs import TopupMethod

    @hookimpl
    def console_topup_methods(gateway, user, account):
        return [TopupMethod("Card", "Pay by card; credited at once.", "/pay/card")]

and serves `url` itself (its own `routes`), crediting the account through
:func:`tokone.core.domain.ledger_entries.add_entry` (kind ``topup``) once the payment is
confirmed. The console only links to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokone.core.hookspecs import hookspec

if TYPE_CHECKING:
    from tokone.core.gateway import Gateway
    from tokone.core.store.tables import Account, User


@dataclass(frozen=True, slots=True)
class TopupMethod:
    """A way to add money, shown on the Top up page as a link to `url`."""

    title: str
    description: str
    url: str


@hookspec
def console_topup_methods(  # type: ignore[empty-body]  # pluggy spec, never called
    gateway: Gateway, user: User, account: Account
) -> list[TopupMethod]:
    """Return the top-up methods this plugin offers `user` for `account` (besides codes).

    All implementations run; their lists are concatenated, in plugin order.
    """
