"""Operator endpoints: health, readiness and Prometheus metrics."""

from __future__ import annotations

import httpx


def test_health_ready_and_metrics(make_gateway):
    gateway = make_gateway()
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/readyz").json()["database"] == "ok"
    key = gateway.funded_key()
    sdk = gateway.openai_client(key)
    sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "a b c"}])
    text = httpx.get(gateway.url + "/metrics").text
    labels = 'endpoint="chat.completions",family="openai",model="mock-1"'
    assert "tokone_requests_total{" + labels in text
    assert 'tokone_tokens_total{kind="input",model="mock-1"} 3.0' in text
    assert "tokone_request_duration_seconds_bucket" in text
    assert key not in text
