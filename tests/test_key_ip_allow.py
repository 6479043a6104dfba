"""Per-key IP allow-lists: refused with 403 in the family's shape, never charged; proxy
headers believed only from a configured trusted proxy."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from ledger_checks import CHAT, assert_ledger_consistent, database_url
from test_key_limits import key_id_of
from tokone.core.types import ClientAddress
from tokone.plugins.ip_allow import client_ip, networks

FAST = "\n[plugins.key_auth]\nrefresh_seconds = 0.05\n"


def sdk(gateway, key: str, **headers: str) -> openai.OpenAI:
    """The openai SDK against the gateway, sending `headers` on every call."""
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=key, max_retries=0, default_headers=headers
    )


def test_key_outside_its_ranges_gets_403_and_is_never_charged(make_gateway):
    gateway = make_gateway(FAST)
    key = gateway.funded_key("ipacct", "1")
    key_id = key_id_of(gateway, "ipacct")
    out = gateway.cli("limits", "key", str(key_id), "--ips", "10.0.0.0/8, 2001:db8::/32")
    assert "10.0.0.0/8, 2001:db8::/32" in out
    # A client outside the list (we are 127.0.0.1), even claiming to be inside via XFF.
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk(gateway, key, **{"x-forwarded-for": "10.1.2.3"}).chat.completions.create(**CHAT)
    assert "127.0.0.1" in refused.value.message and "IP allow-list" in refused.value.message
    assert refused.value.body["type"] == "permission_error"
    # Anthropic's shape for the same key.
    with pytest.raises(anthropic.PermissionDeniedError) as refused_a:
        anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0).messages.create(
            model="mock-1", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused_a.value.body["type"] == "error"
    assert refused_a.value.body["error"]["type"] == "permission_error"
    # Gemini's shape.
    gemini = httpx.post(
        gateway.url + "/v1beta/models/mock-1:generateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert gemini.status_code == 403 and gemini.json()["error"]["status"] == "PERMISSION_DENIED"
    state = assert_ledger_consistent(database_url(gateway), "ipacct")
    assert state.balance == 1_000_000 and state.usage_cost == 0 and state.held == 0
    # Allowing 127.0.0.0/8 (IPv4) lets it through.
    gateway.cli("limits", "key", str(key_id), "--ips", "127.0.0.0/8")
    for _ in range(100):
        try:
            sdk(gateway, key).chat.completions.create(**CHAT)
            break
        except openai.PermissionDeniedError:
            pass
    else:
        raise AssertionError("the new allow-list never took effect")


def test_trusted_proxy_headers(make_gateway):
    gateway = make_gateway(FAST + '\n[plugins.ip_allow]\ntrusted_proxies = ["127.0.0.1/32"]\n')
    key = gateway.funded_key("proxied", "1")
    gateway.cli("limits", "key", str(key_id_of(gateway, "proxied")), "--ips", "203.0.113.0/24")
    ok = []
    for _ in range(100):  # until the key cache has the list: then XFF decides
        try:
            sdk(gateway, key, **{"x-forwarded-for": "198.51.100.7"}).chat.completions.create(**CHAT)
            ok.append(True)
        except openai.PermissionDeniedError as exc:
            assert "198.51.100.7" in exc.message
            break
    # The proxy forwarded a client inside the range: admitted (XFF, then Forwarded).
    sdk(gateway, key, **{"x-forwarded-for": "1.1.1.1, 203.0.113.9"}).chat.completions.create(**CHAT)
    sdk(gateway, key, forwarded='for="203.0.113.10:4711";proto=https').chat.completions.create(
        **CHAT
    )
    with pytest.raises(openai.PermissionDeniedError):  # spoofed left-most hop is ignored
        sdk(gateway, key, **{"x-forwarded-for": "203.0.113.9, 8.8.8.8"}).chat.completions.create(
            **CHAT
        )


def test_client_ip_resolution():
    trusted = networks(("10.0.0.0/8", "fd00::/8"))
    assert str(client_ip(ClientAddress("1.2.3.4", "5.6.7.8"), trusted)) == "1.2.3.4"
    assert str(client_ip(ClientAddress("10.0.0.1", "5.6.7.8, 10.0.0.2"), trusted)) == "5.6.7.8"
    forwarded = 'for=192.0.2.60;proto=http, for="[2001:db8::1]:80"'
    assert str(client_ip(ClientAddress("fd00::1", "", forwarded), trusted)) == "2001:db8::1"
    assert client_ip(ClientAddress("10.0.0.1", "not-an-ip"), trusted) is None
    assert str(client_ip(ClientAddress("::ffff:1.2.3.4"), trusted)) == "1.2.3.4"
    assert client_ip(ClientAddress(None), trusted) is None
