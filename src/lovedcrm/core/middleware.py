"""ASGI middleware: request id + access log, a request body size limit, and the security
headers every answer carries."""

from __future__ import annotations

import ipaddress
import json
import re
import time
import uuid
from collections.abc import Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lovedcrm.core.context import RequestMeta, request_id_var, request_meta_var

log = structlog.stdlib.get_logger("lovedcrm.http")
_RID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


def _ip(host: str) -> str | None:
    """The peer's address if it is an IP (a unix socket or test client may give a name)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class HttpMiddleware:
    """An ASGI middleware that acts on HTTP requests (``handle``); any other scope (lifespan,
    websocket) passes straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestContextMiddleware(HttpMiddleware):
    """Gives each request an id (a client's ``X-Request-ID`` is kept if well-formed), binds it
    to the logs and the audit trail, echoes it back, and writes one access-log line."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        rid = incoming if _RID.match(incoming) else str(uuid.uuid4())
        client = scope.get("client")
        meta = RequestMeta(
            request_id=rid,
            ip_address=_ip(client[0]) if client else None,
            user_agent=headers.get("user-agent"),
        )
        t_rid = request_id_var.set(rid)
        t_meta = request_meta_var.set(meta)
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        started = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(t_rid)
            request_meta_var.reset(t_meta)


def describe_bytes(n: int) -> str:
    """``20 MB (20971520 bytes)`` for whole megabytes, else ``1500 bytes``."""
    if n >= 1_048_576 and n % 1_048_576 == 0:
        return f"{n // 1_048_576} MB ({n} bytes)"
    return f"{n} bytes"


class BodySizeLimitMiddleware(HttpMiddleware):
    """Refuses bodies over ``max_bytes`` with 413, by Content-Length or while streaming.
    ``path_limits`` gives some path prefixes their own limit (file uploads)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def _too_large(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "type": "https://lovedcrm.dev/problems/payload_too_large",
                "title": "Content too large",
                "status": 413,
                "detail": f"The request body is larger than the limit of {describe_bytes(limit)}",
                "limit_bytes": limit,
                "code": "payload_too_large",
                "request_id": request_id_var.get(),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/problem+json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", ""))
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                await self._too_large(send, limit)
                return
        if any(k == b"content-length" for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        # No length announced (chunked): read up to the limit first, then replay it, so the
        # refusal is a clean 413 rather than a parse error half-way through a handler.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def _replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, _replay, send)


# The policy every page satisfies: no inline script or style anywhere (templates pass data
# through data-* attributes or <script type="application/json">; static JS may set
# element.style). An answer that sets its own policy (the logo, stricter) keeps it.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# /redoc only: Redoc (styled-components) writes its styles into <style> elements and runs
# its search in a worker made from a blob: URL. Its script stays 'self'; the page shows
# nothing but the app's own OpenAPI document.
REDOC_CONTENT_SECURITY_POLICY = (
    CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    + "; worker-src 'self' blob:"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
HSTS = "max-age=31536000"


class SecurityHeadersMiddleware(HttpMiddleware):
    """Adds Content-Security-Policy, X-Frame-Options, X-Content-Type-Options,
    Referrer-Policy, Permissions-Policy (and Strict-Transport-Security when ``hsts``, i.e.
    the installation is served over HTTPS) to every HTTP answer. A header the route already
    set is kept as it is. ``path_policies`` gives some exact paths their own CSP (the API
    documentation pages)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool = False,
        path_policies: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(app)
        self.path_policies = dict(path_policies or {})
        base = [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"permissions-policy", PERMISSIONS_POLICY.encode()),
        ]
        if hsts:
            base.append((b"strict-transport-security", HSTS.encode()))
        self.headers = tuple(base)

    def policy_for(self, path: str) -> str:
        return self.path_policies.get(path, CONTENT_SECURITY_POLICY)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = (
            (b"content-security-policy", self.policy_for(scope.get("path", "")).encode()),
            *self.headers,
        )

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, _send)
