"""An OpenAI-compatible Chat Completions adapter: OpenAI itself, Azure OpenAI (an
``api-key`` header, the deployment in the path and an ``api-version`` query parameter) and
self-hosted servers that speak the same API (vLLM, llama.cpp, Ollama, LM Studio…).

Every call goes through the ``httpx.AsyncClient`` it is given: in the product that is the
outbound guard's (``core.outbound.client``), so a private address is called only when the
installation allows it. 429 and 5xx answers, timeouts and connection failures are retried a
few times, waiting what ``Retry-After`` asks (bounded) or a short exponential backoff; the
waiting goes through an injectable ``sleep`` and the product clock, so tests never sleep.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from lovedcrm.assistant.llm.base import (
    CONTENT_FILTER,
    AudioFile,
    ChatMessage,
    Completion,
    ConnectionCheck,
    InvalidToolArguments,
    LLMError,
    ProviderKind,
    Tool,
    ToolCall,
    Usage,
    parse_tool_call,
)
from lovedcrm.core import clock
from lovedcrm.core.outbound import OutboundRefused

Sleeper = Callable[[float], Awaitable[None]]

SERVICE = "The AI provider"
# Waiting longer than this between two attempts is the caller's business (a job retried
# later), never a request held open.
MAX_BACKOFF_SECONDS = 20.0
BASE_BACKOFF_SECONDS = 0.5
_BODY_LIMIT = 4 * 1024 * 1024


def _message_json(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _tool_json(tool: Tool) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (a number, or an HTTP date read against the
    product clock); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - clock.now()).total_seconds())


def _error_text(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) of an OpenAI-style ``{"error": {...}}`` body."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return None, body[:200].decode("utf-8", "replace") or None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        return (str(code) if code else None), (str(message) if message else None)
    if isinstance(error, str):
        return None, error
    return None, None


def http_error(status: int, body: bytes) -> LLMError:
    code, detail = _error_text(body)
    transient = status == 429 or status >= 500
    if code == CONTENT_FILTER:
        return LLMError(
            CONTENT_FILTER,
            "The AI provider's content filter refused the request.",
            http_status=status,
            details=detail,
        )
    if status in (401, 403):
        message = "The AI provider refused the API key: check it in Settings → AI."
    elif status == 404:
        message = (
            "The AI provider does not know this model or address: check them in Settings → AI."
        )
    elif status == 429:
        message = "The AI provider is rate limiting this key; try again shortly."
    elif transient:
        message = f"The AI provider answered HTTP {status}; try again shortly."
    else:
        message = f"The AI provider refused the request (HTTP {status})."
    return LLMError(
        f"http_{status}", message, transient=transient, http_status=status, details=detail
    )


class OpenAICompatibleProvider:
    kind: ProviderKind = "openai_compatible"

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_version: str | None = None,
        timeout_seconds: float = 30.0,
        max_retries: int = 2,
        sleep: Sleeper | None = None,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.api_version = api_version
        self.timeout = httpx.Timeout(timeout_seconds)
        self.max_retries = max(0, max_retries)
        self.sleep: Sleeper = sleep or asyncio.sleep
        self.max_backoff = max_backoff_seconds

    @property
    def azure(self) -> bool:
        return bool(self.api_version)

    def url(self) -> str:
        if self.azure:
            return f"{self.base_url}/openai/deployments/{self.model}/chat/completions"
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            if self.azure:
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = retry_after if retry_after is not None else BASE_BACKOFF_SECONDS * 2**attempt
        return min(wait, self.max_backoff)

    async def _post(self, body: dict[str, Any]) -> bytes:
        return await self._send(self.url(), json=body)

    async def _send(self, url: str, **request: Any) -> bytes:
        """POST ``request`` (``json=`` or ``data=``/``files=``) to ``url``, retrying 429, 5xx,
        timeouts and network failures ``max_retries`` times; the answer's body on 200."""
        params = {"api-version": self.api_version} if self.azure else None
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = await self.client.post(
                    url,
                    headers=self.headers(),
                    params=params,
                    timeout=self.timeout,
                    **request,
                )
            except OutboundRefused as exc:
                raise LLMError(
                    "refused", f"{SERVICE} was not called: {exc}", details=str(exc)
                ) from exc
            except httpx.TimeoutException as exc:
                error = LLMError(
                    "timeout",
                    f"{SERVICE} did not answer in time.",
                    transient=True,
                    details=f"{type(exc).__name__}: {exc}",
                )
            except httpx.HTTPError as exc:
                error = LLMError(
                    "network",
                    "Could not reach the AI provider.",
                    transient=True,
                    details=f"{type(exc).__name__}: {exc}",
                )
            else:
                content = response.content[:_BODY_LIMIT]
                if response.status_code == 200:
                    return content
                error = http_error(response.status_code, content)
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                error.retry_after = retry_after
            if not error.transient or attempt >= self.max_retries:
                raise error
            await self.sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def transcription_url(self, model: str) -> str:
        if self.azure:
            return f"{self.base_url}/openai/deployments/{model}/audio/transcriptions"
        return f"{self.base_url}/audio/transcriptions"

    async def transcribe(self, audio: AudioFile, *, model: str, language: str | None) -> str:
        """``POST /audio/transcriptions`` (multipart: ``file``, ``model``, ``language``,
        ``response_format=json``) → the ``text`` of ``{"text": "..."}``."""
        fields = {"model": model, "response_format": "json"}
        if language:
            fields["language"] = language
        raw = await self._send(
            self.transcription_url(model),
            data=fields,
            files={"file": (audio.filename, audio.data, audio.content_type)},
        )
        try:
            data = json.loads(raw)
            text = data["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMError(
                "bad_response",
                "The AI provider's answer is not a transcription.",
                details=raw[:300].decode("utf-8", "replace"),
            ) from exc
        if not isinstance(text, str):
            raise LLMError("bad_response", "The AI provider's answer is not a transcription.")
        return text.strip()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Tool] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message_json(m) for m in messages],
        }
        if tools:
            body["tools"] = [_tool_json(t) for t in tools]
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return parse_completion(await self._post(body), tools)

    async def check_connection(self) -> ConnectionCheck:
        try:
            done = await self.complete(
                [
                    ChatMessage("system", "Answer with the single word OK."),
                    ChatMessage("user", "ping"),
                ],
                max_tokens=5,
                temperature=0,
            )
        except LLMError as exc:
            return ConnectionCheck(False, exc.message, self.model)
        if done.filtered:
            return ConnectionCheck(
                False, "The AI provider's content filter withheld the answer.", done.model
            )
        return ConnectionCheck(True, "The AI provider answered.", done.model or self.model)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_completion(raw: bytes, tools: Sequence[Tool] | None) -> Completion:
    """A Chat Completions answer in the product's terms. Tool calls are checked against the
    tools offered: a bad one raises ``InvalidToolArguments`` (carrying the rest)."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError(
            "bad_response",
            "The AI provider's answer is not a Chat Completions answer.",
            details=raw[:300].decode("utf-8", "replace"),
        ) from exc
    usage_data = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    usage = Usage(_int(usage_data.get("prompt_tokens")), _int(usage_data.get("completion_tokens")))
    text = message.get("content") if isinstance(message.get("content"), str) else None
    finish = str(choice.get("finish_reason") or "stop")
    model = data.get("model") if isinstance(data.get("model"), str) else None
    calls: list[ToolCall] = []
    problem: tuple[str, str, str] | None = None
    for entry in message.get("tool_calls") or ():
        function = entry.get("function") if isinstance(entry, dict) else None
        if not isinstance(function, dict):
            problem = problem or ("?", "the call has no function", json.dumps(entry)[:500])
            continue
        name = str(function.get("name") or "")
        checked = parse_tool_call(
            str(entry.get("id") or uuid.uuid4().hex), name, function.get("arguments"), tools
        )
        if isinstance(checked, ToolCall):
            calls.append(checked)
        elif problem is None:
            problem = (name, checked[0], checked[1])
    completion = Completion(
        text=text, tool_calls=tuple(calls), usage=usage, finish_reason=finish, model=model
    )
    if problem is not None:
        raise InvalidToolArguments(problem[0], problem[1], problem[2], completion)
    return completion
