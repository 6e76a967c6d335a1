"""A fake WAHA (WhatsApp Web HTTP bridge) and builders of its signed webhooks, in the shapes of
shared/reference/providers.md §2."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import FakeServer, RecordedRequest, Reply

ME = "5511900000000@c.us"
API_KEY = "waha-secret-key"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """A valid black-and-white checkerboard PNG, built by hand (no imaging library)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    # Greyscale, 8 bits per pixel; each row starts with filter byte 0.
    rows = b"".join(
        b"\x00" + bytes(255 * ((x + y) % 2) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


QR_PNG = tiny_png()


@dataclass
class FakeSession:
    name: str
    status: str = "STOPPED"
    config: dict[str, Any] = field(default_factory=dict)
    me: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "config": self.config,
            "me": self.me if self.status == "WORKING" else None,
            "engine": {"engine": "WEBJS"},
        }


class FakeWaha(FakeServer):
    """Knobs: ``sessions`` (``set_status(name, status)`` / ``add_session``), ``start_status``
    (status a started session goes to, SCAN_QR_CODE by default), ``id_style`` ("object" like
    WEBJS, "string" like NOWEB), ``add_media(name, data, mime) -> url``,
    ``omit_content_length``, ``down``, ``delay``. ``sent`` holds (path, json) of sends."""

    def __init__(self, *, api_key: str | None = API_KEY) -> None:
        self.api_key = api_key
        self.sessions: dict[str, FakeSession] = {}
        self.start_status = "SCAN_QR_CODE"
        self.id_style = "object"
        self.media: dict[str, tuple[bytes, str]] = {}
        self.omit_content_length = False
        self.sent: list[tuple[str, dict[str, Any]]] = []
        super().__init__()

    # --- knobs ---------------------------------------------------------------------------

    def add_session(self, name: str = "default", status: str = "WORKING") -> FakeSession:
        session = FakeSession(name, status, me={"id": ME, "pushName": "Loja Loved"})
        self.sessions[name] = session
        return session

    def set_status(self, name: str, status: str) -> None:
        if name not in self.sessions:
            self.add_session(name, status)
        self.sessions[name].status = status

    def add_media(self, name: str, data: bytes, mime: str) -> str:
        self.media[name] = (data, mime)
        return f"{self.url}/api/files/default/{name}"

    # --- server --------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        if self.api_key is not None and not hmac.compare_digest(
            request.headers.get("x-api-key", ""), self.api_key
        ):
            return _error(401, "Unauthorized")
        parts = [p for p in request.path.split("/") if p]
        body = request.json if isinstance(request.json, dict) else {}
        if parts[:1] != ["api"]:
            return _error(404, f"Cannot {request.method} {request.path}")
        route = parts[1:]
        method = request.method
        if method == "POST" and route == ["sessions"]:
            return self._create(body)
        if len(route) >= 2 and route[0] == "sessions":
            return self._session_call(method, route[1], route[2:])
        if method == "GET" and len(route) == 3 and route[1:] == ["auth", "qr"]:
            return self._qr(route[0], request)
        if method == "POST" and route in (["sendText"], ["sendImage"], ["sendFile"]):
            return self._send(route[0], body)
        if method == "GET" and len(route) == 3 and route[0] == "files":
            if route[2] not in self.media:
                return _error(404, "File not found")
            data, mime = self.media[route[2]]
            return Reply(200, data, mime, omit_length=self.omit_content_length)
        return _error(404, f"Cannot {method} {request.path}")

    def _create(self, body: dict[str, Any]) -> Reply:
        name = str(body.get("name") or "default")
        if name in self.sessions:
            return _error(422, f"Session '{name}' already exists. Use PUT to update it.")
        session = self.add_session(name, self.start_status if body.get("start") else "STOPPED")
        session.config = body.get("config") or {}
        return Reply.json(session.as_json(), 201)

    def _session_call(self, method: str, name: str, action: list[str]) -> Reply:
        session = self.sessions.get(name)
        if session is None:
            return _error(404, f"We didn't find a session with name '{name}'.")
        if method == "GET" and not action:
            return Reply.json(session.as_json())
        if method == "POST" and action == ["start"]:
            if session.status in ("STOPPED", "FAILED"):
                session.status = self.start_status
            return Reply.json(session.as_json(), 201)
        if method == "POST" and action == ["logout"]:
            session.status = self.start_status
            return Reply.json(session.as_json(), 201)
        return _error(404, f"Cannot {method} /api/sessions/{name}/{'/'.join(action)}")

    def _qr(self, name: str, request: RecordedRequest) -> Reply:
        session = self.sessions.get(name)
        if session is None:
            return _error(404, f"We didn't find a session with name '{name}'.")
        if session.status != "SCAN_QR_CODE":
            return _error(
                422,
                f"Can not get screenshot for session '{name}' with status '{session.status}'",
            )
        if "application/json" in request.headers.get("accept", ""):
            return Reply.json({"mimetype": "image/png", "data": base64.b64encode(QR_PNG).decode()})
        return Reply(200, QR_PNG, "image/png")

    def _send(self, kind: str, body: dict[str, Any]) -> Reply:
        name = body.get("session")
        session = self.sessions.get(str(name))
        if session is None:
            return _error(404, f"We didn't find a session with name '{name}'.")
        if session.status != "WORKING":
            return _error(
                422,
                f"Session status is not as expected. Try again later or restart the session. "
                f"Expected: WORKING, current: {session.status}",
            )
        chat = body.get("chatId")
        missing = [
            f"{key} should not be empty"
            for key in ("chatId", "text" if kind == "sendText" else "file")
            if not body.get(key)
        ]
        if missing:
            return _error(400, missing, "Bad Request")
        self.sent.append((kind, body))
        key = secrets.token_hex(10).upper()
        serialized = f"true_{chat}_{key}"
        message_id: Any = serialized
        if self.id_style == "object":
            message_id = {"fromMe": True, "remote": chat, "id": key, "_serialized": serialized}
        return Reply.json(
            {
                "id": message_id,
                "timestamp": int(time.time()),
                "from": ME,
                "to": chat,
                "fromMe": True,
                "body": body.get("text") or body.get("caption") or "",
                "ack": 0,
            },
            201,
        )


