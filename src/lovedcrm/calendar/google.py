"""Google Calendar API v3 and Google's OAuth 2.0 token endpoint, over ``core.outbound``.

Only what the agenda needs, in its own types: exchange a code (PKCE), refresh a token, list a
calendar's events incrementally (``syncToken``, ``pageToken``; 410 GONE → ``SyncExpired``),
insert (with ``conferenceData.createRequest`` for a Meet link), patch and delete events.
A failure is a ``GoogleError``: ``transient`` for 429/5xx and network trouble (retried with
backoff by the jobs), ``revoked`` for ``invalid_grant`` (the member must reconnect)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from lovedcrm.config import Settings
from lovedcrm.core import outbound

SCOPES = "https://www.googleapis.com/auth/calendar.events https://www.googleapis.com/auth/calendar.readonly"
# Marks an event the CRM pushed, so it is recognised when it comes back in a pull.
CRM_PROPERTY = "lovedcrmEventId"
TIMEOUT = 15.0


class GoogleError(Exception):
    def __init__(
        self, message: str, *, status: int | None = None, transient: bool, revoked: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.revoked = revoked
        self.retry_after: float | None = None


class SyncExpired(GoogleError):
    """410 GONE: the sync token is no longer valid; a full sync is needed."""


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    expires_in: timedelta


@dataclass
class EventsPage:
    items: list[dict[str, Any]] = field(default_factory=list)
    next_page_token: str | None = None
    next_sync_token: str | None = None


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_url(settings: Settings, *, state: str, challenge: str, redirect_uri: str) -> str:
    query = {
        "client_id": settings.google_client_id or "",
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": SCOPES,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
    }
    return f"{settings.google_auth_url}?{urlencode(query)}"


def _error_of(response: httpx.Response) -> GoogleError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    reason = ""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            reason = str(err.get("message") or err.get("status") or "")
        elif isinstance(err, str):
            reason = f"{err}: {body.get('error_description') or ''}".strip(": ")
    message = f"Google answered HTTP {status}" + (f" ({reason})" if reason else "")
    if status == 410:
        return SyncExpired(message, status=status, transient=False)
    revoked = status in (400, 401) and "invalid_grant" in reason
    transient = status == 429 or status >= 500
    error = GoogleError(message, status=status, transient=transient, revoked=revoked)
    retry = response.headers.get("retry-after")
    if retry and retry.isdigit():
        error.retry_after = float(retry)
    return error


class GoogleClient:
    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = outbound.client(outbound.policy(self.settings), timeout=TIMEOUT)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http().request(method, url, **kwargs)
        except outbound.OutboundRefused as exc:
            raise GoogleError(str(exc), transient=False) from exc
        except httpx.HTTPError as exc:
            raise GoogleError(f"Google could not be reached: {exc}", transient=True) from exc
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    async def _token(self, form: dict[str, str]) -> Tokens:
        s = self.settings
        secret = s.google_client_secret.get_secret_value() if s.google_client_secret else ""
        form = {"client_id": s.google_client_id or "", "client_secret": secret, **form}
        data = (await self._call("POST", s.google_token_url, data=form)).json()
        return Tokens(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_in=timedelta(seconds=int(data.get("expires_in") or 3600)),
        )

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> Tokens:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            }
        )

    async def refresh(self, refresh_token: str) -> Tokens:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _events_url(self, calendar_id: str, event_id: str | None = None) -> str:
        base = f"{self.settings.google_calendar_api_url}/calendars/{quote(calendar_id, safe='')}"
        return f"{base}/events" + (f"/{quote(event_id, safe='')}" if event_id else "")

    async def list_calendars(self, token: str) -> list[dict[str, Any]]:
        url = f"{self.settings.google_calendar_api_url}/users/me/calendarList"
        data = (await self._call("GET", url, headers=_auth(token))).json()
        return [c for c in data.get("items", []) if isinstance(c, dict)]

    async def list_events(
        self,
        token: str,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
    ) -> EventsPage:
        params: dict[str, str] = {"maxResults": "250", "showDeleted": "true"}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        url = self._events_url(calendar_id)
        data = (await self._call("GET", url, params=params, headers=_auth(token))).json()
        return EventsPage(
            items=[i for i in data.get("items", []) if isinstance(i, dict)],
            next_page_token=data.get("nextPageToken"),
            next_sync_token=data.get("nextSyncToken"),
        )

    async def insert_event(
        self, token: str, calendar_id: str, body: dict[str, Any], *, conference: bool
    ) -> dict[str, Any]:
        params = {"conferenceDataVersion": "1", "sendUpdates": "none"} if conference else {}
        url = self._events_url(calendar_id)
        answer = await self._call("POST", url, params=params, json=body, headers=_auth(token))
        result: dict[str, Any] = answer.json()
        return result

    async def patch_event(
        self, token: str, calendar_id: str, event_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        url = self._events_url(calendar_id, event_id)
        answer = await self._call("PATCH", url, json=body, headers=_auth(token))
        result: dict[str, Any] = answer.json()
        return result

    async def delete_event(self, token: str, calendar_id: str, event_id: str) -> None:
        try:
            await self._call(
                "DELETE", self._events_url(calendar_id, event_id), headers=_auth(token)
            )
        except GoogleError as exc:
            if exc.status not in (404, 410):  # already gone: nothing to do
                raise


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
