"""Per-key IP allow-lists: a key with CIDR ranges works only from addresses inside them.

Set with ``tokone limits key KEY_ID --ips 10.0.0.0/8,2001:db8::/32`` (the admin API's
``PATCH /admin/keys/{id}/limits``); a default per group in
``[plugins.ip_allow.groups.NAME] allowed_ips``. A refused address gets 403 in the caller's
family's shape before anything is held, so the key is never charged.

The client address is the TCP peer's. Only when the peer is one of
``[plugins.ip_allow] trusted_proxies`` (CIDR ranges; none by default) is it taken from the
proxy's headers instead: ``X-Forwarded-For`` (the right-most address that is not itself a
trusted proxy) or, if absent, RFC 7239 ``Forwarded`` (its ``for=`` parameters, the same way).
A request from anyone else cannot choose its address by sending those headers.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import msgspec
from tokone.core.domain.errors import AccountError
from tokone.core.domain.spend_limits import check_cidrs
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, ClientAddress

NAME = "ip_allow"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GroupIPs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ranges every key of a group is limited to unless the key lists its own."""

    allowed_ips: list[str] = msgspec.field(default_factory=list)


class IPAllowSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins.ip_allow]`: trusted proxies and per-group default allow-lists."""

    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    """Peers whose X-Forwarded-For / Forwarded headers are believed (CIDR; none by default)."""
    groups: dict[str, GroupIPs] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse a malformed range at load time."""
        try:
            check_cidrs(self.trusted_proxies)
            for group in self.groups.values():
                check_cidrs(group.allowed_ips)
        except AccountError as exc:
            raise ValueError(str(exc)) from None


@hookimpl
def plugin_config_schema() -> type[IPAllowSettings]:
    """`[plugins.ip_allow]`: ``trusted_proxies`` and ``groups.NAME.allowed_ips``."""
    return IPAllowSettings


@lru_cache(maxsize=4096)
def networks(ranges: tuple[str, ...]) -> tuple[Network, ...]:
    """Parsed CIDR ranges (cached: the same tuples come with every call of a key)."""
    return tuple(ipaddress.ip_network(r, strict=False) for r in ranges)


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a header token (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``"[::1]"``)."""
    token = value.strip().strip('"')
    if token.startswith("["):
        token = token[1:].split("]", 1)[0]
    elif token.count(":") == 1:
        token = token.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_hops(client: ClientAddress) -> list[str]:
    """The addresses the proxy headers name, nearest client first (XFF, else Forwarded)."""
    if client.forwarded_for:
        return [hop for hop in client.forwarded_for.split(",") if hop.strip()]
    hops = []
    for element in client.forwarded.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value)
    return hops


def client_ip(
    client: ClientAddress, trusted: tuple[Network, ...]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address: the peer, or — behind a trusted proxy — the right-most
    forwarded address that is not a trusted proxy itself. None when it cannot be told."""
    peer = parse_ip(client.peer or "")
    if peer is None or not any(peer in net for net in trusted):
        return peer
    address = peer
    for hop in reversed(forwarded_hops(client)):
        found = parse_ip(hop)
        if found is None:
            return None  # an unparseable hop: the address cannot be told
        address = found
        if not any(found in net for net in trusted):
            break
    return address


@hookimpl(tryfirst=True)
def admit(call: Call, gateway: Gateway) -> None:
    """Refuse (403) a call from outside the key's allowed ranges, before anything is held."""
    principal = call.principal
    if principal is None:
        return
    settings: IPAllowSettings = gateway.plugin_config(NAME)
    ranges = principal.allowed_ips
    if not ranges and principal.group in settings.groups:
        ranges = tuple(settings.groups[principal.group].allowed_ips)
    if not ranges:
        return
    address = client_ip(call.client, networks(tuple(settings.trusted_proxies)))
    if address is None or not any(address in net for net in networks(ranges)):
        raise GatewayError(
            "forbidden",
            f"This API key may not be used from {address or 'an unknown address'}: the "
            "address is not in the key's IP allow-list.",
        )
