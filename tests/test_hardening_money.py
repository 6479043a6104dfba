"""Hardening: no delivered output is ever free, bad upstream usage never breaks metering, and
one failing `meter` plugin cannot keep the ledger from settling a call.

End to end against the fake upstream (tests/fake_upstream/ `misreport_usage`,
`cut_stream_after`), plus in-process checks of the relays and the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from conftest import KEY_ACCOUNTS, Gateway, new_key, price, provider, records
from fake_upstream import reply_pieces, reply_text
from ledger_checks import assert_ledger_consistent, database_url, wait_settled
from tokone.core import pipeline
from tokone.core.config import ProviderConfig
from tokone.core.tokens import estimate_chars
from tokone.core.types import Call, Candidate, Family, Outcome, Usage
from tokone.core.upstream import UpstreamReply
from tokone.plugins import metrics
from tokone.providers.anthropic import MessagesStreamRelay
from tokone.providers.gemini import GeminiStreamRelay
from tokone.providers.openai import ChatStreamRelay

N = 16
pytestmark = pytest.mark.usefixtures("reset_upstream")
PROMPT = "one two three four five six seven"
PROVIDERS = (
    provider("oa", "{base}/v1", models=("gpt-4o-mini", "text-embedding-3-small"))
    + provider("an", "{base}", models=("claude-sonnet-4-6",), adapter="anthropic")
    + provider("gm", "{base}", models=("gemini-2.5-flash",), adapter="gemini")
    + price("claude-sonnet-4-6", 3.0, 15.0)
    + price("gemini-2.5-flash", 0.30, 2.50)
    + price("text-embedding-3-small", 0.02)
)


def body_bytes(body: dict) -> bytes:
    """A request body as exact bytes (so the test knows the gateway's input estimate)."""
    return json.dumps(body).encode()


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
CALLS = {
    "chat": ("/v1/chat/completions", CHAT, "gpt-4o-mini", True),
    "completions": (
        "/v1/completions",
        {"model": "gpt-4o-mini", "prompt": PROMPT},
        "gpt-4o-mini",
        True,
    ),
    "responses": ("/v1/responses", {"model": "gpt-4o-mini", "input": PROMPT}, "gpt-4o-mini", True),
    "messages": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": PROMPT}],
        },
        "claude-sonnet-4-6",
        True,
    ),
    "embeddings": (
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": PROMPT},
        "text-embedding-3-small",
        False,
    ),
    "gemini": (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": [{"parts": [{"text": PROMPT}]}]},
        "gemini-2.5-flash",
        True,
    ),
}


