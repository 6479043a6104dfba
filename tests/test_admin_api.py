"""The admin API end to end: guard, schema, accounts, groups, overrides, keys, money, codes,
usage — against a running gateway, with the official `openai` SDK for the keys it creates.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import ADMIN, FAST_REFRESH, MOCK_PROVIDER, key_status, wait_until
from ledger_checks import assert_ledger_consistent, database_url, wait_settled
from tokone.providers.mock_words import WORDS

MESSAGES = [{"role": "user", "content": "say hello to me"}]
BASE = 4 * 1 + len(WORDS) * 2
PROVIDERS = MOCK_PROVIDER + FAST_REFRESH
"""One gateway for the module (conftest's `gateway`); every test uses accounts of its own."""


@pytest.fixture
def admin(gateway):
    with httpx.Client(base_url=gateway.url + "/admin", headers=ADMIN, timeout=10) as client:
        yield client


@pytest.fixture
def own_admin(make_gateway):
    """A gateway of the test's own and an admin client for it: for a test that changes what
    every account sees (a configured group)."""
    gateway = make_gateway(FAST_REFRESH)
    with httpx.Client(base_url=gateway.url + "/admin", headers=ADMIN, timeout=10) as client:
        yield gateway, client


def prices(gateway, key: str) -> dict:
    """The caller's `/pricing` entry for mock-1."""
    listed = httpx.get(gateway.url + "/pricing", headers={"authorization": f"Bearer {key}"})
    return {m["model"]: m for m in listed.json()["models"]}["mock-1"]


def chat(gateway, key: str) -> str:
    raw = gateway.openai_client(key).chat.completions.with_raw_response.create(
        model="mock-1", messages=MESSAGES
    )
    return raw.headers["x-request-id"]


def test_only_admin_keys_get_in_and_the_schema_lists_the_api(gateway, admin):
    user_key = gateway.funded_key("someone", "1")
    for headers in ({}, {"authorization": f"Bearer {user_key}"}, {"authorization": "Bearer x"}):
        response = httpx.get(gateway.url + "/admin/accounts", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert admin.get("/accounts").status_code == 200

    schema = httpx.get(gateway.url + "/schema/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/admin/accounts",
        "/admin/accounts/{name}/topups",
        "/admin/groups/{name}",
        "/admin/keys/{key_id}/rotate",
        "/admin/codes",
        "/admin/usage",
        "/v1/dashboard/balance",
        "/v1/dashboard/usage",
        "/v1/dashboard/redeem",
        "/pricing",
    ):
        assert path in paths, path
    override = paths["/admin/accounts/{name}/override"]["put"]
    assert "own price multiplier" in override["description"]
    assert "multiplier" in str(schema["components"]["schemas"])


def test_accounts_money_and_checks(gateway, admin):
    created = admin.post("/accounts", json={"name": "acme", "group": "vip"})
    assert created.status_code == 201 and created.json()["balance_micro"] == 0
    assert admin.post("/accounts", json={"name": "acme"}).status_code == 409
    assert admin.post("/accounts", json={"name": "x", "group": "nope"}).status_code == 404
    assert admin.get("/accounts/nobody").status_code == 404

    assert (
        admin.post("/accounts/acme/topups", json={"amount": "2.5"}).json()["balance_micro"]
        == 2_500_000
    )
    assert admin.post("/accounts/acme/topups", json={"amount": 1}).json()["balance"] == "3.500000"
    assert admin.post("/accounts/acme/topups", json={"amount": 2.5}).status_code == 400  # float
    assert admin.post("/accounts/acme/topups", json={"amount": "-1"}).status_code == 400
    assert admin.post("/accounts/acme/topups", json={"amount": "0.0000001"}).status_code == 400
    assert admin.post("/accounts/acme/topups", json={}).status_code == 400
    adjusted = admin.post(
        "/accounts/acme/adjustments", json={"amount_micro": -500_000, "note": "promo reversed"}
    )
    assert adjusted.json()["balance_micro"] == 3_000_000

    key = admin.post("/keys", json={"account": "acme", "name": "ci"}).json()["key"]
    request_id = chat(gateway, key)
    wait_settled(database_url(gateway), "acme", 1)
    cost = BASE // 2  # vip: 0.5
    refund = {"amount_micro": cost, "request_id": request_id, "note": "bad answer"}
    assert admin.post("/accounts/acme/refunds", json=refund).json()["balance_micro"] == 3_000_000
    assert admin.post("/accounts/acme/refunds", json=refund).status_code == 409
    too_much = {"amount_micro": 1, "request_id": "req_unknown"}
    assert admin.post("/accounts/acme/refunds", json=too_much).status_code == 404

    shown = admin.get("/accounts/acme").json()
    assert shown["balance_micro"] == 3_000_000 and shown["usage"]["cost_micro"] == cost
    assert [k["name"] for k in shown["keys"]] == ["ci"]
    check = admin.get("/accounts/acme/check").json()
    assert check["ok"] and check["captured_micro"] == check["usage_cost_micro"] == cost
    kinds = [e["kind"] for e in admin.get("/accounts/acme/ledger").json()]
    assert kinds == ["refund", "capture", "adjustment", "topup", "topup"]
    names = [a["name"] for a in admin.get("/accounts").json()]
    assert "acme" in names and "x" not in names  # the refused create left nothing behind
    assert_ledger_consistent(database_url(gateway), "acme")


def test_groups_and_overrides_reprice_calls(own_admin):
    gateway, admin = own_admin
    groups = {g["name"]: g for g in admin.get("/groups").json()}
    assert groups["vip"] == {"name": "vip", "multiplier": 0.5, "source": "config"}
    assert admin.post("/groups", json={"name": "gold", "multiplier": 0.25}).status_code == 201
    assert admin.post("/groups", json={"name": "gold", "multiplier": 1}).status_code == 409
    assert admin.post("/groups", json={"name": "neg", "multiplier": -1}).status_code == 400
    assert admin.put("/groups/vip", json={"multiplier": "0.75"}).json()["source"] == "database"
    assert admin.put("/groups/none", json={"multiplier": 1}).status_code == 404

    admin.post("/accounts", json={"name": "g", "group": "gold"})
    admin.post("/accounts/g/topups", json={"amount": "1"})
    key = admin.post("/keys", json={"account": "g"}).json()["key"]
    pricing = httpx.get(gateway.url + "/pricing", headers={"authorization": f"Bearer {key}"})
    mock = {m["model"]: m for m in pricing.json()["models"]}["mock-1"]
    assert (mock["input"], mock["output"]) == ("0.25", "0.5")  # per million tokens, x0.25

    url = database_url(gateway)  # the process that changed a group applies it at once
    chat(gateway, key)
    assert wait_settled(url, "g", 1).usage_cost == 7  # 28 x 0.25
    override = admin.put("/accounts/g/override", json={"multiplier": 2})
    assert override.json()["multiplier_override"] == 2.0
    wait_until(lambda: prices(gateway, key)["input"] == "2")  # keys (and so overrides) re-read
    chat(gateway, key)
    assert wait_settled(url, "g", 2).usage_cost == 7 + 56
    assert (
        admin.put("/accounts/g/override", json={"multiplier": None}).json()["multiplier_override"]
        is None
    )


def test_keys_lifecycle(gateway, admin):
    admin.post("/accounts", json={"name": "k"})
    admin.post("/accounts/k/topups", json={"amount": "1"})
    created = admin.post("/keys", json={"account": "k", "name": "app", "models": ["mock-*"]})
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    assert key.startswith("sk-") and key not in str(admin.get("/keys").json())
    listed = admin.get("/keys", params={"account": "k"}).json()
    assert [(k["id"], k["models"], k["status"]) for k in listed] == [
        (key_id, ["mock-*"], "enabled")
    ]
    chat(gateway, key)

    assert admin.post(f"/keys/{key_id}/disable").json()["status"] == "disabled"
    wait_until(lambda: key_status(gateway, key) == 403)
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, key)
    assert admin.post(f"/keys/{key_id}/enable").json()["status"] == "enabled"
    rotated = admin.post(f"/keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != key
    wait_until(lambda: key_status(gateway, key) == 401)
    with pytest.raises(openai.AuthenticationError):
        chat(gateway, key)
    chat(gateway, rotated["key"])
    assert admin.post(f"/keys/{key_id}/revoke").json()["status"] == "revoked"
    assert admin.post(f"/keys/{key_id}/enable").status_code == 409
    assert admin.post("/keys/999/disable").status_code == 404
    assert admin.post("/keys", json={"account": "ghost"}).status_code == 404


def test_codes_and_usage(gateway, admin):
    made = admin.post("/codes", json={"amount": "0.5", "count": 2}).json()
    assert made["amount_micro"] == 500_000 and len(set(made["codes"])) == 2
    listed = admin.get("/codes").json()
    assert len(listed) == 2 and all(c["redeemed_at"] is None for c in listed)
    assert not any(code in str(listed) for code in made["codes"])

    admin.post("/accounts", json={"name": "u"})
    key = admin.post("/keys", json={"account": "u"}).json()["key"]
    redeemed = httpx.post(
        gateway.url + "/v1/dashboard/redeem",
        json={"code": made["codes"][0]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert redeemed.json()["balance_micro"] == 500_000
    assert [c["redeemed_by"] for c in admin.get("/codes").json()] == ["u", None]
    assert len(admin.get("/codes", params={"unused": True}).json()) == 1

    for _ in range(3):
        chat(gateway, key)
    wait_settled(database_url(gateway), "u", 3)
    usage = admin.get("/usage", params={"account": "u", "days": 1}).json()
    assert usage["totals"]["requests"] == 3 and usage["totals"]["cost_micro"] == 3 * BASE
    assert usage["lines"][0]["model"] == "mock-1"
    assert admin.get("/usage", params={"since": "2999-01-01"}).json()["totals"]["requests"] == 0
    assert admin.get("/usage", params={"since": "yesterday"}).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "/usage?key=9803980210404412266381312",
        "/audit?offset=9803980210404412266381312",
        "/audit?limit=9034&offset=-1",
        "/usage?key=0",
    ],
)
def test_integers_too_large_for_the_database_are_400_not_500(gateway, admin, query):
    """Found by schemathesis: a query integer past SQLite's 64 bits failed inside the
    database driver (500); the parameters are bounded now, so it is a validation error."""
    response = admin.get(query)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert admin.get("/usage").status_code == 200  # and the server is fine
