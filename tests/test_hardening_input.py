"""Hostile input at the door: model names in URLs, keys in queries, bad numbers, bad bodies.

One gateway runs against the fake upstream with wildcard channels for all three families
(the case that let a model name such as ``gemini-x/../../files`` reach another path of the
upstream with the gateway's own key). Every refusal must be a 400 in the caller's family
shape, carry ``x-request-id``, charge nothing, send nothing upstream, and leave the server
healthy for the next call.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import websockets
from conftest import (
    BASE_TOML,
    KEY_ACCOUNTS,
    MOCK_PROVIDER,
    Gateway,
    free_port,
    new_key,
    price,
    provider,
)
from fake_upstream import FakeUpstream
from sqlalchemy import text
from tokone.core.config import load_config
from tokone.core.errors import GatewayError
from tokone.core.http.inference import InferenceIngress
from tokone.core.store.db import make_engine
from tokone.core.types import Call, Family

UPSTREAM_KEY = "upstream-secret-gemini"
MAX_BODY = 200_000
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SECRETS = (UPSTREAM_KEY, "upstream-secret-openai", "upstream-secret-anthropic")
PROVIDERS = (
    MOCK_PROVIDER
    + provider("google", "{base}", models=("gemini-*",), adapter="gemini", api_key="{upstream_key}")
    + provider("oa", "{base}/v1", models=("gpt-*", LLAMA), api_key=SECRETS[1])
    + provider("an", "{base}", models=("claude-*",), adapter="anthropic", api_key=SECRETS[2])
    + "".join(price(model, 1.0, 2.0) for model in ("gemini-*", "gpt-*", "claude-*", LLAMA))
)
pytestmark = pytest.mark.usefixtures("reset_upstream")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Gateway]:
    """The gateway with wildcard channels on the fake upstream and a small body limit."""
    directory = tmp_path_factory.mktemp("hardening")
    port = free_port()
    config = BASE_TOML.format(port=port, database=f"sqlite:///{directory / 'tokone.db'}")
    config = config.replace(
        'secret = "test-secret"', f'secret = "test-secret"\nmax_body_bytes = {MAX_BODY}'
    )
    config += PROVIDERS.format(base=upstream.base_url, upstream_key=UPSTREAM_KEY)
    gw = Gateway(directory, config, port).start()
    yield gw
    gw.stop()


@pytest.fixture
def key(gateway: Gateway) -> str:
    """A funded key of a fresh account."""
    return new_key(gateway, "10")


def account_state(gateway: Gateway, key: str) -> tuple[int, int, int]:
    """(balance, held, usage records) of the key's account."""
    engine = make_engine(load_config(str(gateway.config_path)).database.url)
    try:
        with engine.connect() as conn:
            balance, held = conn.execute(
                text("SELECT balance, held FROM accounts WHERE name = :n"),
                {"n": KEY_ACCOUNTS[key]},
            ).one()
            count = conn.execute(
                text(
                    "SELECT count(*) FROM usage_records u JOIN accounts a "
                    "ON a.id = u.account_id WHERE a.name = :n AND u.cost > 0"
                ),
                {"n": KEY_ACCOUNTS[key]},
            ).scalar_one()
    finally:
        engine.dispose()
    return balance, held, count


def raw_post(gateway: Gateway, target: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST `target` exactly as written (no client-side normalisation of the path)."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request(
            "POST", target, body=body, headers={"content-type": "application/json", **headers}
        )
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def assert_family_400(family: str, status: int, body: bytes, param: str | None = None) -> None:
    """A 400 in `family`'s error shape (with `param` for OpenAI when given)."""
    assert status == 400, body
    data = json.loads(body)
    if family == "gemini":
        assert data["error"]["code"] == 400 and data["error"]["status"] == "INVALID_ARGUMENT"
    elif family == "anthropic":
        assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    else:
        assert data["error"]["type"] == "invalid_request_error", data
        if param is not None:
            assert data["error"]["param"] == param, data
    for secret in SECRETS:
        assert secret.encode() not in body


GEMINI_BODY = json.dumps({"contents": [{"parts": [{"text": "hello there"}]}]}).encode()

# --------------------------------------------------------------------------- 1. model names

