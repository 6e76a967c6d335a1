"""The LLM provider interface: what every adapter (an OpenAI-compatible Chat Completions
server, the offline sandbox) offers, in the product's own types.

Adapters are plain objects built from one decrypted configuration (:class:`LLMConfig`) and,
for the ones that talk HTTP, an ``httpx.AsyncClient`` from the outbound guard; they know the
wire format and nothing about the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

ProviderKind = Literal["sandbox", "openai_compatible"]
PROVIDER_KINDS: tuple[str, ...] = ("sandbox", "openai_compatible")
Role = Literal["system", "user", "assistant", "tool"]
# "stop", "length", "tool_calls", "content_filter" (the provider withheld the answer), or
# whatever else a server says, as it said it.
FinishReason = str
CONTENT_FILTER = "content_filter"


class LLMError(Exception):
    """A provider refused or failed a call.

    ``code``: ``http_<status>``, ``network``, ``timeout``, ``refused`` (the outbound guard),
    ``bad_response``, ``invalid_tool_arguments``…; ``message`` is a sentence a user can act
    on; ``transient`` says whether trying again later may succeed (429, 5xx, timeouts)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        transient: bool = False,
        http_status: int | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status
        self.details = details
        # Seconds the server asked to wait (``Retry-After``), when it said.
        self.retry_after: float | None = None


class InvalidToolArguments(LLMError):
    """The model called a tool with arguments that are not valid JSON, not an object, or do
    not match the tool's parameters; or it called a tool it was not given. ``completion``
    holds the rest of the answer (text, usage), ``raw`` the arguments as sent."""

    def __init__(
        self, tool_name: str, reason: str, raw: str, completion: Completion | None = None
    ) -> None:
        super().__init__(
            "invalid_tool_arguments",
            f"The model called the tool {tool_name!r} with invalid arguments: {reason}",
            details=raw[:500],
        )
        self.tool_name = tool_name
        self.reason = reason
        self.raw = raw
        self.completion = completion


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str | None
    # An assistant message that called tools, and the answer to one call (role "tool").
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"
    model: str | None = None

    @property
    def filtered(self) -> bool:
        """The provider's content filter withheld (part of) the answer."""
        return self.finish_reason == CONTENT_FILTER


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    detail: str
    model: str | None = None


@dataclass(frozen=True)
class LLMConfig:
    """One organization's AI configuration with its key in the clear: built for a call,
    never stored (``assistant.ai_settings`` keeps it encrypted)."""

    provider: ProviderKind = "sandbox"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    # Azure OpenAI: the ``api-version`` query parameter; its presence selects Azure's URL
    # form (``/openai/deployments/<model>/chat/completions``) and ``api-key`` header.
    api_version: str | None = None
    timeout_seconds: float = 30.0
    max_retries: int = 2
    monthly_token_budget: int | None = None
    # Call recordings sent for speech-to-text (``calls.transcribe``); off unless turned on.
    transcription_enabled: bool = False
    transcription_model: str = "whisper-1"


@runtime_checkable
class LLMProvider(Protocol):
    kind: ProviderKind

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Tool] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One answer. Raises ``LLMError`` (``InvalidToolArguments`` for a bad tool call);
        a content-filtered answer is returned with ``finish_reason == "content_filter"``."""
        ...

    async def check_connection(self) -> ConnectionCheck: ...


@dataclass(frozen=True)
class AudioFile:
    """A recording to transcribe: its bytes, a file name with the right extension (the
    server infers the format from it) and its media type."""

    data: bytes
    filename: str
    content_type: str


@runtime_checkable
class SpeechToText(Protocol):
    kind: ProviderKind

    async def transcribe(self, audio: AudioFile, *, model: str, language: str | None) -> str:
        """The recording's text. ``language`` is an ISO-639-1 hint ("pt") or None. Raises
        ``LLMError`` (``transient`` for 429, 5xx, timeouts)."""
        ...


# --- tool-call arguments -------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, list) else [kind]
    for name in kinds:
        types = _JSON_TYPES.get(str(name))
        if types is None:
            return True  # a type we do not check
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, types):
            return True
    return False


def schema_problem(value: Any, schema: Mapping[str, Any], where: str = "arguments") -> str | None:
    """Why ``value`` does not match ``schema`` (the subset of JSON Schema tool parameters
    use: type, properties, required, additionalProperties, enum, items); None when it does."""
    if "type" in schema and not _type_ok(value, schema["type"]):
        return f"{where} must be of type {schema['type']}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {list(schema['enum'])}"
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                return f"{where}.{name} is required"
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{where} has unknown properties: {', '.join(extra)}"
        for name, sub in props.items():
            if name in value and isinstance(sub, Mapping):
                problem = schema_problem(value[name], sub, f"{where}.{name}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{where}[{i}]")
            if problem:
                return problem
    return None


def parse_tool_call(
    call_id: str, name: str, raw: Any, tools: Sequence[Tool] | None
) -> ToolCall | tuple[str, str]:
    """A checked ``ToolCall``, or (reason, raw text) when the call is not acceptable: a tool
    not offered, arguments that are not JSON, not an object, or off the tool's schema."""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    offered = {t.name: t for t in tools or ()}
    tool = offered.get(name)
    if tool is None:
        return ("the tool was not offered", text)
    if isinstance(raw, dict):
        args: Any = raw
    else:
        try:
            args = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            return (f"not valid JSON ({exc.msg})", text)
    if not isinstance(args, dict):
        return ("not a JSON object", text)
    problem = schema_problem(args, tool.parameters)
    if problem:
        return (problem, text)
    return ToolCall(id=call_id, name=name, arguments=args)


def rough_tokens(text: str | None) -> int:
    """A token estimate for providers that count none (about 4 characters a token)."""
    return (len(text or "") + 3) // 4
