"""The one inference ingress and the Litestar side's error answers, as a client sees them.

Raw HTTP over a socket where headers are counted (a client library may fold duplicates);
the official SDKs where the answer's shape matters.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import anthropic
import httpx
import openai
import pytest
from conftest import Gateway
from google import genai
from google.genai import errors, types
from litestar import Litestar
from litestar.routes import WebSocketRoute
from tokone.core.config import load_config
from tokone.core.errors import GatewayError
from tokone.core.http.app import create_app
from tokone.core.http.inference import InferenceIngress, Socket
from tokone.core.types import Family
from websockets.sync.client import connect as ws_connect

CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 16}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def raw_post(
    gateway: Gateway, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """POST over a plain socket: (status, every header line as sent, body)."""
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{gateway.port}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["content-type: application/json", f"content-length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    return int(status_line.split()[1]), [(k.lower(), v) for k, v in pairs], rest


def header_count(headers: list[tuple[str, str]], name: str) -> int:
    """How many times `name` was sent."""
    return sum(1 for key, _ in headers if key == name)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One gateway with the mock provider (it speaks all three families) and a 4 KiB limit."""
    from conftest import BASE_TOML, MOCK_PROVIDER, free_port

    directory = tmp_path_factory.mktemp("ingress")
    port = free_port()
    text = BASE_TOML.format(port=port, database=f"sqlite:///{directory / 'tokone.db'}")
    text = text.replace('secret = "test-secret"', 'secret = "test-secret"\nmax_body_bytes = 4096')
    gw = Gateway(directory, text + MOCK_PROVIDER, port).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    """A funded key."""
    return gateway.funded_key("ingress", "10")


CALLS = [
    ("/v1/chat/completions", CHAT, "authorization", "Bearer {key}"),
    ("/v1/messages", MESSAGES, "x-api-key", "{key}"),
    ("/v1beta/models/mock-1:generateContent", GEMINI, "x-goog-api-key", "{key}"),
    ("/v1/models/mock-1:generateContent", GEMINI, "x-goog-api-key", "{key}"),
    ("/v1/embeddings", {"model": "mock-1", "input": "hi"}, "authorization", "Bearer {key}"),
]


@pytest.mark.parametrize(("path", "body", "header", "value"), CALLS)
def test_a_whole_reply_carries_one_content_type_and_length(
    gateway: Gateway, key: str, path: str, body: dict[str, Any], header: str, value: str
) -> None:
    status, headers, payload = raw_post(
        gateway, path, json.dumps(body).encode(), {header: value.format(key=key)}
    )
    assert status == 200, payload
    assert header_count(headers, "content-type") == 1
    assert dict(headers)["content-type"].startswith("application/json")
    assert header_count(headers, "content-length") == 1
    assert int(dict(headers)["content-length"]) == len(payload)
    assert header_count(headers, "x-request-id") == 1
    json.loads(payload)


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/mock-1:generateContent", "gemini"),
        ("/v1/models/mock-1:streamGenerateContent", "gemini"),
    ],
)
def test_errors_from_the_ingress_carry_one_content_type_in_the_family_shape(
    gateway: Gateway, key: str, path: str, shape: str
) -> None:
    cases = [
        (401, b"{}", {}),  # no key
        (400, b"{not json", {"authorization": f"Bearer {key}"}),
        (413, b'{"x": "' + b"y" * 5000 + b'"}', {"authorization": f"Bearer {key}"}),
    ]
    for expected, body, headers in cases:
        status, sent, payload = raw_post(gateway, path, body, headers)
        assert status == expected, payload
        assert header_count(sent, "content-type") == 1
        assert header_count(sent, "x-request-id") == 1
        error = json.loads(payload)
        if shape == "anthropic":
            assert error["type"] == "error" and "type" in error["error"]
        elif shape == "gemini":
            assert error["error"]["code"] == expected and "status" in error["error"]
        else:
            assert error["error"]["type"] and "param" in error["error"]


