"""The LLM providers: the OpenAI-compatible adapter against a loopback fake speaking Chat
Completions (tool calls checked, invalid arguments as a typed error, 429 then success with
Retry-After, 5xx, timeouts, the content filter, Azure's form), the outbound guard refusing
what the installation does not allow, and the offline sandbox's determinism. Waiting between
retries goes through a recorded sleeper: nothing here sleeps."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, timedelta
from email.utils import format_datetime

import httpx
import pytest

from lovedcrm.assistant.llm import build_provider
from lovedcrm.assistant.llm.base import (
    ChatMessage,
    InvalidToolArguments,
    LLMConfig,
    LLMError,
    Tool,
)
from lovedcrm.assistant.llm.openai import OpenAICompatibleProvider
from lovedcrm.assistant.llm.sandbox import SandboxProvider
from lovedcrm.core import outbound
from lovedcrm.core.clock import ManualClock
from tests.fakes import Reply
from tests.fakes.openai_server import API_KEY, FakeOpenAI, completion, error, tool_call

HELLO = [ChatMessage("system", "Você é um assistente de vendas."), ChatMessage("user", "Oi!")]
UPDATE_LEAD = Tool(
    "update_lead",
    "Fill fields of the current lead",
    {
        "type": "object",
        "properties": {
            "budget": {"type": "number"},
            "timing": {"type": "string", "enum": ["now", "month", "later"]},
        },
        "required": ["budget"],
        "additionalProperties": False,
    },
)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    async with outbound.client(outbound.Policy.of(["127.0.0.1"]), timeout=5.0) as c:
        yield c


def provider(
    fake: FakeOpenAI, client: httpx.AsyncClient, sleeps: Sleeps | None = None, **kw: object
) -> OpenAICompatibleProvider:
    options: dict[str, object] = {"model": "gpt-test", "api_key": API_KEY, **kw}
    return OpenAICompatibleProvider(
        client=client,
        base_url=str(options.pop("base_url", fake.base_url)),
        sleep=sleeps or Sleeps(),
        **options,  # type: ignore[arg-type]
    )


async def test_a_completion_carries_text_usage_and_finish_reason(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.answer = "Olá! Em que posso ajudar?"
    done = await provider(fake, guarded).complete(HELLO, temperature=0.2, max_tokens=50)
    assert done.text == "Olá! Em que posso ajudar?"
    assert done.finish_reason == "stop" and not done.filtered
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (12, 7)
    assert done.usage.total_tokens == 19
    [sent] = fake.completions()
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json["model"] == "gpt-test"
    assert sent.json["messages"][1] == {"role": "user", "content": "Oi!"}
    assert sent.json["temperature"] == 0.2 and sent.json["max_tokens"] == 50


async def test_tool_calls_come_back_checked_against_the_tools_offered(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.queue.append(
        Reply.json(
            completion(
                None, tool_calls=[tool_call("update_lead", '{"budget": 5000, "timing": "now"}')]
            )
        )
    )
    done = await provider(fake, guarded).complete(HELLO, tools=[UPDATE_LEAD])
    assert done.finish_reason == "tool_calls"
    [call] = done.tool_calls
    assert (call.id, call.name, call.arguments) == (
        "call_1",
        "update_lead",
        {"budget": 5000, "timing": "now"},
    )
    offered = fake.completions()[0].json["tools"]
    assert offered[0]["function"]["name"] == "update_lead"
    assert offered[0]["function"]["parameters"]["required"] == ["budget"]


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        ("update_lead", '{"budget": 5000', "not valid JSON"),
        ("update_lead", "[1, 2]", "not a JSON object"),
        ("update_lead", '{"timing": "now"}', "arguments.budget is required"),
        ("update_lead", '{"budget": "muito"}', "arguments.budget must be of type number"),
        ("update_lead", '{"budget": 1, "timing": "ontem"}', "must be one of"),
        ("update_lead", '{"budget": 1, "owner_id": "x"}', "unknown properties: owner_id"),
        ("read_other_lead", '{"lead_id": "x"}', "the tool was not offered"),
    ],
)
async def test_invalid_tool_arguments_are_a_typed_error_never_a_crash(
    fake: FakeOpenAI, guarded: httpx.AsyncClient, name: str, arguments: str, reason: str
) -> None:
    fake.queue.append(Reply.json(completion("Anotado.", tool_calls=[tool_call(name, arguments)])))
    with pytest.raises(InvalidToolArguments) as caught:
        await provider(fake, guarded).complete(HELLO, tools=[UPDATE_LEAD])
    assert reason in caught.value.reason
    assert caught.value.tool_name == name and caught.value.raw == arguments
    assert not caught.value.transient and caught.value.code == "invalid_tool_arguments"
    assert caught.value.completion is not None
    assert caught.value.completion.text == "Anotado."
    assert caught.value.completion.usage.total_tokens == 19


async def test_429_is_retried_after_what_retry_after_asks_then_succeeds(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.queue.append(
        error(429, "Rate limit reached", "rate_limit_exceeded", **{"Retry-After": "7"})
    )
    sleeps = Sleeps()
    done = await provider(fake, guarded, sleeps).complete(HELLO)
    assert done.text == fake.answer
    assert sleeps.calls == [7.0]
    assert len(fake.completions()) == 2


async def test_retry_after_as_a_date_reads_the_product_clock_and_is_bounded(
    fake: FakeOpenAI, guarded: httpx.AsyncClient, manual_clock: ManualClock
) -> None:
    when = format_datetime(
        (manual_clock.now() + timedelta(seconds=12)).astimezone(UTC), usegmt=True
    )
    fake.queue.append(error(429, "slow down", **{"Retry-After": when}))
    fake.queue.append(error(503, "busy", **{"Retry-After": "3600"}))
    sleeps = Sleeps()
    done = await provider(fake, guarded, sleeps).complete(HELLO)
    assert done.text == fake.answer
    assert 11.0 <= sleeps.calls[0] <= 12.0
    assert sleeps.calls[1] == 20.0  # bounded: a long wait is the caller's to schedule


async def test_5xx_is_retried_with_backoff_then_reported_as_transient(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.queue.extend([error(500, "oops"), error(502, "bad gateway"), error(503, "busy")])
    sleeps = Sleeps()
    with pytest.raises(LLMError) as caught:
        await provider(fake, guarded, sleeps, max_retries=2).complete(HELLO)
    assert caught.value.code == "http_503" and caught.value.transient
    assert sleeps.calls == [0.5, 1.0]
    assert len(fake.completions()) == 3


async def test_a_refused_key_is_not_retried(fake: FakeOpenAI, guarded: httpx.AsyncClient) -> None:
    sleeps = Sleeps()
    with pytest.raises(LLMError) as caught:
        await provider(fake, guarded, sleeps, api_key="sk-wrong").complete(HELLO)
    assert caught.value.code == "http_401" and not caught.value.transient
    assert "API key" in caught.value.message
    assert sleeps.calls == [] and len(fake.completions()) == 1


async def test_a_server_that_does_not_answer_times_out(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.hold = threading.Event()
    try:
        with pytest.raises(LLMError) as caught:
            await provider(fake, guarded, timeout_seconds=0.2, max_retries=1).complete(HELLO)
    finally:
        fake.hold.set()
    assert caught.value.code == "timeout" and caught.value.transient
    assert len(fake.completions()) == 2  # tried again once


async def test_the_content_filter_is_surfaced(fake: FakeOpenAI, guarded: httpx.AsyncClient) -> None:
    fake.queue.append(Reply.json(completion(None, finish_reason="content_filter")))
    done = await provider(fake, guarded).complete(HELLO)
    assert done.filtered and done.text is None
    fake.queue.append(error(400, "The prompt was filtered", "content_filter"))
    with pytest.raises(LLMError) as caught:
        await provider(fake, guarded).complete(HELLO)
    assert caught.value.code == "content_filter" and not caught.value.transient


async def test_azure_openai_uses_its_header_path_and_api_version(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    azure = provider(
        fake, guarded, base_url=fake.url, model="vendas-gpt4o", api_version="2024-06-01"
    )
    done = await azure.complete(HELLO)
    assert done.model == "vendas-gpt4o"
    [sent] = fake.completions()
    assert sent.path == "/openai/deployments/vendas-gpt4o/chat/completions"
    assert sent.query["api-version"] == ["2024-06-01"]
    assert sent.headers["api-key"] == API_KEY
    assert "authorization" not in sent.headers


async def test_a_garbled_answer_is_a_bad_response(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    fake.queue.append(Reply(200, b"<html>proxy login</html>", "text/html"))
    with pytest.raises(LLMError) as caught:
        await provider(fake, guarded).complete(HELLO)
    assert caught.value.code == "bad_response"


async def test_the_outbound_guard_refuses_loopback_unless_allowed(fake: FakeOpenAI) -> None:
    async with outbound.client(outbound.STRICT, timeout=5.0) as strict:
        with pytest.raises(LLMError) as caught:
            await provider(fake, strict).complete(HELLO)
    assert caught.value.code == "refused" and not caught.value.transient
    assert "127.0.0.1" in caught.value.message
    assert fake.completions() == []
    with pytest.raises(outbound.UrlProblem) as refused:
        outbound.check_url(outbound.STRICT, "http://10.0.0.8:8000/v1")
    assert refused.value.kind == "private"
    with pytest.raises(outbound.UrlProblem) as metadata:
        outbound.check_url(outbound.Policy.of(["169.254.0.0/16"]), "http://169.254.169.254/v1")
    assert metadata.value.kind == "forbidden"


async def test_check_connection_sends_a_tiny_prompt(
    fake: FakeOpenAI, guarded: httpx.AsyncClient
) -> None:
    check = await provider(fake, guarded).check_connection()
    assert check.ok and check.model == "gpt-test"
    assert fake.completions()[0].json["max_tokens"] == 5
    bad = await provider(fake, guarded, api_key="nope").check_connection()
    assert not bad.ok and "API key" in bad.detail


# --- the sandbox ------------------------------------------------------------------------------

EXAMPLES = [
    ("Vocês entregam em Campinas?", "Entregamos sim! Para Campinas o prazo é de 2 dias úteis."),
    ("Qual o horário de funcionamento?", "Atendemos de segunda a sexta, das 9h às 18h."),
]


async def test_the_sandbox_is_deterministic_and_offline() -> None:
    sandbox = SandboxProvider(EXAMPLES)
    talk = [ChatMessage("user", "vcs entregam em campinas???")]
    first = await sandbox.complete(talk)
    again = await SandboxProvider(EXAMPLES).complete(talk)
    assert first == again
    assert first.text == EXAMPLES[0][1]
    assert first.usage.total_tokens > 0 and first.model == "sandbox-1"
    price = await sandbox.complete([ChatMessage("user", "Quanto custa o plano anual?")])
    assert price.text is not None and "valores" in price.text
    english = await sandbox.complete([ChatMessage("user", "How much is the price?")])
    assert english.text is not None and english.text.startswith("Happy to share prices")
    other = await sandbox.complete([ChatMessage("user", "xyz")])
    assert other.text == "Obrigado pela mensagem! Vou verificar e já te respondo."


async def test_the_sandbox_calls_the_handoff_tool_when_asked_for_a_person() -> None:
    handoff = Tool("handoff", "Hand the conversation to a human", {"type": "object"})
    done = await SandboxProvider().complete(
        [ChatMessage("user", "Quero falar com um atendente humano")], tools=[handoff]
    )
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls[0].name == "handoff"
    assert json.dumps(done.tool_calls[0].arguments) == '{"reason": "asked"}'
    check = await SandboxProvider().check_connection()
    assert check.ok


async def test_the_factory_picks_the_configured_provider(guarded: httpx.AsyncClient) -> None:
    assert isinstance(build_provider(LLMConfig()), SandboxProvider)
    configured = build_provider(
        LLMConfig(
            provider="openai_compatible",
            base_url="https://api.openai.com/v1/",
            model="gpt-4o-mini",
            api_key="k",
        ),
        guarded,
    )
    assert isinstance(configured, OpenAICompatibleProvider)
    assert configured.url() == "https://api.openai.com/v1/chat/completions"
    with pytest.raises(ValueError, match="HTTP client"):
        build_provider(
            LLMConfig(provider="openai_compatible", base_url="https://x.test/v1", model="m")
        )