def _error(status: int, message: str | list[str], error: str | None = None) -> Reply:
    return Reply.json(
        {"statusCode": status, "message": message, "error": error or _REASONS.get(status, "")},
        status,
    )


_REASONS = {401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity"}


# --- webhook builders ---------------------------------------------------------------------


def _envelope(event: str, payload: dict[str, Any], session: str) -> dict[str, Any]:
    return {
        "id": "evt_" + uuid.uuid4().hex,
        "timestamp": int(time.time() * 1000),
        "event": event,
        "session": session,
        "me": {"id": ME, "pushName": "Loja Loved"},
        "engine": "WEBJS",
        "environment": {"version": "2025.5.1", "engine": "WEBJS", "tier": "CORE"},
        "payload": payload,
    }


def waha_message_event(
    body: str = "Olá!",
    *,
    from_: str = "5511987654321@c.us",
    from_me: bool = False,
    media: dict[str, Any] | None = None,
    notify_name: str | None = "Maria",
    message_id: str | None = None,
    timestamp: int | None = None,
    reply_to: str | None = None,
    session: str = "default",
) -> dict[str, Any]:
    """A ``message`` event; ``media`` is ``{"url","mimetype","filename"}`` (hasMedia then)."""
    payload: dict[str, Any] = {
        "id": message_id or f"{str(from_me).lower()}_{from_}_{secrets.token_hex(10).upper()}",
        "timestamp": timestamp if timestamp is not None else int(time.time()),
        "from": from_,
        "fromMe": from_me,
        "source": "app",
        "to": ME,
        "body": body,
        "hasMedia": media is not None,
        "ack": 1,
        "media": media,
        "_data": {"notifyName": notify_name} if notify_name else {},
    }
    if reply_to:
        payload["replyTo"] = {"id": reply_to, "participant": None, "body": "..."}
    return _envelope("message", payload, session)


def waha_ack_event(
    message_id: str,
    ack: int,
    *,
    to: str = "5511987654321@c.us",
    from_me: bool = True,
    session: str = "default",
) -> dict[str, Any]:
    """A ``message.ack``: ``ack`` -1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3 READ, 4 PLAYED."""
    payload = {
        "id": message_id,
        "from": ME if from_me else to,
        "to": to if from_me else ME,
        "participant": None,
        "fromMe": from_me,
        "ack": ack,
        "ackName": ACK_NAMES[ack],
    }
    return _envelope("message.ack", payload, session)


def waha_session_event(status: str, *, session: str = "default") -> dict[str, Any]:
    return _envelope(
        "session.status",
        {"name": session, "status": status, "statuses": [{"status": status}]},
        session,
    )


def waha_headers(body: bytes, key: str) -> dict[str, str]:
    """The headers WAHA posts with an HMAC-configured webhook (lower-case keys)."""
    return {
        "content-type": "application/json",
        "x-webhook-request-id": uuid.uuid4().hex,
        "x-webhook-timestamp": str(int(time.time() * 1000)),
        "x-webhook-hmac": hmac.new(key.encode(), body, hashlib.sha512).hexdigest(),
        "x-webhook-hmac-algorithm": "sha512",
    }
