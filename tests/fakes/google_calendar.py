"""A loopback Google: the OAuth token endpoint (authorization code with PKCE, refresh,
invalid_grant once revoked) and Calendar API v3 events (list with syncToken / pageToken and
410 GONE, insert with conferenceData.createRequest → hangoutLink, patch, delete) and the
member's calendar list (``users/me/calendarList``: ``calendars``, with ``accessRole``)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.fakes import FakeServer, RecordedRequest, Reply


class FakeGoogle(FakeServer):
    def __init__(self, *, page_size: int = 2) -> None:
        super().__init__()
        self.page_size = page_size
        self.codes: dict[str, str] = {}  # code -> S256 challenge
        self.access: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.revoked = False
        self.events: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.changed_at: dict[str, int] = {}
        self.expired_tokens: set[str] = set()
        self.fail_next: list[int] = []  # statuses answered before anything else
        self._ids = itertools.count(1)
        self.calendars: list[dict[str, Any]] = [
            {"id": "ana@example.com", "summary": "Ana", "primary": True, "accessRole": "owner"}
        ]

    # --- what a test does -----------------------------------------------------------------
    def authorize(self, challenge: str) -> str:
        code = f"code-{next(self._ids)}"
        self.codes[code] = challenge
        return code

    def add_event(self, **fields: Any) -> dict[str, Any]:
        event_id = fields.pop("id", None) or f"g{next(self._ids)}"
        event = {"id": event_id, "status": "confirmed", **fields}
        self._touch(event)
        return event

    def cancel_event(self, event_id: str) -> None:
        self.events[event_id]["status"] = "cancelled"
        self._touch(self.events[event_id])

    def _touch(self, event: dict[str, Any]) -> None:
        self.version += 1
        self.events[event["id"]] = event
        self.changed_at[event["id"]] = self.version

    # --- the wire -------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        if self.fail_next:
            return Reply.json({"error": {"message": "busy"}}, self.fail_next.pop(0))
        if request.path == "/token":
            return self._token(parse_qs(request.body.decode()))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.access:
            return Reply.json({"error": {"code": 401, "message": "Invalid Credentials"}}, 401)
        if request.path == "/calendar/v3/users/me/calendarList":
            return Reply.json({"kind": "calendar#calendarList", "items": self.calendars})
        parts = [unquote(p) for p in request.path.split("/")]
        if len(parts) >= 6 and parts[3] == "calendars" and parts[5] == "events":
            event_id = parts[6] if len(parts) > 6 else None
            return self._events(request, event_id)
        return Reply.json({"error": {"message": "not found"}}, 404)

    def _token(self, form: dict[str, list[str]]) -> Reply:
        grant = form.get("grant_type", [""])[0]
        if grant == "authorization_code":
            code = form.get("code", [""])[0]
            verifier = form.get("code_verifier", [""])[0]
            challenge = self.codes.pop(code, None)
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if challenge is None or digest.rstrip(b"=").decode() != challenge:
                return Reply.json({"error": "invalid_grant", "error_description": "Bad code"}, 400)
            refresh = f"refresh-{next(self._ids)}"
            self.refresh_tokens.add(refresh)
            return self._issue(refresh)
        if grant == "refresh_token":
            refresh = form.get("refresh_token", [""])[0]
            if self.revoked or refresh not in self.refresh_tokens:
                return Reply.json(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    400,
                )
            return self._issue(None)
        return Reply.json({"error": "unsupported_grant_type"}, 400)

    def _issue(self, refresh: str | None) -> Reply:
        access = f"access-{next(self._ids)}"
        self.access.add(access)
        body: dict[str, Any] = {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
        if refresh:
            body["refresh_token"] = refresh
        return Reply.json(body)

    def _events(self, request: RecordedRequest, event_id: str | None) -> Reply:
        if request.method == "GET" and event_id is None:
            return self._list(request.query)
        if request.method == "POST":
            body = dict(request.json or {})
            create = (body.pop("conferenceData", None) or {}).get("createRequest")
            event = self.add_event(**body)
            if create and request.query.get("conferenceDataVersion") == ["1"]:
                event["hangoutLink"] = f"https://meet.google.com/abc-{event['id']}"
                event["conferenceData"] = {"createRequest": create}
            return Reply.json(event)
        if event_id not in self.events:
            return Reply.json({"error": {"message": "Not Found"}}, 404)
        if request.method == "PATCH":
            event = {**self.events[event_id], **(request.json or {})}
            self._touch(event)
            return Reply.json(event)
        if request.method == "DELETE":
            self.cancel_event(event_id)
            return Reply(204, b"")
        return Reply.json(self.events[event_id])

    def _list(self, query: dict[str, list[str]]) -> Reply:
        sync = query.get("syncToken", [None])[0]
        page = query.get("pageToken", [None])[0]
        if page:
            since, offset = (int(x) for x in page.split(":"))
        elif sync:
            if sync in self.expired_tokens or not sync.startswith("s"):
                return Reply.json(
                    {"error": {"code": 410, "message": "Sync token is no longer valid"}}, 410
                )
            since, offset = int(sync[1:]), 0
        else:
            since, offset = 0, 0
        changed = sorted(
            (e for e in self.events.values() if self.changed_at[e["id"]] > since),
            key=lambda e: self.changed_at[e["id"]],
        )
        if not sync and not page:
            changed = [e for e in changed if e["status"] != "cancelled"]
        chunk = changed[offset : offset + self.page_size]
        body: dict[str, Any] = {"items": [json.loads(json.dumps(e)) for e in chunk]}
        if offset + self.page_size < len(changed):
            body["nextPageToken"] = f"{since}:{offset + self.page_size}"
        else:
            body["nextSyncToken"] = f"s{self.version}"
        return Reply.json(body)
