"""The inference ingress (bare ASGI, every family): limits, disconnects and odd requests."""

from __future__ import annotations

import json
import time

import httpx
from ledger_checks import database_url, read_ledger

PROVIDER = """
[[providers]]
name = "fake"
adapter = "openai"
base_url = "{base_url}/v1"
models = ["gpt-4o-mini"]
"""


def test_a_body_over_the_limit_is_413_in_the_family_shape(make_gateway):
    gateway = make_gateway(start=False)
    text = gateway.config_path.read_text().replace(
        'secret = "test-secret"', 'secret = "test-secret"\nmax_body_bytes = 2048'
    )
    gateway.config_path.write_text(text)
    gateway.start()
    key = gateway.funded_key()
    big = {"model": "mock-1", "messages": [{"role": "user", "content": "x" * 4096}]}
    openai_reply = httpx.post(
        gateway.url + "/v1/chat/completions", json=big, headers={"authorization": f"Bearer {key}"}
    )
    assert openai_reply.status_code == 413
    assert openai_reply.json()["error"]["code"] == "request_too_large"
    anthropic_reply = httpx.post(
        gateway.url + "/v1/messages", json={**big, "max_tokens": 5}, headers={"x-api-key": key}
    )
    assert anthropic_reply.status_code == 413
    assert anthropic_reply.json()["error"]["type"] == "request_too_large"
    small = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json=small,
            headers={"authorization": f"Bearer {key}"},
        ).status_code
        == 200
    )


def test_other_methods_on_inference_paths_get_an_error_in_the_family_shape(make_gateway):
    gateway = make_gateway()
    response = httpx.get(gateway.url + "/v1/chat/completions")
    assert response.status_code in (404, 405)
    assert "error" in response.json()


def test_a_client_that_leaves_mid_stream_is_charged_for_what_it_got(
    make_gateway, make_fake_upstream
):
    upstream = make_fake_upstream()
    gateway = make_gateway(PROVIDER.format(base_url=upstream.base_url), mock=False)
    key = gateway.funded_key("leaver", "10")
    upstream.delay_chunks(0.2)  # 16 chunks: 3.2 s for the whole answer
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        received = b""
        for chunk in response.iter_bytes():
            received += chunk
            if received.count(b"data: ") >= 3:
                break  # leaving: the connection closes here
    started = time.monotonic()
    url = database_url(gateway)
    while request_id not in (state := read_ledger(url, "leaver")).usage:
        assert time.monotonic() - started < 2.5, "the gateway did not notice the client left"
        time.sleep(0.05)
    status, cost = state.usage[request_id]
    assert status == 499 and cost > 0
    delivered = [
        json.loads(line[6:])
        for line in received.decode().splitlines()
        if line.startswith("data: {")
    ]
    assert len(delivered) >= 3
