"""Per-request context (request id, client address, user agent) for logs and the audit trail."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


@dataclass(frozen=True)
class RequestMeta:
    request_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None


_NO_META = RequestMeta()
request_meta_var: ContextVar[RequestMeta] = ContextVar("request_meta", default=_NO_META)