def post(gateway: Gateway, key: str, path: str, raw: bytes) -> httpx.Response:
    """POST `raw` to the gateway with `key` in every family's header."""
    headers = {
        "authorization": f"Bearer {key}",
        "x-api-key": key,
        "x-goog-api-key": key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    return httpx.post(gateway.url + path, content=raw, headers=headers, timeout=30)


@pytest.mark.parametrize("name", ["chat", "completions", "responses", "messages", "embeddings"])
def test_whole_reply_without_usage_is_estimated_and_charged(gateway, upstream, name):
    path, body, model, has_output = CALLS[name]
    key = new_key(gateway, prefix="nousage")
    raw = body_bytes(body)
    upstream.misreport_usage("omit")
    response = post(gateway, key, path, raw)
    assert response.status_code == 200, response.text
    (row,) = records(gateway, key, 1)
    output = estimate_chars(len(reply_text(model, N))) if has_output else 0
    assert (row["input_tokens"], row["output_tokens"]) == (estimate_chars(len(raw)), output)
    assert row["estimated"] and row["status"] == 200
    assert row["cost"] > 0 or not has_output  # 21 embedding tokens cost under a micro-unit


@pytest.mark.parametrize("mode", ["negative", "garbage"])
@pytest.mark.parametrize("name", ["chat", "responses", "messages", "gemini"])
def test_bad_upstream_usage_is_clamped_flagged_and_settled(gateway, upstream, name, mode):
    path, body, _, _ = CALLS[name]
    key = new_key(gateway, prefix="badusage")
    raw = body_bytes(body)
    for _ in range(3):
        upstream.misreport_usage(mode)
        assert post(gateway, key, path, raw).status_code == 200
    rows = records(gateway, key, 3)  # every call recorded, nothing left held
    for row in rows:
        assert row["estimated"] and row["status"] == 200, row
        assert 0 < row["input_tokens"] < 10**6 and 0 < row["output_tokens"] < 10**6, row
        assert row["cost"] > 0
    assert "upstream_usage_invalid" in gateway.log
    assert_ledger_consistent(database_url(gateway), KEY_ACCOUNTS[key])


def test_cut_gemini_stream_is_charged_reported_input_and_estimated_output(gateway, upstream):
    key = new_key(gateway, prefix="gemcut")
    upstream.misreport_usage("late")
    upstream.cut_stream_after(3)
    raw = body_bytes(CALLS["gemini"][1])
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    post(gateway, key, path, raw)
    (row,) = records(gateway, key, 1)
    delivered = "".join(reply_pieces("gemini-2.5-flash", N)[:3])
    assert row["status"] == 502 and row["estimated"]
    assert (row["input_tokens"], row["output_tokens"]) == (7, estimate_chars(len(delivered)))


def test_cut_gemini_json_array_stream_stays_one_json_array(gateway, upstream):
    key = new_key(gateway, prefix="gemarr")
    upstream.cut_stream_after(3)
    raw = body_bytes(CALLS["gemini"][1])
    response = post(gateway, key, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", raw)
    elements = json.loads(response.content)
    assert isinstance(elements, list) and len(elements) == 4
    assert all("candidates" in element for element in elements[:3])
    error = elements[-1]["error"]
    assert error["code"] == 502 and error["status"] and "Stream failed" in error["message"]
    records(gateway, key, 1)


RAISING_METER = textwrap.dedent('''
    """A meter plugin that fails on every call."""
    from tokone.core.hookspecs import hookimpl


    @hookimpl
    def meter(call, outcome, gateway):
        raise RuntimeError("meter plugin exploded")
''')


def test_a_raising_meter_plugin_does_not_stop_settlement(make_gateway, plugin_modules):
    plugin_modules(exploding_meter=RAISING_METER)
    gateway = make_gateway('[plugins]\nmodules = ["exploding_meter"]\n')
    key = gateway.funded_key()
    calls = 5
    for _ in range(calls):
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200
    url = database_url(gateway)
    state = wait_settled(url, "demo", calls)
    assert len(state.usage) == calls and state.open_holds == 0 and state.held == 0
    state = assert_ledger_consistent(url, "demo")
    assert sum(state.captures.values()) == state.usage_cost > 0
    assert "meter_failed" in gateway.log and "exploding_meter" in gateway.log


# --------------------------------------------------------------------------- in-process


def fake_gateway(outcomes: list[Outcome]) -> SimpleNamespace:
    """Just enough of a Gateway for `pipeline.relay`: no pricing, a meter that records."""

    def meter(call, outcome, gateway):
        outcomes.append(outcome)

    impl = SimpleNamespace(
        function=meter,
        argnames=("call", "outcome", "gateway"),
        plugin_name="recorder",
        hookwrapper=False,
        wrapper=False,
    )
    hook = SimpleNamespace(
        price=lambda call, usage, gateway: None,
        meter=SimpleNamespace(get_hookimpls=lambda: [impl]),
    )
    return SimpleNamespace(
        hook=hook, log=SimpleNamespace(exception=lambda *a, **k: None, warning=lambda *a, **k: None)
    )


async def cut_after(*chunks: bytes) -> AsyncIterator[bytes]:
    """An upstream stream that breaks after `chunks`."""
    from tokone.core.upstream import UpstreamError

    for chunk in chunks:
        yield chunk
    raise UpstreamError("p: stream broke: cut")


def relay_outcome(call: Call, relay, *chunks: bytes) -> tuple[bytes, Outcome]:
    """Relay `chunks` then a cut; return what the client got and the metered outcome."""
    outcomes: list[Outcome] = []
    provider = ProviderConfig(name="p", adapter="mock", models=["m"])
    candidate = Candidate(provider, None, "m")  # type: ignore[arg-type]
    reply = UpstreamReply(status=200, headers={}, stream=cut_after(*chunks), relay=relay)

    async def consume() -> bytes:
        out = b""
        async for piece in pipeline.relay(fake_gateway(outcomes), call, candidate, reply):
            out += piece
        return out

    body = asyncio.run(consume())
    (outcome,) = outcomes
    return body, outcome


def sse(payload: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def test_cut_stream_input_estimate_does_not_need_the_ledger():
    raw = body_bytes(CHAT)
    call = Call("r1", Family.OPENAI, "chat.completions", "m", raw=raw, stream=True)
    chunk = sse({"choices": [{"index": 0, "delta": {"content": "Hello there"}}]})
    _, outcome = relay_outcome(call, ChatStreamRelay(call), chunk)
    usage = outcome.usage
    assert (usage.input_tokens, usage.output_tokens) == (estimate_chars(len(raw)), 3)
    assert usage.estimated and outcome.status == 502


def test_openai_usage_without_completion_tokens_estimates_the_output():
    raw = body_bytes(CHAT)
    call = Call("r1", Family.OPENAI, "chat.completions", "m", raw=raw, stream=True)
    chunk = sse({"choices": [{"index": 0, "delta": {"content": "Hello there"}}]})
    partial = sse({"choices": [], "usage": {"prompt_tokens": 9}})
    _, outcome = relay_outcome(call, ChatStreamRelay(call), chunk, partial)
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (9, 3)
    assert outcome.usage.estimated


def test_cut_anthropic_stream_keeps_message_start_input_without_the_ledger():
    call = Call("r1", Family.ANTHROPIC, "messages", "m", raw=b'{"x": 1}', stream=True)
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 20, "output_tokens": 1}},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hello there, friend"},
    }
    _, outcome = relay_outcome(
        call,
        MessagesStreamRelay(call),
        sse(start, "message_start"),
        sse(delta, "content_block_delta"),
    )
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (20, 5)
    assert outcome.usage.estimated and "input_estimate" not in call.extra


