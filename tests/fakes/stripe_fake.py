"""A fake Stripe API on loopback, speaking Stripe's form-encoded REST (secret key as the
Basic user name): ``POST /v1/checkout/sessions``, ``POST /v1/billing_portal/sessions``,
``GET /v1/invoices``, ``GET /v1/subscriptions/{id}``, ``POST /v1/billing/meter_events``.
Plus the events Stripe would send, signed as Stripe signs them (with the ``stripe``
package's own ``WebhookSignature.generate_signature_header``, apart from the product's code).

Knobs: ``fail`` (a status and Stripe error body for every request), ``invoices`` (what
``GET /v1/invoices`` lists), plus the shared ``down``/``hold``/``delay``."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import stripe

from tests.fakes import FakeServer, RecordedRequest, Reply

SECRET_KEY = "sk_test_" + "4" * 24
WEBHOOK_SECRET = "whsec_" + "7" * 32


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
           extra_v1: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """``client.post`` arguments for an event Stripe posts (``extra_v1``: more ``v1``
    signatures in front, as during a secret rotation)."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )
    if extra_v1:
        t, v1 = header.split(",", 1)
        header = ",".join([t, *(f"v1={s}" for s in extra_v1), v1])
    return {
        "content": payload.encode(),
        "headers": {"Content-Type": "application/json", "Stripe-Signature": header},
    }


def subscription(
    org_id: str,
    status: str,
    *,
    sub_id: str | None = None,
    customer: str | None = None,
    plan: str = "pro",
    interval: str = "month",
    amount: int = 24_900,
    trial_end: int | None = None,
) -> dict[str, Any]:
    now = int(time.time())
    sub_id = sub_id or f"sub_{org_id[:8]}"
    customer = customer or f"cus_{org_id[:8]}"
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": {"organization_id": org_id, "plan": plan},
        "trial_end": trial_end,
        "canceled_at": now if status == "canceled" else None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "current_period_start": now,
                    "current_period_end": now + 30 * 86400,
                    "price": {
                        "id": "price_1",
                        "unit_amount": amount,
                        "currency": "brl",
                        "recurring": {"interval": interval},
                        "lookup_key": None,
                        "metadata": {},
                    },
                }
            ],
        },
    }


def event(kind: str, obj: dict[str, Any], *, created: int | None = None,
          event_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": kind,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
    }


def invoice(customer: str, sub_id: str, *, paid: bool = True) -> dict[str, Any]:
    return {
        "id": f"in_{uuid.uuid4().hex[:10]}",
        "object": "invoice",
        "customer": customer,
        "subscription": sub_id,
        "status": "paid" if paid else "open",
        "total": 24_900,
        "currency": "brl",
        "number": "ABC-0001",
        "created": int(time.time()),
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test",
    }


class FakeStripe(FakeServer):
    def __init__(self, secret_key: str = SECRET_KEY) -> None:
        self.secret_key = secret_key
        self.fail: tuple[int, dict[str, Any]] | None = None
        self.invoices: list[dict[str, Any]] = []
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.meter_events: list[dict[str, str]] = []
        self.seen_idempotency: set[str] = set()
        super().__init__()

    def form(self, request: RecordedRequest) -> dict[str, str]:
        return dict(parse_qsl(request.body.decode(), keep_blank_values=True))

    def posts(self, path: str) -> list[dict[str, str]]:
        return [self.form(r) for r in self.requests if r.method == "POST" and r.path == path]

    def _authorized(self, request: RecordedRequest) -> bool:
        expected = base64.b64encode(f"{self.secret_key}:".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def handle(self, request: RecordedRequest) -> Reply:
        if not self._authorized(request):
            return Reply.json(
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
                status=401,
            )
        if self.fail is not None:
            status, body = self.fail
            return Reply.json(body, status=status)
        if request.method == "POST" and request.path == "/v1/checkout/sessions":
            form = self.form(request)
            if form.get("mode") != "subscription":
                return Reply.json({"error": {"message": "mode"}}, status=400)
            sid = f"cs_test_{uuid.uuid4().hex[:12]}"
            return Reply.json(
                {
                    "id": sid,
                    "object": "checkout.session",
                    "url": f"https://checkout.stripe.com/c/pay/{sid}",
                    "status": "open",
                    "mode": "subscription",
                }
            )
        if request.method == "POST" and request.path == "/v1/billing_portal/sessions":
            form = self.form(request)
            return Reply.json(
                {
                    "id": "bps_1",
                    "object": "billing_portal.session",
                    "customer": form.get("customer"),
                    "url": "https://billing.stripe.com/p/session/test_1",
                }
            )
        if request.method == "GET" and request.path == "/v1/invoices":
            customer = (request.query.get("customer") or [""])[0]
            data = [i for i in self.invoices if i["customer"] == customer]
            return Reply.json({"object": "list", "data": data, "has_more": False})
        if request.method == "GET" and request.path.startswith("/v1/subscriptions/"):
            found = self.subscriptions.get(request.path.rsplit("/", 1)[1])
            if found is None:
                return Reply.json({"error": {"message": "No such subscription"}}, status=404)
            return Reply.json(found)
        if request.method == "POST" and request.path == "/v1/billing/meter_events":
            key = request.headers.get("idempotency-key", "")
            if key not in self.seen_idempotency:
                self.seen_idempotency.add(key)
                self.meter_events.append(self.form(request))
            return Reply.json({"object": "billing.meter_event", "identifier": key})
        return Reply.json({"error": {"message": "Unrecognized request URL"}}, status=404)
