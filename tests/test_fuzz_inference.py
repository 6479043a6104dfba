"""Fuzzing every inference endpoint of every family against one running gateway.

Generated bodies (valid-ish requests with fields replaced by arbitrary JSON, garbage bytes,
deep nesting, huge numbers, bad UTF-8), headers and query strings; a fixed seed keeps the
run reproducible and bounded. The gateway must never answer a 5xx other than 502/503/504,
must answer every 4xx in the family's error shape, must not charge a refused call, and must
be healthy afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import MOCK_PROVIDER, Gateway, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_checks import read_ledger
from sqlalchemy import text
from tokone.core.store.db import make_engine

MESSAGES = [{"role": "user", "content": "hi"}]
CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]
OPENAI = {
    "/v1/chat/completions": {"model": "mock-1", "messages": MESSAGES, "max_tokens": 8},
    "/v1/completions": {"model": "mock-1", "prompt": "hi", "max_tokens": 8},
    "/v1/embeddings": {"model": "mock-1", "input": "hi"},
    "/v1/responses": {"model": "mock-1", "input": "hi", "max_output_tokens": 8},
    "/v1/responses/input_tokens": {"model": "mock-1", "input": "hi"},
}
ANTHROPIC = {
    "/v1/messages": {"model": "mock-1", "max_tokens": 8, "messages": MESSAGES},
    "/v1/messages/count_tokens": {"model": "mock-1", "messages": MESSAGES},
}
GEMINI = {
    "generateContent": {"contents": CONTENTS, "generationConfig": {"maxOutputTokens": 8}},
    "streamGenerateContent": {"contents": CONTENTS},
    "countTokens": {"contents": CONTENTS},
    "embedContent": {"content": {"parts": [{"text": "hi"}]}},
    "batchEmbedContents": {
        "requests": [{"model": "models/mock-1", "content": {"parts": [{"text": "hi"}]}}]
    },
}
ALLOWED_5XX = {502, 503, 504}
PROVIDERS = MOCK_PROVIDER
"""One gateway (conftest's `gateway`: mock provider, SQLite) for the whole module."""


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    """A funded key of account `fuzz`."""
    return gateway.funded_key("fuzz", "100")


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["mock-1", "../x", "a/b", "x?y", "%2e%2e", "m\x00", "\u202e", "models/mock-1"]),
)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "model",
    "messages",
    "prompt",
    "input",
    "contents",
    "content",
    "requests",
    "max_tokens",
    "max_output_tokens",
    "max_completion_tokens",
    "generationConfig",
    "stream",
    "service_tier",
    "system",
    "tools",
    "n",
]


@st.composite
def bodies(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A request body derived from `base`: mutated JSON, or raw garbage of several kinds."""
    kind = draw(
        st.sampled_from(["valid", "mutated", "mutated", "mutated", "raw", "deep", "number", "utf8"])
    )
    if kind in ("valid", "mutated"):
        body = json.loads(json.dumps(base))
        if kind == "mutated":
            for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
                if draw(st.booleans()) and name in body:
                    del body[name]
                else:
                    body[name] = draw(json_values)
        if draw(st.booleans()):
            return json.dumps(body).encode()
        return json.dumps(draw(st.sampled_from([[body], "x", 1, None, [], body]))).encode()
    if kind == "raw":
        return draw(
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from([b"", b"{", b"}", b"null", b"[]", b'{"model":', b"\x00" * 8]),
            )
        )
    if kind == "deep":
        depth = draw(st.sampled_from([50, 500, 5_000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = opener * depth + "1" + closer * depth
        field = draw(st.sampled_from(["messages", "contents", "input", "model", "extra"]))
        return ('{"model": "mock-1", "' + field + '": ' + inner + "}").encode()
    if kind == "number":
        number = draw(
            st.sampled_from(
                [
                    "1e999999",
                    "-1e999999",
                    "9" * 5000,
                    "-" + "9" * 5000,
                    "1" + "0" * 400,
                    "NaN",
                    "Infinity",
                    "-0",
                    "1.5",
                    "0x10",
                    "1e-999999",
                ]
            )
        )
        field = draw(
            st.sampled_from(["max_tokens", "max_output_tokens", "n", "temperature", "model"])
        )
        body = json.dumps({**base, field: "@@"}).replace('"@@"', number)
        return body.encode()
    # bad UTF-8 inside a string (or as a key)
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
    raw = json.dumps(base).encode()
    return raw.replace(b"hi", b"h" + bad, 1) if b"hi" in raw else raw.replace(b"mock", bad, 1)


model_names = st.one_of(
    st.just("mock-1"),
    st.just("mock-1"),
    st.sampled_from(["", "unknown-model", "models", "mock-1:x", "..", "a%2Fb", "\u00e9"]),
    st.text(max_size=12),
)


@st.composite
def requests(draw: st.DrawFn, key: str) -> tuple[str, str, dict[str, str], bytes]:
    """(family, path with query, headers, body) for one inference call."""
    family = draw(st.sampled_from(["openai", "anthropic", "gemini"]))
    if family == "openai":
        path = draw(st.sampled_from(sorted(OPENAI)))
        base = OPENAI[path]
    elif family == "anthropic":
        path = draw(st.sampled_from(sorted(ANTHROPIC)))
        base = ANTHROPIC[path]
    else:
        action = draw(st.sampled_from(sorted(GEMINI)))
        version = draw(st.sampled_from(["v1beta", "v1"]))
        path = f"/{version}/models/{quote(draw(model_names), safe='')}:{action}"
        base = GEMINI[action]
    query = draw(
        st.one_of(
            st.just(""),
            st.sampled_from(
                [
                    "?alt=sse",
                    "?key=sk-nope",
                    "?api_key=x",
                    "?%6Bey=x",
                    "?a=%FF%FE",
                    "?alt=json&",
                    "?=",
                    "?beta=true",
                    "?" + "x=1&" * 200,
                ]
            ),
            st.text(max_size=20).map(lambda q: "?" + quote(q)),
        )
    )
    credential = draw(st.sampled_from([key, key, key, key, "", "sk-unknown", "admin-test-key"]))
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if credential:
        header = draw(
            st.sampled_from(
                {
                    "openai": ["authorization", "authorization", "x-api-key"],
                    "anthropic": ["x-api-key", "x-api-key", "authorization"],
                    "gemini": ["x-goog-api-key", "x-goog-api-key", "authorization"],
                }[family]
            )
        )
        headers[header] = f"Bearer {credential}" if header == "authorization" else credential
    if family == "anthropic":
        headers["anthropic-version"] = draw(st.sampled_from(["2023-06-01", "", "garbage"]))
    extra = draw(
        st.dictionaries(
            st.sampled_from(["openai-beta", "x-request-id", "accept", "x-stainless-lang", "x-foo"]),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
            max_size=2,
        )
    )
    headers.update({k: v.strip() for k, v in extra.items()})
    return family, path + query, headers, draw(bodies(base))


def assert_error_shape(family: str, status: int, body: Any) -> None:
    """The family's error shape."""
    if family == "openai":
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    elif family == "anthropic":
        assert isinstance(body, dict) and body.get("type") == "error", body
        assert set(body["error"]) == {"type", "message"}, body
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "status"}, body
        assert body["error"]["code"] == status, body


