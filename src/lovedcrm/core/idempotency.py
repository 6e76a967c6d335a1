"""Idempotent POSTs: ``Idempotency-Key`` (IETF draft ``draft-ietf-httpapi-idempotency-key``).

A POST under ``/api/v1`` carrying ``Idempotency-Key`` (1–255 printable ASCII characters,
else 400 ``invalid_idempotency_key``) is recorded in ``idempotency_keys`` under
``key_hash = sha256(credential + "\\n" + key)``, the credential being the Authorization
header's value or the web session cookie. So a key belongs to one caller: the same key sent
with another credential is another key, and nobody can replay someone else's response.

- first request: a row ``in_progress`` is claimed, the request runs, and its response
  (status, content-type, location, body) is stored ``completed`` for 24 hours;
- a retry with the same key and the same request (method, path, query and body hash):
  the stored response again, with ``Idempotent-Replayed: true``; nothing runs;
- while the first is still running: 409 ``idempotency_in_progress``;
- the same key with a different request: 422 ``idempotency_key_reused``;
- a 5xx answer or an exception deletes the claim, so the retry runs for real;
- an expired row (completed after 24 h, or a claim left ``in_progress`` by a process that
  died, after ``LEASE``) is replaced by the next request.

Requests without a credential (sign-up, log-in) are passed through untouched: they would
otherwise share one key space between strangers.

The table has no row-level security (it holds no tenant data, only hashes and the caller's
own responses), so every statement runs as the app role on a short AUTOCOMMIT connection of
its own. The request's own transaction commits before the response is sent, so a response
is only stored for work that did commit. Left open: a crash between that commit and the
``completed`` write leaves a claim that expires after ``LEASE``; a retry after that runs
again.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from http.cookies import CookieError, SimpleCookie
from typing import Any, cast

import structlog
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lovedcrm.core.errors import problem
from lovedcrm.core.models import IdempotencyKey

HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
TTL = timedelta(hours=24)
LEASE = timedelta(minutes=5)
# Responses larger than this are sent but not stored (no replay for them).
MAX_STORED_BODY = 1_048_576
STORED_HEADERS = ("content-type", "location")
CLEANUP_PROBABILITY = 0.01

_T = cast(Table, IdempotencyKey.__table__)
log = structlog.stdlib.get_logger("lovedcrm.idempotency")


def key_hash(credential: str, key: str) -> str:
    return hashlib.sha256(f"{credential}\n{key}".encode()).hexdigest()


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    h = hashlib.sha256(f"{method} {path}?".encode())
    h.update(query)
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


def valid_key(raw: bytes) -> str | None:
    if not 1 <= len(raw) <= 255 or any(b < 0x20 or b > 0x7E for b in raw):
        return None
    return raw.decode("ascii")


def _credential(headers: list[tuple[bytes, bytes]], session_cookie: str) -> str | None:
    for name, value in headers:
        if name == b"authorization" and value.strip():
            return value.decode("latin-1").strip()
    for name, value in headers:
        if name == b"cookie":
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            if session_cookie in jar and jar[session_cookie].value:
                return "cookie:" + jar[session_cookie].value
    return None


async def _claim(engine: AsyncEngine, khash: str, rhash: str) -> dict[str, Any] | None:
    """``None`` when this request now owns the key; otherwise the live row found."""
    for _ in range(3):
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if random.random() < CLEANUP_PROBABILITY:  # noqa: S311 - housekeeping only
                await conn.execute(delete(_T).where(_T.c.expires_at < func.now()))
            stmt = pg_insert(_T).values(
                key_hash=khash,
                request_hash=rhash,
                state="in_progress",
                expires_at=func.now() + LEASE,
            )
            claim = stmt.on_conflict_do_update(
                index_elements=[_T.c.key_hash],
                set_={
                    "request_hash": stmt.excluded.request_hash,
                    "state": "in_progress",
                    "response_status": None,
                    "response_headers": None,
                    "response_body": None,
                    "created_at": func.now(),
                    "expires_at": stmt.excluded.expires_at,
                },
                where=_T.c.expires_at <= func.now(),
            ).returning(_T.c.key_hash)
            if (await conn.execute(claim)).first() is not None:
                return None
            row = (
                await conn.execute(
                    select(_T).where(_T.c.key_hash == khash, _T.c.expires_at > func.now())
                )
            ).first()
            if row is not None:
                return dict(row._mapping)
        # Gone between the two statements (released or expired): try again.
    return {"state": "in_progress", "request_hash": rhash}


async def _complete(
    engine: AsyncEngine, khash: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(_T)
            .where(_T.c.key_hash == khash, _T.c.state == "in_progress")
            .values(
                state="completed",
                response_status=status,
                response_headers=headers,
                response_body=body,
                expires_at=func.now() + TTL,
            )
        )


async def _release(engine: AsyncEngine, khash: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(_T).where(_T.c.key_hash == khash, _T.c.state == "in_progress"))


class IdempotencyMiddleware:
    """Pure ASGI: see the module's docstring."""

    def __init__(self, app: ASGIApp, *, session_cookie: str, path_prefix: str = "/api/v1/"):
        self.app = app
        self.session_cookie = session_cookie
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(self.path_prefix)
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        raw_key = next((v for k, v in headers if k == HEADER), None)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = valid_key(raw_key)
        if key is None:
            await problem(
                400,
                "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
                code="invalid_idempotency_key",
                instance=scope["path"],
            )(scope, receive, send)
            return
        credential = _credential(headers, self.session_cookie)
        if credential is None:
            await self.app(scope, receive, send)
            return

        body, replay_receive = await _read_body(receive)
        khash = key_hash(credential, key)
        rhash = request_hash(scope["method"], scope["path"], scope.get("query_string", b""), body)
        engine: AsyncEngine = scope["app"].state.db.app_engine

        existing = await _claim(engine, khash, rhash)
        if existing is not None:
            await self._answer_existing(existing, rhash, scope, receive, send)
            return

        start: Message | None = None
        chunks: list[bytes] = []

        async def _capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, replay_receive, _capture)
        except BaseException:
            await _release(engine, khash)
            raise
        if start is None:
            await _release(engine, khash)
            return
        status = int(start["status"])
        response_body = b"".join(chunks)
        if status >= 500 or len(response_body) > MAX_STORED_BODY:
            await _release(engine, khash)
        else:
            kept = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in start.get("headers", [])
                if k.decode("latin-1").lower() in STORED_HEADERS
            }
            try:
                await _complete(engine, khash, status, kept, response_body)
            except Exception:  # the work is done: answer it; a retry will simply run again
                log.exception("could not store the idempotent response")
                await _release(engine, khash)
        await send(start)
        await send({"type": "http.response.body", "body": response_body})

    async def _answer_existing(
        self, row: dict[str, Any], rhash: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if row["request_hash"] != rhash:
            response = problem(
                422,
                "This Idempotency-Key was already used for a different request. "
                "Use a new key for a new request.",
                code="idempotency_key_reused",
                instance=scope["path"],
            )
        elif row["state"] != "completed":
            response = problem(
                409,
                "A request with this Idempotency-Key is still being processed. Retry in a moment.",
                code="idempotency_in_progress",
                instance=scope["path"],
                headers={"Retry-After": "1"},
            )
        else:
            stored: dict[str, str] = row["response_headers"] or {}
            body: bytes = bytes(row["response_body"] or b"")
            out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.items()]
            out += [
                (b"content-length", str(len(body)).encode()),
                (REPLAYED_HEADER.lower().encode(), b"true"),
            ]
            await send(
                {"type": "http.response.start", "status": row["response_status"], "headers": out}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body (already bounded by the body size limit outside), and a
    ``receive`` that hands it to the app once, then relays the client's later messages."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def _replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, _replay
