"""A fake OpenAI-compatible server speaking Chat Completions on loopback: OpenAI's form
(``POST /v1/chat/completions`` with a bearer key) and Azure OpenAI's
(``POST /openai/deployments/<deployment>/chat/completions?api-version=…`` with ``api-key``).

Knobs: ``queue`` (replies served in order before the default), ``api_key`` (None accepts any
key), ``answer`` (the default reply text), plus the shared ``down``/``hold``/``delay``."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes import FakeServer, RecordedRequest, Reply

API_KEY = "sk-test-0123456789abcdef"
_AZURE = re.compile(r"/openai/deployments/([^/]+)/chat/completions")


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
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def completions(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _authorized(self, request: RecordedRequest) -> bool:
        if self.api_key is None:
            return True
        if _AZURE.fullmatch(request.path):
            return request.headers.get("api-key") == self.api_key
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def handle(self, request: RecordedRequest) -> Reply:
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