def test_fuzz_inference_endpoints(gateway: Gateway, key: str) -> None:
    """Fuzz, then check that no refused call was charged and that the gateway still serves
    each family (one test: the checks need what this fuzzer run did)."""
    refused: list[str] = []  # request ids of every 4xx the fuzzer got
    client = httpx.Client(base_url=gateway.url, timeout=30)

    @settings(
        derandomize=True,
        max_examples=1000,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(key))
    def one(request: tuple[str, str, dict[str, str], bytes]) -> None:
        family, path, headers, body = request
        response = client.post(path, content=body, headers=headers)
        status = response.status_code
        assert status < 500 or status in ALLOWED_5XX, (status, response.text[:500])
        assert response.headers.get("x-request-id"), response.headers
        if 400 <= status < 500:
            try:
                parsed = response.json()
            except ValueError:
                raise AssertionError(f"{status} is not JSON: {response.text[:300]!r}") from None
            assert_error_shape(family, status, parsed)
            refused.append(response.headers["x-request-id"])

    try:
        one()
    finally:
        client.close()
    assert refused
    assert_not_charged(gateway, key, refused)
    assert_healthy(gateway, key)


def assert_not_charged(gateway: Gateway, key: str, refused: list[str]) -> None:
    """None of the `refused` calls has a charge or a capture; the account's ledger checks."""
    url = f"sqlite:///{Path(gateway.directory) / 'tokone.db'}"
    # The ledger writer settles in order: once a call made now is recorded and nothing is
    # held, every fuzzed call before it is settled too.
    barrier = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=OPENAI["/v1/chat/completions"],
        headers={"authorization": f"Bearer {key}"},
    )
    assert barrier.status_code == 200, barrier.text
    last = barrier.headers["x-request-id"]
    wait_until(lambda: (s := read_ledger(url, "fuzz")).held == 0 and last in s.usage)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            charged = {
                row[0]: row[1]
                for row in conn.execute(
                    text("SELECT request_id, cost FROM usage_records WHERE cost <> 0")
                )
            }
            captures = {
                row[0]
                for row in conn.execute(
                    text("SELECT request_id FROM ledger_entries WHERE kind = 'capture'")
                )
            }
    finally:
        engine.dispose()
    assert not (set(refused) & set(charged)), sorted(set(refused) & set(charged))[:10]
    assert not (set(refused) & captures)
    assert "OK" in gateway.cli("accounts", "check", "fuzz")


def assert_healthy(gateway: Gateway, key: str) -> None:
    """/healthz answers, a call of each family succeeds, and the log has no traceback."""
    assert httpx.get(gateway.url + "/healthz", timeout=5).json() == {"status": "ok"}
    auth = {"authorization": f"Bearer {key}"}
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=OPENAI["/v1/chat/completions"], headers=auth
    )
    assert response.status_code == 200, response.text
    response = httpx.post(
        gateway.url + "/v1/messages",
        json=ANTHROPIC["/v1/messages"],
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    response = httpx.post(
        gateway.url + "/v1beta/models/mock-1:generateContent",
        json=GEMINI["generateContent"],
        headers={"x-goog-api-key": key},
    )
    assert response.status_code == 200, response.text
    assert "Traceback" not in gateway.log
