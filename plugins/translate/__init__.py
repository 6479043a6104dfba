"""Translation between the API families: a model behind one family's channel, called from another.

The plugin implements `register_translators`: for each channel adapter it returns
:class:`~tokone.plugins.translate.base.TranslatingAdapter` wrappers for the client families
the channel does not speak natively and a translation exists for. Routing tries them after
the native candidates, so failover, circuit breakers, rate limits and billing treat them as
the channel itself (same provider, same health, the channel's own usage parser).

Built in (OpenAI chat is the pivot for Gemini: an Anthropic <-> Gemini call goes through the
chat form in memory, so each family has one pair of converters to keep right):

* OpenAI chat client -> Anthropic channel, and Anthropic client -> OpenAI chat channel
  (`requests`, `replies`, `streams`);
* OpenAI chat client <-> Gemini channel / Gemini client -> OpenAI chat channel (`gemini`);
* Anthropic client <-> Gemini channel, both ways, through the chat form;
* the OpenAI Responses API over a chat-only OpenAI-compatible channel (adapter
  `openai-chat`), an Anthropic channel or a Gemini channel (`responses`);
* embeddings, OpenAI <-> Gemini (`embeddings`); token counts for translated models
  (`counting`).

A third-party plugin adds a direction the same way: implement `register_translators` and
return a ``TranslatingAdapter(adapter, Translation(...))`` for the channels it applies to.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Family
from tokone.core.upstream import Adapter
from tokone.plugins.translate import counting, embeddings, gemini, responses
from tokone.plugins.translate.base import JSON, StreamConverter, TranslatingAdapter, Translation
from tokone.plugins.translate.replies import chat_to_message, message_to_chat
from tokone.plugins.translate.requests import chat_to_messages, messages_to_chat
from tokone.plugins.translate.streams import (
    Chained,
    ChatFromMessages,
    ChunkSource,
    MessagesFromChat,
    OpenAIFraming,
)

CHAT = frozenset({"chat.completions"})
MESSAGES = frozenset({"messages"})
GENERATE = frozenset({"generateContent", "streamGenerateContent"})
RESPONSES = frozenset({"responses"})


def include_usage(call: Call) -> bool:
    """Whether an OpenAI client asked for the final usage chunk."""
    return bool((call.json().get("stream_options") or {}).get("include_usage"))


def translations(gateway: Gateway) -> list[Translation]:
    """The built-in directions, configured from the gateway's settings.

    A chat or Gemini request without an output cap gets `[billing]
    default_max_output_tokens` when it goes to Anthropic (which requires one): the cap
    the balance hold assumed.
    """
    to_messages = partial(
        chat_to_messages, default_max_tokens=gateway.config.billing.default_max_output_tokens
    )

    def chat_from_messages(call: Call) -> StreamConverter:
        return OpenAIFraming(ChatFromMessages(call.model, include_usage(call)))

    def chat_from_gemini(call: Call) -> StreamConverter:
        return OpenAIFraming(gemini.ChatChunksFromGemini(call.model, include_usage(call)))

    def messages_from_gemini(call: Call) -> StreamConverter:
        return Chained(gemini.ChatChunksFromGemini(call.model, True), MessagesFromChat(call.model))

    def gemini_from_messages(call: Call) -> StreamConverter:
        return Chained(
            ChatFromMessages(call.model, True), gemini.GeminiFromChat(call.model, call.json_array)
        )

    def response_reply(body: JSON, call: Call) -> JSON:
        return responses.chat_to_response(body, call.json(), call.model)

    def responses_from(source: Callable[[Call], ChunkSource]) -> Callable[[Call], StreamConverter]:
        def make(call: Call) -> StreamConverter:
            return Chained(source(call), responses.ResponsesFromChat(call.json(), call.model))

        return make

    generation = [
        Translation(
            Family.OPENAI,
            RESPONSES,
            Family.OPENAI,
            "chat.completions",
            responses.responses_to_chat,
            response_reply,
            lambda call: responses.ResponsesFromChat(call.json(), call.model),
        ),
        Translation(
            Family.OPENAI,
            RESPONSES,
            Family.ANTHROPIC,
            "messages",
            lambda body: to_messages(responses.responses_to_chat(body)),
            lambda body, call: response_reply(message_to_chat(body, call.model), call),
            responses_from(lambda call: ChatFromMessages(call.model, True)),
        ),
        Translation(
            Family.OPENAI,
            RESPONSES,
            Family.GEMINI,
            "generateContent",
            lambda body: gemini.chat_to_gemini(responses.responses_to_chat(body)),
            lambda body, call: response_reply(gemini.gemini_reply_to_chat(body, call.model), call),
            responses_from(lambda call: gemini.ChatChunksFromGemini(call.model, True)),
        ),
        Translation(
            Family.OPENAI,
            CHAT,
            Family.ANTHROPIC,
            "messages",
            to_messages,
            lambda body, call: message_to_chat(body, call.model),
            chat_from_messages,
        ),
        Translation(
            Family.ANTHROPIC,
            MESSAGES,
            Family.OPENAI,
            "chat.completions",
            messages_to_chat,
            lambda body, call: chat_to_message(body, call.model),
            lambda call: MessagesFromChat(call.model),
        ),
        Translation(
            Family.OPENAI,
            CHAT,
            Family.GEMINI,
            "generateContent",
            gemini.chat_to_gemini,
            lambda body, call: gemini.gemini_reply_to_chat(body, call.model),
            chat_from_gemini,
        ),
        Translation(
            Family.GEMINI,
            GENERATE,
            Family.OPENAI,
            "chat.completions",
            gemini.gemini_to_chat,
            lambda body, call: gemini.chat_reply_to_gemini(body, call.model),
            lambda call: gemini.GeminiFromChat(call.model, call.json_array),
        ),
        Translation(
            Family.ANTHROPIC,
            MESSAGES,
            Family.GEMINI,
            "generateContent",
            lambda body: gemini.chat_to_gemini(messages_to_chat(body)),
            lambda body, call: chat_to_message(
                gemini.gemini_reply_to_chat(body, call.model), call.model
            ),
            messages_from_gemini,
        ),
        Translation(
            Family.GEMINI,
            GENERATE,
            Family.ANTHROPIC,
            "messages",
            lambda body: to_messages(gemini.gemini_to_chat(body)),
            lambda body, call: gemini.chat_reply_to_gemini(
                message_to_chat(body, call.model), call.model
            ),
            gemini_from_messages,
        ),
    ]
    vectors = [
        Translation(
            Family.OPENAI,
            frozenset({"embeddings"}),
            Family.GEMINI,
            "batchEmbedContents",
            embeddings.openai_to_gemini,
            embeddings.gemini_reply_to_openai,
        ),
        Translation(
            Family.GEMINI,
            frozenset({"embedContent", "batchEmbedContents"}),
            Family.OPENAI,
            "embeddings",
            embeddings.gemini_to_openai,
            embeddings.openai_reply_to_gemini,
        ),
    ]
    return [*generation, *vectors, *counts(to_messages)]


def counts(to_messages: Callable[[JSON], JSON]) -> list[Translation]:
    """Token counting for translated models (see `counting`): the channel's own counter
    (Anthropic, Gemini), else an estimate (chat-only OpenAI-compatible channels)."""

    def anthropic_count(body: JSON, call: Call) -> JSON:
        return {"input_tokens": counting.input_tokens(body)}

    def gemini_count(body: JSON, call: Call) -> JSON:
        return {"totalTokens": counting.input_tokens(body)}

    def responses_count(body: JSON, call: Call) -> JSON:
        return {"object": "response.input_tokens", "input_tokens": counting.input_tokens(body)}

    def gemini_body(body: JSON) -> JSON:
        return gemini.gemini_to_chat(body.get("generateContentRequest") or body)

    out = []
    sources: list[tuple[Family, str, Callable[[JSON], JSON], Callable[[JSON, Call], JSON]]] = [
        (Family.ANTHROPIC, "messages.count_tokens", messages_to_chat, anthropic_count),
        (Family.GEMINI, "countTokens", gemini_body, gemini_count),
        (Family.OPENAI, "responses.input_tokens", responses.responses_to_chat, responses_count),
    ]
    for source, endpoint, to_chat, reply in sources:
        endpoints = frozenset({endpoint})

        def messages_request(body: JSON, to_chat: Callable[[JSON], JSON] = to_chat) -> JSON:
            return counting.messages_count_request(to_messages(to_chat(body)))

        def gemini_request(body: JSON, to_chat: Callable[[JSON], JSON] = to_chat) -> JSON:
            return counting.gemini_count_request(gemini.chat_to_gemini(to_chat(body)))

        if source is not Family.ANTHROPIC:
            out.append(
                Translation(
                    source,
                    endpoints,
                    Family.ANTHROPIC,
                    "messages.count_tokens",
                    messages_request,
                    reply,
                )
            )
        if source is not Family.GEMINI:
            out.append(
                Translation(source, endpoints, Family.GEMINI, "countTokens", gemini_request, reply)
            )
        out.append(
            Translation(
                source, endpoints, Family.OPENAI, "chat.completions", to_chat, reply, estimate=True
            )
        )
    return out


def speaks(adapter: Adapter, family: Family, endpoint: str) -> bool:
    """Whether `adapter` natively serves `family`'s `endpoint`."""
    probe = Call(request_id="", family=family, endpoint=endpoint, model="")
    return adapter.supports(probe)


@hookimpl
def register_translators(adapter: Adapter, gateway: Gateway) -> list[Adapter]:
    """Wrappers serving, through `adapter`, the client families it does not speak.

    One per client family and endpoint: the first direction whose target the channel speaks.
    """
    wrappers: dict[tuple[Family, frozenset[str]], Adapter] = {}
    for t in translations(gateway):
        key = (t.source, t.endpoints)
        if key in wrappers or any(speaks(adapter, t.source, e) for e in t.endpoints):
            continue
        if speaks(adapter, t.target, t.target_endpoint):
            kind = counting.EstimatingCounter if t.estimate else TranslatingAdapter
            wrappers[key] = kind(adapter, t)
    return list(wrappers.values())
