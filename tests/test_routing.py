"""Routing: weights, aliases and wildcards, the manual switch, 404 and 503.

The weighted order is checked directly with a seeded `random.Random` (and a hypothesis
property); every other test runs a real gateway in front of fake upstreams
(tests/fake_upstream/) and counts the requests each upstream recorded.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import cast

import anthropic
import httpx
import openai
import pytest
from conftest import ADMIN, FAST_REFRESH, HELLO, provider, wait_until
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from hypothesis import given
from hypothesis import strategies as st
from tokone.core.config import ProviderConfig
from tokone.core.types import Candidate
from tokone.core.upstream import Adapter
from tokone.plugins.routing import order_by_priority_and_weight


def sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def chat(client: openai.OpenAI, model: str = "gpt-4o-mini") -> str:
    return client.chat.completions.create(model=model, messages=HELLO).choices[0].message.content


def candidates(*tiers: tuple[int, int]) -> list[Candidate]:
    """Route candidates named c0, c1, ... with these (priority, weight) pairs."""
    return [
        Candidate(
            ProviderConfig(name=f"c{i}", adapter="mock", models=["m"], priority=p, weight=w),
            cast(Adapter, None),
            "m",
        )
        for i, (p, w) in enumerate(tiers)
    ]


def names(ordered: list[Candidate]) -> list[str]:
    return [c.provider.name for c in ordered]


def test_weights_decide_the_first_choice_in_proportion():
    """With weights 3 : 1 the heavy channel comes first 3 times in 4 (seeded, so exact)."""
    rng = random.Random(20261202)
    pool = candidates((0, 3), (0, 1))
    firsts = Counter(names(order_by_priority_and_weight(pool, rng))[0] for _ in range(20_000))
    # binomial standard deviation ~0.003: 0.015 is five of them, whatever the seed
    assert abs(firsts["c0"] / 20_000 - 0.75) < 0.015, firsts
    pool = candidates((0, 1), (0, 2), (0, 5))
    firsts = Counter(names(order_by_priority_and_weight(pool, rng))[0] for _ in range(20_000))
    for name, share in (("c0", 1 / 8), ("c1", 2 / 8), ("c2", 5 / 8)):
        assert abs(firsts[name] / 20_000 - share) < 0.015, firsts


def test_the_order_is_reproducible_with_a_seed():
    pool = candidates(*[(0, w) for w in (1, 2, 3, 4, 5)])
    first = [names(order_by_priority_and_weight(pool, random.Random(7))) for _ in range(3)]
    assert first[0] == first[1] == first[2]


@given(
    st.lists(
        st.tuples(st.integers(-2, 2), st.integers(0, 5)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 2**32),
)
def test_order_is_a_permutation_by_priority_with_weight_zero_last(tiers, seed):
    pool = candidates(*tiers)
    ordered = order_by_priority_and_weight(pool, random.Random(seed))
    assert sorted(names(ordered)) == sorted(names(pool))
    priorities = [c.provider.priority for c in ordered]
    assert priorities == sorted(priorities, reverse=True)
    for priority in set(priorities):
        weights = [c.provider.weight for c in ordered if c.provider.priority == priority]
        zero = weights.index(0) if 0 in weights else len(weights)
        assert all(w == 0 for w in weights[zero:])  # weight 0 only after every weighted one
        if all(w == 0 for w in weights):  # nothing to draw: the configured order
            tier = [c for c in pool if c.provider.priority == priority]
            assert names([c for c in ordered if c.provider.priority == priority]) == names(tier)


def test_weights_are_honoured_end_to_end(make_gateway, make_fake_upstream):
    heavy, light, idle = make_fake_upstream(), make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        provider("heavy", heavy.base_url + "/v1", weight=3)
        + provider("light", light.base_url + "/v1", weight=1)
        + provider("idle", idle.base_url + "/v1", weight=0),
        mock=False,
    )
    client = sdk(gateway, gateway.funded_key())
    for _ in range(40):
        chat(client)
    served = len(heavy.requests), len(light.requests), len(idle.requests)
    # expected 30 : 10 : 0; heavy <= light, or light never served, is below 1 in 10,000
    assert sum(served) == 40 and served[0] > served[1] > 0 and served[2] == 0, served


def test_priority_wins_over_weight(make_gateway, make_fake_upstream):
    first, second = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        provider("first", first.base_url + "/v1", priority=10, weight=1)
        + provider("second", second.base_url + "/v1", priority=0, weight=100),
        mock=False,
    )
    client = sdk(gateway, gateway.funded_key())
    for _ in range(5):
        chat(client)
    assert (len(first.requests), len(second.requests)) == (5, 0)


def test_aliases_wildcards_and_unknown_models(make_gateway, make_fake_upstream):
    wild, aliased = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        provider("wild", wild.base_url + "/v1", models=("gpt-4o*",))
        + provider(
            "aliased",
            aliased.base_url + "/v1",
            models=("house-model",),
            extra='model_map = { "fast" = "gpt-4o-mini", "house-model" = "gpt-4o" }',
        )
        + '[prices."gpt-4o*"]\ninput = 2.5\noutput = 10.0\n'
        + '[prices."fast"]\ninput = 0.15\noutput = 0.6\n'
        + '[prices."house-model"]\ninput = 2.5\noutput = 10.0\n',
        mock=False,
    )
    client = sdk(gateway, gateway.funded_key())

    assert chat(client, "gpt-4o-2024-08-06").startswith("Hello from gpt-4o-2024-08-06!")
    assert [r.json["model"] for r in wild.requests] == ["gpt-4o-2024-08-06"]

    # an alias reaches its upstream under the upstream's name
    assert chat(client, "fast").startswith("Hello from gpt-4o-mini!")
    assert chat(client, "house-model").startswith("Hello from gpt-4o!")
    assert [r.json["model"] for r in aliased.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert {m.id for m in client.models.list()} >= {"fast", "house-model"}

    with pytest.raises(openai.NotFoundError) as info:
        chat(client, "no-such-model")
    assert info.value.body["code"] == "model_not_found"
    assert "GET /v1/models" in info.value.body["message"]
    assert len(wild.requests) == 1 and len(aliased.requests) == 2


def test_disabled_by_hand_is_skipped_and_shown(make_gateway, make_fake_upstream):
    main, spare = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        FAST_REFRESH
        + provider("main", main.base_url + "/v1", priority=10)
        + provider("spare", spare.base_url + "/v1"),
        mock=False,
    )
    client = sdk(gateway, gateway.funded_key())
    chat(client)
    assert len(main.requests) == 1

    out = gateway.cli("providers", "disable", "main", "--reason", "maintenance")
    assert "main disabled (maintenance)" in out
    status = gateway.cli("providers", "status")
    main_row = next(line for line in status.splitlines() if line.startswith("main "))
    assert "disabled (by hand: maintenance)" in main_row
    spare_row = next(line for line in status.splitlines() if line.startswith("spare "))
    assert "enabled" in spare_row and "openai" in spare_row

    # the server re-reads the switches every refresh_seconds, off the request path
    wait_until(lambda: (chat(client), len(spare.requests))[1] > 0)
    before = len(main.requests)
    for _ in range(3):
        chat(client)
    assert len(main.requests) == before

    listed = httpx.get(gateway.url + "/admin/providers", headers=ADMIN).json()["data"]
    row = next(r for r in listed if r["name"] == "main")
    assert (row["state"], row["disabled_reason"]) == ("disabled", "maintenance")
    live = gateway.cli("providers", "status", "--live", gateway.url)
    assert "disabled (by hand: maintenance)" in live

    # enabling through the admin API applies at once in that process
    response = httpx.post(gateway.url + "/admin/providers/main/enable", headers=ADMIN)
    assert response.status_code == 200 and response.json()["state"] == "healthy"
    chat(client)
    assert len(main.requests) == before + 1
    assert "disabled" not in gateway.cli("providers", "status").split("main ", 1)[1].splitlines()[0]


def test_admin_switch_needs_an_admin_key_and_a_known_provider(make_gateway, make_fake_upstream):
    upstream = make_fake_upstream()
    gateway = make_gateway(provider("only", upstream.base_url + "/v1"), mock=False)
    assert httpx.get(gateway.url + "/admin/providers").status_code == 401
    user_key = {"authorization": f"Bearer {gateway.funded_key()}"}
    assert (
        httpx.post(gateway.url + "/admin/providers/only/disable", headers=user_key).status_code
        == 401
    )
    missing = httpx.post(gateway.url + "/admin/providers/nope/disable", headers=ADMIN)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    done = httpx.post(
        gateway.url + "/admin/providers/only/disable", headers=ADMIN, json={"reason": "bad key"}
    )
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["disabled_reason"]) == ("disabled", "bad key")
    with pytest.raises(AssertionError, match="no provider named 'nope'"):
        gateway.cli("providers", "disable", "nope")


def test_every_channel_disabled_is_503_in_each_familys_shape(make_gateway, make_fake_upstream):
    upstream = make_fake_upstream()
    gateway = make_gateway(
        provider("oa", upstream.base_url + "/v1")
        + provider("an", upstream.base_url, adapter="anthropic", models=("claude-haiku-4-5",))
        + provider("ge", upstream.base_url, adapter="gemini", models=("gemini-2.5-flash",)),
        mock=False,
        start=False,
    )
    for name in ("oa", "an", "ge"):
        gateway.cli("providers", "disable", name)
    key = gateway.funded_key()
    gateway.start()

    with pytest.raises(openai.InternalServerError) as oa:
        chat(sdk(gateway, key))
    assert oa.value.status_code == 503
    assert oa.value.body["code"] == "no_healthy_upstream"
    assert "disabled by an operator" in oa.value.body["message"]

    claude = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as an:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HELLO)
    assert an.value.status_code == 503
    assert an.value.body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": oa.value.body["message"].replace("gpt-4o-mini", "claude-haiku-4-5"),
        },
    }

    options = genai_types.HttpOptions(
        base_url=gateway.url, retry_options=genai_types.HttpRetryOptions(attempts=1)
    )
    gemini = genai.Client(api_key=key, http_options=options)
    with pytest.raises(genai_errors.ServerError) as ge:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert (ge.value.code, ge.value.status) == (503, "UNAVAILABLE")
    assert upstream.requests == []
