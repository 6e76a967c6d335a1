"""A fake OpenAI-compatible server speaking Chat Completions on loopback: OpenAI's form
(``POST /v1/chat/completions`` with a bearer key) and Azure OpenAI's
(``POST /openai/deployments/<deployment>/chat/completions?api-version=…`` with ``api-key``).

Speech-to-text too: ``POST /v1/audio/transcriptions`` (or Azure's
``/openai/deployments/<deployment>/audio/transcriptions``), multipart/form-data with ``file``
(a file name and bytes), ``model`` and ``response_format=json`` required, ``language``
optional; answers ``{"text": transcript}``. ``transcription_queue`` serves replies first.

Knobs: ``queue`` (replies served in order before the default), ``api_key`` (None accepts any
key), ``answer`` (the default reply text), plus the shared ``down``/``hold``/``delay``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.fakes import FakeServer, RecordedRequest, Reply

API_KEY = "sk-test-0123456789abcdef"
_AZURE = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_AZURE_AUDIO = re.compile(r"/openai/deployments/([^/]+)/audio/transcriptions")


@dataclass(frozen=True)
class Part:
    filename: str | None
    content_type: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def multipart(request: RecordedRequest) -> dict[str, Part] | None:
    """The form-data parts of a request by field name; None when it is not multipart."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {kind}\r\n\r\n".encode() + request.body
    )
    parts: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        parts[name] = Part(
            part.get_filename(),
            part.get_content_type(),
            payload if isinstance(payload, bytes) else b"",
        )
    return parts


def completion(
    text: str | None = "Olá! Como posso ajudar?",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    model: str = "gpt-test",
    prompt_tokens: int = 12,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """A tool call as the wire carries it: ``arguments`` is a JSON *string* (maybe broken)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def error(status: int, message: str, code: str | None = None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return Reply(status=status, body=json.dumps(body).encode(), headers=dict(headers))


class FakeOpenAI(FakeServer):
    def __init__(self, *, api_key: str | None = API_KEY) -> None:
        self.api_key = api_key
        self.queue: list[Reply] = []
        self.answer = "Olá! Como posso ajudar?"
        self.transcription_queue: list[Reply] = []
        self.transcript = "Cliente pediu uma proposta até sexta."
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def completions(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def transcriptions(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/audio/transcriptions")]

    def _authorized(self, request: RecordedRequest) -> bool:
        if self.api_key is None:
            return True
        if _AZURE.fullmatch(request.path) or _AZURE_AUDIO.fullmatch(request.path):
            return request.headers.get("api-key") == self.api_key
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _transcribe(self, request: RecordedRequest, azure: bool) -> Reply:
        if azure and not request.query.get("api-version"):
            return error(404, "Resource not found: api-version missing")
        if not self._authorized(request):
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        parts = multipart(request)
        if parts is None:
            return error(400, "The request must be multipart/form-data.")
        audio = parts.get("file")
        if audio is None or not audio.data or not audio.filename:
            return error(400, "file is required (a named audio file)")
        if not re.search(r"\.(mp3|wav|m4a|ogg|webm|flac|mp4|mpeg|mpga)$", audio.filename):
            return error(400, f"Unrecognized file format: {audio.filename}")
        if not azure and not (parts.get("model") and parts["model"].text):
            return error(400, "model is required")
        if "response_format" in parts and parts["response_format"].text != "json":
            return error(400, "this fake only answers response_format=json")
        if self.transcription_queue:
            return self.transcription_queue.pop(0)
        return Reply.json({"text": self.transcript})

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and (
            request.path == "/v1/audio/transcriptions" or _AZURE_AUDIO.fullmatch(request.path)
        ):
            return self._transcribe(request, request.path != "/v1/audio/transcriptions")
        azure = _AZURE.fullmatch(request.path)
        if request.method != "POST" or not (azure or request.path == "/v1/chat/completions"):
            return error(404, "Not found")
        if azure and not request.query.get("api-version"):
            return error(404, "Resource not found: api-version missing")
        if not self._authorized(request):
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        if not isinstance(request.json, dict) or not request.json.get("messages"):
            return error(400, "messages is required")
        if self.queue:
            return self.queue.pop(0)
        model = azure.group(1) if azure else str(request.json.get("model") or "gpt-test")
        return Reply.json(completion(self.answer, model=model))