TRAVERSALS = [
    "gemini-x%2f..%2f..%2f..%2fv1beta%2ffiles:generateContent",
    "gemini-x%2f..%2fgemini-cheap:generateContent",
    "gemini-x%2F%2E%2E%2Fgemini-cheap:generateContent",
    "gemini-x/../gemini-cheap:generateContent",
    "gemini-x%5c..%5cgemini-cheap:generateContent",
    "gemini-x%3fkey%3d1:generateContent",
    "gemini-x%23frag:generateContent",
    "gemini-x%2525:generateContent",
    "gemini-x%20y:generateContent",
    "gemini-x%09:generateContent",
    "gemini-x%00:generateContent",
    "gemini-x%0d%0aX-Injected:%201:generateContent",
    "gemini-..:generateContent",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_a_gemini_model_path_cannot_leave_its_segment(gateway, upstream, key, target):
    before = account_state(gateway, key)
    status, headers, body = raw_post(
        gateway, f"/v1beta/models/{target}", GEMINI_BODY, {"x-goog-api-key": key}
    )
    assert status in (400, 404), body  # 404 only where the path no longer names a model action
    json.loads(body)["error"]["status"]  # Gemini shape either way
    assert headers.get("x-request-id", "").startswith("req_")
    for secret in SECRETS:
        assert secret.encode() not in body
    assert upstream.requests == []
    assert account_state(gateway, key) == before
    ok_status, _, _ = raw_post(
        gateway, "/v1beta/models/gemini-ok:generateContent", GEMINI_BODY, {"x-goog-api-key": key}
    )
    assert ok_status == 200
    assert [r.path for r in upstream.requests] == ["/v1beta/models/gemini-ok:generateContent"]


def test_an_encoded_slash_in_a_gemini_model_is_a_400_on_param_model(gateway, upstream, key):
    status, _, body = raw_post(
        gateway,
        "/v1beta/models/gemini-x%2f..%2fgemini-cheap:generateContent",
        GEMINI_BODY,
        {"x-goog-api-key": key},
    )
    assert_family_400("gemini", status, body)
    assert "model" in json.loads(body)["error"]["message"].lower()
    assert upstream.requests == []


BAD_NAMES = [
    "gpt-x/../gpt-cheap",
    "gpt-x?y=1",
    "gpt-x#y",
    "gpt-x%2f",
    "gpt x",
    "gpt-x\n",
    "gpt-x\x00",
    "gpt-..",
    "claude-x/../y",
    "",
    "a" * 300,
]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    ("path", "family", "extra"),
    [
        ("/v1/chat/completions", "openai", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", "openai", {"prompt": "hi"}),
        ("/v1/embeddings", "openai", {"input": "hi"}),
        ("/v1/responses", "openai", {"input": "hi"}),
        (
            "/v1/messages",
            "anthropic",
            {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        ),
        (
            "/v1/messages/count_tokens",
            "anthropic",
            {"messages": [{"role": "user", "content": "hi"}]},
        ),
    ],
)
def test_bad_model_names_are_refused_on_every_family(
    gateway, upstream, key, name, path, family, extra
):
    body = json.dumps({"model": name, **extra}).encode()
    auth = {"x-api-key": key} if family == "anthropic" else {"authorization": f"Bearer {key}"}
    status, headers, reply = raw_post(gateway, path, body, auth)
    assert_family_400(family, status, reply, param="model")
    assert headers.get("x-request-id", "").startswith("req_")
    assert upstream.requests == []


def test_a_slash_separated_model_name_travels_in_the_body_only(gateway, upstream, key):
    """vLLM-style names (`org/model`) work where the model is in the body, never in a URL."""
    name = "meta-llama/Llama-3.1-8B-Instruct"
    body = json.dumps({"model": name, "messages": [{"role": "user", "content": "hi"}]})
    status, _, reply = raw_post(
        gateway, "/v1/chat/completions", body.encode(), {"authorization": f"Bearer {key}"}
    )
    assert status == 200, reply
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]
    assert upstream.requests[0].json["model"] == name
    upstream.reset()
    status, _, reply = raw_post(
        gateway, f"/v1beta/models/{name}:generateContent", GEMINI_BODY, {"x-goog-api-key": key}
    )
    assert_family_400("gemini", status, reply)
    assert upstream.requests == []


def test_a_bad_model_name_in_a_websocket_turn_is_an_error_frame(gateway, upstream, key):
    async def run() -> list[dict[str, Any]]:
        url = gateway.url.replace("http", "ws") + "/v1/responses"
        async with websockets.connect(
            url, additional_headers={"authorization": f"Bearer {key}"}
        ) as socket:
            frames = []
            for name in ("gpt-x/../gpt-cheap", "gpt-x?y"):
                await socket.send(
                    json.dumps({"type": "response.create", "model": name, "input": "hi"})
                )
                frames.append(json.loads(await socket.recv()))
            return frames

    for frame in asyncio.run(run()):
        assert frame["type"] == "error" and frame["status"] == 400
        assert frame["error"]["param"] == "model"
    assert upstream.requests == []


def test_a_wildcard_does_not_match_across_a_slash():
    from tokone.core.config import ModelPrice
    from tokone.plugins.routing import serves
    from tokone.plugins.token_pricing import model_price

    class Provider:
        models = ("gemini-*",)
        model_map: ClassVar[dict[str, str]] = {}

    assert serves(Provider(), "gemini-2.5-flash")  # type: ignore[arg-type]
    assert not serves(Provider(), "gemini-x/../other")  # type: ignore[arg-type]

    class Config:
        prices: ClassVar[dict[str, ModelPrice]] = {"gemini-*": ModelPrice(input=1.0, output=2.0)}

    assert model_price(Config(), "gemini-flash") is not None  # type: ignore[arg-type]
    assert model_price(Config(), "gemini-x/../other") is None  # type: ignore[arg-type]


def test_the_gemini_adapter_refuses_a_model_that_would_leave_its_path_segment():
    from tokone.core.config import ProviderConfig
    from tokone.providers.gemini import GeminiAdapter

    adapter = GeminiAdapter(
        ProviderConfig(
            name="g", adapter="gemini", base_url="http://up.example", models=["gemini-*"]
        )
    )
    call = Call(request_id="r", family=Family.GEMINI, endpoint="generateContent", model="m")
    assert adapter.path(call, "gemini-ok") == "/v1beta/models/gemini-ok:generateContent"
    for bad in ("a/../b", "a?b", "a#b", "a%2fb", "..", "a b", "a\x00"):
        with pytest.raises(GatewayError) as info:
            adapter.path(call, bad)
        assert info.value.status == 400 and info.value.param == "model"
    # a path httpx would normalise (dot segments) or re-encode is refused, never rewritten
    assert adapter.url("/v1beta/models/ok:x?alt=sse").raw_path == b"/v1beta/models/ok:x?alt=sse"
    for path in ("/v1beta/models/a/../b:x", "/v1beta/models/./b:x", "/v1beta/models/a b:x"):
        with pytest.raises(GatewayError):
            adapter.url(path)


# --------------------------------------------------------------------------- 2. key in query

ENCODED_KEYS = [
    "%6Bey=sk-x",
    "ke%79=sk-x",
    "KEY=sk-x",
    "Key=sk-x",
    "api%5Fkey=sk-x",
    "api%2dkey=sk-x",
    "a=1&%6b%65%79=sk-x",
    "%61pi_key=sk-x",
    "apikey=sk-x",
    "x-goog-api-key=sk-x",
]


@pytest.mark.parametrize("query", ENCODED_KEYS)
def test_an_encoded_key_in_the_query_is_refused_everywhere(gateway, upstream, key, query):
    auth = {"authorization": f"Bearer {key}"}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        ("POST", "/v1/chat/completions", auth, chat, "openai"),
        (
            "POST",
            "/v1/messages",
            {"x-api-key": key},
            {**chat, "model": "claude-x", "max_tokens": 5},
            "anthropic",
        ),
        (
            "POST",
            "/v1beta/models/gemini-ok:generateContent",
            {"x-goog-api-key": key},
            json.loads(GEMINI_BODY),
            "gemini",
        ),
        ("GET", "/v1/models", auth, None, "openai"),
        ("GET", "/v1/models/mock-1", auth, None, "openai"),
        ("GET", "/v1beta/models", {"x-goog-api-key": key}, None, "gemini"),
        (
            "GET",
            "/v1/models",
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
            None,
            "anthropic",
        ),
    ]
    for method, path, headers, body, family in cases:
        response = httpx.request(method, f"{gateway.url}{path}?{query}", headers=headers, json=body)
        assert_family_400(family, response.status_code, response.content)
        if family == "openai":
            assert response.json()["error"]["code"] == "api_key_in_query"
    assert upstream.requests == []

    async def handshake() -> int:
        url = gateway.url.replace("http", "ws") + f"/v1/responses?{query}"
        try:
            async with websockets.connect(url, additional_headers=auth):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(handshake()) == 400