def test_a_streamed_reply_carries_one_content_type(gateway: Gateway, key: str) -> None:
    body = json.dumps({**CHAT, "stream": True}).encode()
    status, headers, payload = raw_post(
        gateway, "/v1/chat/completions", body, {"authorization": f"Bearer {key}"}
    )
    assert status == 200
    assert header_count(headers, "content-type") == 1
    assert dict(headers)["content-type"].startswith("text/event-stream")
    assert b"data: [DONE]" in payload


def test_every_inference_post_of_every_family_is_served_by_the_ingress(tmp_path: Any) -> None:
    config_path = tmp_path / "tokone.toml"
    config_path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n'
        '[[providers]]\nname = "mock"\nadapter = "mock"\nmodels = ["mock-1"]\n'
    )
    app = create_app(load_config(config_path))
    assert isinstance(app, InferenceIngress)
    inference = [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/responses/input_tokens",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ]
    for version in ("v1beta", "v1"):
        for action in (
            "generateContent",
            "streamGenerateContent",
            "countTokens",
            "embedContent",
            "batchEmbedContents",
        ):
            inference.append(f"/{version}/models/gemini-2.5-flash:{action}")
    for path in inference:
        assert app.route_for(path) is not None, path
    for path in ("/v1/models", "/v1/dashboard/redeem", "/admin/accounts", "/healthz"):
        assert app.route_for(path) is None, path
    assert app.socket_for("/v1/responses") is not None
    assert app.socket_for("/v1/chat/completions") is None
    # Litestar, behind the ingress, has no inference route left: no WebSocket, no inference path.
    litestar = app.app
    assert isinstance(litestar, Litestar)
    assert not [r.path for r in litestar.routes if isinstance(r, WebSocketRoute)]
    assert not {r.path for r in litestar.routes} & {*inference, "/v1/responses"}


def test_an_unknown_gemini_action_is_a_gemini_404(gateway: Gateway, key: str) -> None:
    sdk = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta"),
    )
    status, _, payload = raw_post(
        gateway, "/v1beta/models/mock-1:dance", b"{}", {"x-goog-api-key": key}
    )
    assert status == 404 and json.loads(payload)["error"]["status"] == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as refused:
        sdk.models.generate_content(model="no-such-model", contents="hi")
    assert refused.value.code == 404


def test_litestar_routes_answer_a_refused_key_in_their_family_shape(gateway: Gateway) -> None:
    bad = "sk-not-a-key-at-all"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key=bad).models.list()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key=bad).models.list()
    sdk = genai.Client(
        api_key=bad, http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta")
    )
    with pytest.raises(errors.ClientError) as refused:
        list(sdk.models.list())
    assert refused.value.code == 401 and refused.value.status == "UNAUTHENTICATED"
    # An OpenAI model id with colons (a fine-tune) stays an OpenAI question.
    reply = httpx.get(
        gateway.url + "/v1/models/ft:gpt-4o-mini:org::abc",
        headers={"authorization": f"Bearer {bad}"},
    )
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    # The dashboard answers in OpenAI's shape whatever the client's headers say.
    reply = httpx.get(
        gateway.url + "/v1/dashboard/balance",
        headers={"x-api-key": bad, "anthropic-version": "2023-06-01"},
    )
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    assert "x-request-id" in reply.headers


