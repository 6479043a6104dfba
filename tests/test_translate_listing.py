"""google-genai's model listing on a gateway whose only channel speaks OpenAI: the models it
can call through translation are listed (and fetched) like native Gemini models, on both API
versions, and a listed model answers `generate_content`."""

from __future__ import annotations

import pytest
from conftest import new_key
from google.genai import errors as genai_errors

PROVIDERS = """
[[providers]]
name = "oai"
adapter = "openai"
base_url = "{base}/v1"
models = ["gpt-4o", "gpt-*"]
model_map = {{"house-model" = "gpt-4o-mini"}}
timeouts = {{ connect = 2, first_byte = 5, idle = 5 }}

[prices."gpt-*"]
input = 2.0
output = 8.0

[prices."house-model"]
input = 1.0
output = 1.0
"""
LISTED = ["models/gpt-4o", "models/house-model"]


@pytest.mark.parametrize("api_version", ["v1beta", None])
def test_models_behind_an_openai_channel_are_listed_for_gemini(gateway, api_version):
    key = new_key(gateway)
    client = gateway.gemini_client(key, api_version=api_version)
    models = list(client.models.list())
    assert [m.name for m in models] == LISTED
    model = client.models.get(model="house-model")
    assert model.name == "models/house-model"
    assert model.display_name == "house-model"
    assert "generateContent" in model.supported_actions
    with pytest.raises(genai_errors.ClientError) as refused:
        client.models.get(model="gemini-2.5-flash")
    assert refused.value.code == 404


def test_a_listed_model_answers_generate_content(gateway):
    key = new_key(gateway)
    client = gateway.gemini_client(key, api_version="v1beta")
    reply = client.models.generate_content(model="gpt-4o", contents="say hello")
    assert reply.text
    assert reply.usage_metadata.prompt_token_count > 0