def test_query_parameters_that_merely_mention_key_pass(gateway, key):
    response = httpx.get(
        f"{gateway.url}/v1/models?monkey=1&keys_only=%25",
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200


# --------------------------------------------------------------------------- 5. numbers

NUMERIC_CASES = [
    (
        "/v1/chat/completions",
        "openai",
        "max_tokens",
        {"messages": [{"role": "user", "content": "hi"}]},
    ),
    (
        "/v1/chat/completions",
        "openai",
        "max_completion_tokens",
        {"messages": [{"role": "user", "content": "hi"}]},
    ),
    ("/v1/responses", "openai", "max_output_tokens", {"input": "hi"}),
    ("/v1/messages", "anthropic", "max_tokens", {"messages": [{"role": "user", "content": "hi"}]}),
]
BAD_NUMBERS = [b"-100", b"-1", b"10000001", b"1" + b"0" * 400, b"1e400", b"true", b"1.5", b'"100"']


@pytest.mark.parametrize("number", BAD_NUMBERS)
@pytest.mark.parametrize(("path", "family", "field", "extra"), NUMERIC_CASES)
def test_negative_or_absurd_output_caps_are_refused_before_admission(
    gateway, upstream, number, path, family, field, extra
):
    empty = new_key(gateway, "")  # an account with a balance of 0
    model = "claude-x" if family == "anthropic" else "gpt-4o-mini"
    body = json.dumps({"model": model, **extra, field: "NUMBER"}).encode()
    body = body.replace(b'"NUMBER"', number)
    auth = {"x-api-key": empty} if family == "anthropic" else {"authorization": f"Bearer {empty}"}
    status, headers, reply = raw_post(gateway, path, body, auth)
    assert_family_400(family, status, reply, param=field)
    assert headers.get("x-request-id", "").startswith("req_")
    assert upstream.requests == []


@pytest.mark.parametrize("number", BAD_NUMBERS)
@pytest.mark.parametrize("field", ["maxOutputTokens", "max_output_tokens"])
def test_negative_or_absurd_gemini_output_caps_are_refused(gateway, upstream, number, field):
    empty = new_key(gateway, "")
    body = (
        b'{"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"'
        + field.encode()
        + b'": '
        + number
        + b"}}"
    )
    status, _, reply = raw_post(
        gateway, "/v1beta/models/gemini-ok:generateContent", body, {"x-goog-api-key": empty}
    )
    assert_family_400("gemini", status, reply)
    assert upstream.requests == []


BAD_CHOICES = [b"0", b"-1", b"129", b"true", b"1.5", b'"2"']


@pytest.mark.parametrize("number", BAD_CHOICES)
@pytest.mark.parametrize(
    ("path", "field", "extra"),
    [
        ("/v1/chat/completions", "n", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", "n", {"prompt": "hi"}),
        ("/v1/completions", "best_of", {"prompt": "hi"}),
    ],
)
def test_absurd_choice_counts_are_refused(gateway, upstream, key, number, path, field, extra):
    body = json.dumps({"model": "gpt-4o-mini", **extra, field: "NUMBER"}).encode()
    body = body.replace(b'"NUMBER"', number)
    status, _, reply = raw_post(gateway, path, body, {"authorization": f"Bearer {key}"})
    assert_family_400("openai", status, reply, param=field)
    assert upstream.requests == []


def test_the_hold_covers_every_choice(gateway, upstream):
    """`n` (and Gemini's `candidateCount`) multiply the output, so they multiply the hold:
    a balance of 1 covers one 1M-token choice of gpt-4o-mini (0.6 at 0.6 per million), not
    eight."""
    funded = new_key(gateway, "1")
    chat = {"model": "gpt-4o-mini", "max_tokens": 1_000_000, "messages": [{"role": "user"}]}
    auth = {"authorization": f"Bearer {funded}"}
    reply = httpx.post(gateway.url + "/v1/chat/completions", json={**chat, "n": 8}, headers=auth)
    assert reply.status_code == 402, reply.text
    url = gateway.url + "/v1beta/models/gemini-ok:generateContent"
    for count, status in ((8, 402), (1, 200)):  # gemini-* at 2 per million: 0.2 a choice
        config = {"maxOutputTokens": 100_000, "candidateCount": count}
        gemini = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": config}
        reply = httpx.post(url, json=gemini, headers={"x-goog-api-key": funded})
        assert reply.status_code == status, reply.text
        if status == 402:
            assert upstream.requests == []
    reply = httpx.post(gateway.url + "/v1/chat/completions", json={**chat, "n": 1}, headers=auth)
    assert reply.status_code == 200, reply.text


def test_an_empty_account_is_refused_whatever_max_tokens_says(gateway, upstream):
    empty = new_key(gateway, "")
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 0,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {empty}"},
    )
    assert response.status_code == 402
    assert upstream.requests == []


def test_the_ledger_never_holds_nothing_for_a_call_that_can_produce_output(tmp_path):
    from tokone.core.gateway import Gateway as Core
    from tokone.plugins.ledger.cost import worst_case_cost

    config_path = tmp_path / "tokone.toml"
    config_path.write_text(
        BASE_TOML.format(port=1, database=f"sqlite:///{tmp_path / 'db.sqlite'}")
        + PROVIDERS.format(base="http://127.0.0.1:1", upstream_key="k")
    )
    core = Core(load_config(str(config_path)))
    for cap in (-100, -1, 0, None):
        call = Call(
            request_id="r",
            family=Family.OPENAI,
            endpoint="chat.completions",
            model="gpt-4o-mini",
            raw=b'{"model": "gpt-4o-mini"}',
            max_output_tokens=cap,
        )
        assert worst_case_cost(call, core) > 0, cap
    core.engine.dispose()


# --------------------------------------------------------------------------- 7. bodies

DEPTH = 10_000
BAD_BODIES = {
    "array": b"[]",
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "model_int": b'{"model": 5}',
    "model_list": b'{"model": ["gpt-4o-mini"]}',
    "messages_str": b'{"model": "MODEL", "messages": "hi"}',
    "messages_obj": b'{"model": "MODEL", "messages": {"role": "user"}}',
    "stream_str": b'{"model": "MODEL", "stream": "yes"}',
    "max_tokens_str": b'{"model": "MODEL", "max_tokens": "5"}',
    "invalid_utf8": b'{"model": "MODEL", "input": "\xff\xfe"}',
    "invalid_utf8_model": b'{"model": "gpt\xff"}',
    "deep_top": b"[" * DEPTH + b"]" * DEPTH,
    "deep_inside": b'{"model": "MODEL", "input": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "deep_objects": b'{"model": "MODEL", "x": ' + b'{"a":' * DEPTH + b"1" + b"}" * DEPTH + b"}",
    "huge_int_cap": b'{"model": "MODEL", "max_tokens": ' + b"1" + b"0" * 400 + b"}",
    "truncated": b'{"model": "MODEL", "messages": [',
}
ENDPOINTS = [
    ("/v1/chat/completions", "openai", "gpt-4o-mini"),
    ("/v1/completions", "openai", "gpt-4o-mini"),
    ("/v1/embeddings", "openai", "gpt-4o-mini"),
    ("/v1/responses", "openai", "gpt-4o-mini"),
    ("/v1/responses/input_tokens", "openai", "gpt-4o-mini"),
    ("/v1/messages", "anthropic", "claude-x"),
    ("/v1/messages/count_tokens", "anthropic", "claude-x"),
    ("/v1beta/models/gemini-ok:generateContent", "gemini", "gemini-ok"),
    ("/v1beta/models/gemini-ok:streamGenerateContent", "gemini", "gemini-ok"),
    ("/v1beta/models/gemini-ok:countTokens", "gemini", "gemini-ok"),
    ("/v1/models/gemini-ok:embedContent", "gemini", "gemini-ok"),
]
GEMINI_SKIP = {
    "model_int",
    "model_list",
    "messages_str",
    "messages_obj",
    "stream_str",
    "max_tokens_str",
    "invalid_utf8_model",
    "huge_int_cap",
}
"""Fields Gemini bodies do not have (the model is in the path)."""


@pytest.mark.parametrize(("path", "family", "model"), ENDPOINTS)
def test_malformed_bodies_are_400_never_500_never_charged(
    gateway, upstream, key, path, family, model
):
    before = account_state(gateway, key)
    if family == "anthropic":
        auth = {"x-api-key": key}
    elif family == "gemini":
        auth = {"x-goog-api-key": key}
    else:
        auth = {"authorization": f"Bearer {key}"}
    for name, body in BAD_BODIES.items():
        if family == "gemini" and name in GEMINI_SKIP:
            continue
        if family == "anthropic" and name in ("messages_str", "messages_obj"):
            body = body.replace(b'"MODEL"', b'"MODEL", "max_tokens": 5')
        if family != "openai" and name == "stream_str" and "count" in path:
            continue
        status, headers, reply = raw_post(
            gateway, path, body.replace(b"MODEL", model.encode()), auth
        )
        assert status == 400, (name, status, reply[:300])
        assert_family_400(family, status, reply)
        assert headers.get("x-request-id", "").startswith("req_"), name
    assert upstream.requests == [], [r.path for r in upstream.requests]
    assert account_state(gateway, key) == before
    # the server is healthy afterwards
    good = {
        "openai": {
            "model": model,
            "input": "hi",
            "prompt": "hi",
            "messages": [{"role": "user", "content": "hi"}],
        },
        "anthropic": {
            "model": model,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        },
        "gemini": json.loads(GEMINI_BODY),
    }[family]
    if path == "/v1/embeddings":
        good = {"model": model, "input": "hi"}
    status, _, reply = raw_post(gateway, path, json.dumps(good).encode(), auth)
    assert status == 200, reply[:300]


def test_a_number_out_of_range_outside_the_read_fields_is_a_400_never_a_500(gateway, upstream, key):
    auth = {"authorization": f"Bearer {key}"}
    # the gateway re-encodes a stream's body (to ask for usage): it finds the number itself
    body = b'{"model": "gpt-4o-mini", "stream": true, "temperature": 1e400, "messages": []}'
    status, headers, reply = raw_post(gateway, "/v1/chat/completions", body, auth)
    assert_family_400("openai", status, reply)
    assert headers.get("x-request-id", "").startswith("req_")
    assert upstream.requests == []
    # a body passed on untouched is the upstream's to judge: its 400 comes back, uncharged
    before = account_state(gateway, key)
    body = b'{"model": "gpt-4o-mini", "temperature": 1e400, "messages": []}'
    status, _, reply = raw_post(gateway, "/v1/chat/completions", body, auth)
    assert_family_400("openai", status, reply)
    assert account_state(gateway, key) == before


# --------------------------------------------------------------------------- 9. headers


def test_every_header_of_a_fast_path_reply_appears_once(gateway, upstream, key):
    for path, body, auth in [
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            {"authorization": f"Bearer {key}"},
        ),
        (
            "/v1/messages",
            {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            {"x-api-key": key},
        ),
        (
            "/v1beta/models/gemini-ok:generateContent",
            json.loads(GEMINI_BODY),
            {"x-goog-api-key": key},
        ),
        ("/v1/chat/completions", {"model": "nope"}, {"authorization": f"Bearer {key}"}),
    ]:
        response = httpx.post(gateway.url + path, json=body, headers=auth)
        names = [name.lower() for name, _ in response.headers.raw]
        assert len(names) == len(set(names)), (path, response.headers.raw)
        assert response.headers["x-request-id"].startswith("req_")


def test_413_answers_carry_a_request_id_on_every_family(gateway, key):
    big = b'{"model": "gpt-4o-mini", "input": "' + b"x" * (MAX_BODY + 10) + b'"}'
    for path, auth, _family in [
        ("/v1/chat/completions", {"authorization": f"Bearer {key}"}, "openai"),
        ("/v1/messages", {"x-api-key": key}, "anthropic"),
        ("/v1beta/models/gemini-ok:generateContent", {"x-goog-api-key": key}, "gemini"),
    ]:
        response = httpx.post(
            gateway.url + path, content=big, headers={**auth, "content-type": "application/json"}
        )
        assert response.status_code == 413, (path, response.text[:200])
        assert response.headers["x-request-id"].startswith("req_"), path
        assert "error" in response.json()


async def _drive(app: Any, path: str, body: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": []}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], start["headers"]


def test_fast_path_internal_errors_and_413_carry_a_request_id():
    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    app = InferenceIngress(fallback, {"/x": (Family.OPENAI, broken)}, max_body=10)
    status, headers = asyncio.run(_drive(app, "/x", b"{}"))
    names = [k for k, _ in headers]
    assert status == 500 and b"x-request-id" in names
    assert len(names) == len(set(names))
    status, headers = asyncio.run(_drive(app, "/x", b"x" * 100))
    assert status == 413 and b"x-request-id" in [k for k, _ in headers]