def test_litestar_routes_get_the_caller_from_the_principal_dependency(
    gateway: Gateway, key: str
) -> None:
    balance = httpx.get(
        gateway.url + "/v1/dashboard/balance", headers={"authorization": f"Bearer {key}"}
    )
    assert balance.status_code == 200 and balance.json()["account"] == "ingress"
    usage = httpx.get(
        gateway.url + "/v1/dashboard/usage",
        params={"days": "-1"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert usage.status_code == 400 and "days" in usage.json()["error"]["message"]
    models = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key).models.list()
    assert "mock-1" in [m.id for m in models.data]


def test_a_websocket_event_over_the_limit_is_refused_like_a_body_and_the_socket_stays(
    gateway: Gateway, key: str
) -> None:
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    with sdk.responses.connect() as connection:
        connection.response.create(model="mock-1", input="x" * 5000)
        refused = connection.recv()
        assert refused.type == "error" and refused.status == 413
        assert refused.error.message == "The event is larger than 4096 bytes."
        connection.response.create(model="mock-1", input="hello")
        events = [connection.recv()]
        while events[-1].type not in ("response.completed", "error"):
            events.append(connection.recv())
        assert events[-1].type == "response.completed"


def test_a_refused_websocket_handshake_carries_one_content_type(gateway: Gateway) -> None:
    request = (
        f"GET /v1/responses HTTP/1.1\r\nhost: 127.0.0.1:{gateway.port}\r\n"
        "connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n"
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := conn.recv(65536)):
            received += chunk
    head = received.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 401")
    assert head.count("\r\ncontent-type:") == 1
    assert head.count("\r\nx-request-id: req_") == 1


def test_an_accepted_websocket_handshake_carries_a_request_id(gateway: Gateway, key: str) -> None:
    url = gateway.url.replace("http", "ws") + "/v1/responses"
    with ws_connect(url, additional_headers={"authorization": f"Bearer {key}"}) as socket_:
        assert socket_.response.status_code == 101
        assert socket_.response.headers["x-request-id"].startswith("req_")


class FakeServer:
    """An ASGI server's side of one WebSocket connection: what the app sends, recorded."""

    def __init__(self, extensions: dict[str, Any]) -> None:
        self.scope = {
            "type": "websocket",
            "path": "/ws",
            "query_string": b"",
            "headers": [],
            "extensions": extensions,
        }
        self.sent: list[dict[str, Any]] = []
        self.events = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "x"}]

    async def receive(self) -> dict[str, Any]:
        """`websocket.connect`, then one text frame, then the client's disconnect."""
        return self.events.pop(0) if self.events else {"type": "websocket.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        """Record `message`."""
        self.sent.append(message)

    def run(self, handler: Any) -> list[dict[str, Any]]:
        """Serve this connection with an ingress whose only route is a WebSocket on `/ws`."""
        ingress = InferenceIngress(
            None,  # type: ignore[arg-type]
            {},
            4096,
            sockets={"/ws": (Family.ANTHROPIC, handler)},
        )
        asyncio.run(ingress(self.scope, self.receive, self.send))  # type: ignore[arg-type]
        return self.sent


def test_a_websocket_handler_refusing_or_failing_is_answered_by_the_ingress() -> None:
    async def refuses(socket: Socket) -> None:
        raise GatewayError("authentication", "no key")

    async def breaks(socket: Socket) -> None:
        raise RuntimeError("a bug")

    async def breaks_once_open(socket: Socket) -> None:
        await socket.accept()
        assert await socket.receive() == "x"
        raise RuntimeError("a bug")

    denial = {"websocket.http.response": {}}
    start, body = FakeServer(denial).run(refuses)
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 401)
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-request-id"].startswith(b"req_") and len(headers) == len(start["headers"])
    assert body["type"] == "websocket.http.response.body" and not body["more_body"]
    assert json.loads(body["body"])["error"]["type"] == "authentication_error"  # its family
    assert int(headers[b"content-length"]) == len(body["body"])

    start, body = FakeServer(denial).run(breaks)
    assert start["status"] == 500 and json.loads(body["body"])["error"]["type"] == "api_error"
    (close,) = FakeServer({}).run(refuses)  # no HTTP answer possible: a policy close
    assert (close["type"], close["code"], close["reason"]) == ("websocket.close", 1008, "no key")
    accept, close = FakeServer(denial).run(breaks_once_open)
    assert accept["type"] == "websocket.accept"
    assert (close["type"], close["code"], close["reason"]) == (
        "websocket.close",
        1011,
        "Internal error.",
    )
