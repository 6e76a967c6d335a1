"""A fake Meta Graph API for Lead Ads (shared/reference/providers.md §7) and builders of
signed ``leadgen`` webhooks and Google Ads lead form posts."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import deque
from typing import Any

from tests.fakes import FakeServer, RecordedRequest, Reply

PAGE_ID = "516540199100"
PAGE_TOKEN = "EAAB-page-token"
APP_SECRET = "app-secret-0123456789"
VERIFY_TOKEN = "verify-me-please"


def field_data(**fields: str) -> list[dict[str, Any]]:
    return [{"name": k, "values": [v]} for k, v in fields.items()]


class FakeLeadAdsGraph(FakeServer):
    """Knobs: ``leads`` {leadgen_id: lead JSON}, ``forms`` {form_id: [leadgen ids]} (the
    page's forms, served 2 per page by ``/{form}/leads``), ``insights`` (rows), and
    ``fail_next(status, code, n)``; ``usage_headers`` sent with every answer (Graph's
    ``X-App-Usage``…). Lists (leads, forms, insights) come ``page_size`` at a time."""

    def __init__(self, *, access_token: str = PAGE_TOKEN, page_size: int = 2) -> None:
        self.access_token = access_token
        self.leads: dict[str, dict[str, Any]] = {}
        self.forms: dict[str, list[str]] = {}
        self.insights: list[dict[str, Any]] = []
        self.page_size = page_size
        self.failures: deque[tuple[int, int]] = deque()
        self.usage_headers: dict[str, str] = {}
        super().__init__()

    def add_lead(
        self,
        leadgen_id: str,
        *,
        form_id: str = "form-1",
        campaign_id: str = "cmp-1",
        campaign_name: str = "Campanha Verão",
        adset_id: str = "adset-1",
        ad_id: str = "ad-1",
        **fields: str,
    ) -> None:
        self.leads[leadgen_id] = {
            "id": leadgen_id,
            "created_time": "2026-11-12T15:27:06+0000",
            "form_id": form_id,
            "campaign_id": campaign_id,
            "campaign_name": campaign_name,
            "adset_id": adset_id,
            "ad_id": ad_id,
            "is_organic": False,
            "field_data": field_data(**fields),
        }
        self.forms.setdefault(form_id, []).append(leadgen_id)

    def fail_next(self, status: int = 500, code: int = 2, times: int = 1) -> None:
        for _ in range(times):
            self.failures.append((status, code))

    def handle(self, request: RecordedRequest) -> Reply:
        reply = self._answer(request)
        reply.headers.update(self.usage_headers)
        return reply

    def _paged(self, request: RecordedRequest, items: list[Any], path: str) -> Reply:
        start = int((request.query.get("after") or ["0"])[0])
        body: dict[str, Any] = {"data": items[start : start + self.page_size]}
        if start + self.page_size < len(items):
            nxt = str(start + self.page_size)
            body["paging"] = {"cursors": {"after": nxt}, "next": f"{self.url}/{path}?after={nxt}"}
        return Reply.json(body)

    def _answer(self, request: RecordedRequest) -> Reply:
        if self.failures:
            status, code = self.failures.popleft()
            return Reply.json(
                {"error": {"message": "fake failure", "type": "OAuthException", "code": code}},
                status,
            )
        token = (request.query.get("access_token") or [""])[0]
        if token != self.access_token:
            return Reply.json(
                {
                    "error": {
                        "message": "Invalid OAuth access token.",
                        "type": "OAuthException",
                        "code": 190,
                    }
                },
                400,
            )
        parts = [p for p in request.path.split("/") if p]
        if parts and parts[0].startswith("v") and parts[0][1:2].isdigit():
            parts = parts[1:]
        if len(parts) == 1 and parts[0] in self.leads:
            return Reply.json(self.leads[parts[0]])
        if len(parts) == 2 and parts[1] == "leadgen_forms":
            forms = [{"id": f, "name": f"Form {f}"} for f in self.forms]
            return self._paged(request, forms, "/".join(parts))
        if len(parts) == 2 and parts[1] == "leads" and parts[0] in self.forms:
            found = [self.leads[i] for i in self.forms[parts[0]]]
            return self._paged(request, found, "/".join(parts))
        if len(parts) == 2 and parts[1] == "insights":
            return self._paged(request, self.insights, "/".join(parts))
        return Reply.json(
            {
                "error": {
                    "message": "Unsupported get request.",
                    "type": "GraphMethodException",
                    "code": 100,
                }
            },
            400,
        )


def leadgen_webhook(
    leadgen_id: str, *, form_id: str = "form-1", ad_id: str = "ad-1", page_id: str = PAGE_ID
) -> bytes:
    body = {
        "object": "page",
        "entry": [
            {
                "id": page_id,
                "time": int(time.time()),
                "changes": [
                    {
                        "field": "leadgen",
                        "value": {
                            "ad_id": ad_id,
                            "adgroup_id": "adset-1",
                            "created_time": int(time.time()),
                            "leadgen_id": leadgen_id,
                            "page_id": page_id,
                            "form_id": form_id,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def hub_signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def google_lead_form(
    lead_id: str, key: str, *, is_test: bool = False, **columns: str
) -> dict[str, Any]:
    return {
        "lead_id": lead_id,
        "api_version": "1.0",
        "form_id": 123456789,
        "campaign_id": 987654321,
        "google_key": key,
        "is_test": is_test,
        "gcl_id": "gcl-1",
        "adgroup_id": 20001,
        "creative_id": 30001,
        "user_column_data": [{"column_id": k, "string_value": v} for k, v in columns.items()],
    }
