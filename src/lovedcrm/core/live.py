"""Live pages: Server-Sent Events fed by PostgreSQL LISTEN/NOTIFY.

``core.events.emit`` NOTIFYs ``lovedcrm_live`` inside the transaction that made a change, so
PostgreSQL delivers it only once that transaction commits, to every process listening. Each
server process holds ONE listening connection (``LiveHub``, started with the first stream
or by the app's lifespan, reconnecting with a back-off) and fans the notes out, by
organization, to one bounded queue per open stream; a slow client loses its oldest events,
then gets a ``resync`` event (re-read the board) instead of holding memory. A stream holds no
database connection: authentication runs in the request's own short transaction, which
ends before the first byte is streamed.

What a stream carries: ``event: <type>`` (``lead.created``, ``lead.updated``, …),
``id: <event id>`` and ``data: {"type", "id", "lead_id", …}`` — ids only, never lead fields.
A page re-reads what it shows through the scoped endpoints (``GET /api/v1/board/cards/{id}``
404s for a lead the member cannot see). A member without ``leads:read_all`` therefore
receives the ids of events on any lead of their organization (not their fields): the NOTIFY
payload does not say whom a lead belongs to, and looking it up per event per stream would
put the database back in the streaming path. ``resync`` is sent after the listening
connection was re-established (events may have been missed) and after dropped events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import URL

from lovedcrm.core.deps import AnyPrincipal
from lovedcrm.core.events import LIVE_CHANNEL
from lovedcrm.core.metrics import SSE_CONNECTIONS
from lovedcrm.core.openapi import problem_responses

log = structlog.stdlib.get_logger("lovedcrm.live")

HEARTBEAT_SECONDS = 15.0
QUEUE_SIZE = 256
RESYNC = {"type": "resync"}


class Subscription:
    """One open stream: a bounded queue of notes for one organization."""

    def __init__(
        self, organization_id: str, size: int = QUEUE_SIZE, user_id: str | None = None
    ) -> None:
        self.organization_id = organization_id
        self.user_id = user_id  # notes addressed to one member ("user") reach only theirs
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, note: dict[str, Any]) -> None:
        """Queue a note; when full, drop the oldest and ask for a resync."""
        while True:
            try:
                self.queue.put_nowait(note)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.dropped += 1
                note = RESYNC


def conninfo(url: URL) -> str:
    """A libpq connection string from the app role's SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class LiveHub:
    """The process's single LISTEN connection and its subscribers."""

    def __init__(self, dsn: str, *, retry_max: float = 10.0) -> None:
        self.dsn = dsn
        self.retry_max = retry_max
        self.subscribers: dict[str, set[Subscription]] = {}
        self.ready = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lovedcrm-live")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def wait_ready(self, seconds: float = 5.0) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), seconds)
        return self.ready.is_set()

    def subscribe(
        self, organization_id: uuid.UUID, user_id: uuid.UUID | None = None
    ) -> Subscription:
        sub = Subscription(str(organization_id), user_id=str(user_id) if user_id else None)
        self.subscribers.setdefault(sub.organization_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self.subscribers.get(sub.organization_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[sub.organization_id]

    def dispatch(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            org = str(note.pop("org"))
            user = note.pop("user", None)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("live: malformed notification", payload=payload[:200])
            return
        for sub in list(self.subscribers.get(org, ())):
            if user is None or sub.user_id == user:  # a member's own notification: theirs only
                sub.offer(note)

    def _broadcast(self, note: dict[str, Any]) -> None:
        for subs in self.subscribers.values():
            for sub in subs:
                sub.offer(note)

    async def _run(self) -> None:
        delay, connected_before = 0.5, False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    self._conn = conn
                    await conn.execute(f"LISTEN {LIVE_CHANNEL}")
                    self.ready.set()
                    if connected_before:
                        self._broadcast(RESYNC)  # notes sent while we were away are lost
                    connected_before, delay = True, 0.5
                    async for notify in conn.notifies():
                        self.dispatch(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live: listening connection lost", error=str(exc))
            finally:
                self.ready.clear()
                self._conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)


def get_hub(app: Any) -> LiveHub:
    """The app's hub, started on first use (one per process and event loop)."""
    hub: LiveHub | None = getattr(app.state, "live_hub", None)
    loop = asyncio.get_running_loop()
    if hub is None or hub.loop is not loop:
        hub = LiveHub(conninfo(app.state.db.app_url))
        hub.start()
        app.state.live_hub = hub
    return hub


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return "\n".join(lines) + "\n\n"


async def stream(
    hub: LiveHub, sub: Subscription, request: Request, heartbeat: float = HEARTBEAT_SECONDS
) -> AsyncIterator[str]:
    SSE_CONNECTIONS.inc()
    try:
        yield "retry: 3000\n: connected\n\n"
        while True:
            try:
                note = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": heartbeat\n\n"
                continue
            kind = str(note.get("type", "message"))
            yield sse(kind, note, note.get("id"))
    finally:
        SSE_CONNECTIONS.dec()
        hub.unsubscribe(sub)


router = APIRouter(tags=["live"])


@router.get(
    "/api/v1/events/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events: `event: <type>`, `id:`, `data: <json>`; "
            "a comment every 15 s.",
        },
        **problem_responses(401, 403),
    },
)
async def event_stream(request: Request, principal: AnyPrincipal) -> StreamingResponse:
    """Live changes of your organization (leads created, moved, edited, activities) as
    Server-Sent Events. Events carry ids only: re-read what you show through the API."""
    organization_id = principal.org()
    hub = get_hub(request.app)
    await hub.wait_ready()
    sub = hub.subscribe(organization_id, principal.user_id)
    return StreamingResponse(
        stream(hub, sub, request, getattr(request.app.state, "live_heartbeat", HEARTBEAT_SECONDS)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