def test_gemini_prompt_only_usage_is_input_seen_output_not():
    call = Call("r1", Family.GEMINI, "streamGenerateContent", "m", raw=b"{}", stream=True)
    chunk = {
        "candidates": [{"content": {"parts": [{"text": "Hello there"}]}}],
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    _, outcome = relay_outcome(call, GeminiStreamRelay(call), sse(chunk), sse(chunk))
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (7, 6)
    assert outcome.usage.estimated


def test_gemini_finished_stream_without_candidate_count_is_exact():
    """Gemini leaves zero counts out: a final chunk without `candidatesTokenCount` is final."""
    call = Call("r1", Family.GEMINI, "streamGenerateContent", "m", raw=b"{}", stream=True)
    relay = GeminiStreamRelay(call)
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    relay.feed(sse(blocked))
    assert relay.finished and relay.saw_input and relay.saw_output


def test_gemini_json_array_closed_by_error_when_the_stream_ends_early():
    call = Call("r1", Family.GEMINI, "streamGenerateContent", "m", raw=b"{}", stream=True)
    call.json_array = True
    chunk = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}
    body, _ = relay_outcome(call, GeminiStreamRelay(call), sse(chunk))
    parsed = json.loads(body)
    assert parsed[0] == chunk and parsed[1]["error"]["code"] == 502
    empty = Call("r2", Family.GEMINI, "streamGenerateContent", "m", raw=b"{}", stream=True)
    empty.json_array = True
    body, _ = relay_outcome(empty, GeminiStreamRelay(empty))
    assert json.loads(body)[0]["error"]["status"]


def test_metrics_meter_survives_negative_numbers():
    gw = SimpleNamespace(state={})
    call = Call("r1", Family.OPENAI, "chat.completions", "m")
    usage = Usage(input_tokens=-5, output_tokens=-1)
    charge = SimpleNamespace(amount=-3)
    metrics.meter(call, Outcome(200, usage, charge), gw)  # type: ignore[arg-type]


def test_the_core_clamps_insane_usage_from_any_adapter():
    warnings: list[dict] = []
    gw = fake_gateway([])
    gw.log.warning = lambda event, **fields: warnings.append({"event": event, **fields})
    call = Call("r9", Family.OPENAI, "chat.completions", "m")
    provider = ProviderConfig(name="p", adapter="mock", models=["m"])
    usage = Usage(input_tokens=-5, output_tokens=10**12, cached_input_tokens=3)
    outcome = pipeline.finish(gw, call, Candidate(provider, None, "m"), 200, usage)  # type: ignore[arg-type]
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (0, 0)
    assert outcome.usage.cached_input_tokens == 0 and outcome.usage.estimated
    assert {w["field"] for w in warnings} == {"input_tokens", "output_tokens"}
    assert all(w["request_id"] == "r9" for w in warnings)
