"""Stripe Billing over its REST API: form-encoded requests, the secret key as the Basic
user name (``../shared/reference/providers.md`` §5). Checkout Session for a new
subscription, Customer Portal session, invoices, a subscription, metered usage (meter
events). Every call goes through ``core.outbound`` (the client is given by the caller)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from lovedcrm.billing.providers.base import (
    CheckoutRequest,
    CheckoutSession,
    Invoice,
    ProviderError,
)
from lovedcrm.core.outbound import OutboundRefused

_ERROR_BODY_LIMIT = 64 * 1024


def form(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's nested form encoding: ``a[b][0][c]=v``; None is left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs += form(value, name)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs += form(item, f"{name}[{i}]")
                else:
                    pairs.append((f"{name}[{i}]", str(item)))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


class StripeProvider:
    name = "stripe"

    def __init__(self, client: httpx.AsyncClient, secret_key: str, api_url: str) -> None:
        self._client = client
        self._auth = (secret_key, "")
        self._base = api_url.rstrip("/")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Stripe-Version": "2024-06-20"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            response = await self._client.request(
                method,
                self._base + path,
                auth=self._auth,
                data=dict(form(data)) if data is not None else None,
                params=urlencode(form(params)) if params is not None else None,
                headers=headers,
            )
        except OutboundRefused as exc:
            raise ProviderError("address_refused", f"Stripe was not called: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(
                "network", "Stripe did not answer in time.", transient=True
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError("network", "Could not reach Stripe.", transient=True) from exc
        try:
            body = response.json() if response.content[:_ERROR_BODY_LIMIT] else {}
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise ProviderError(
                str((error or {}).get("code") or response.status_code)
                if isinstance(error, dict)
                else str(response.status_code),
                str(message or f"Stripe answered HTTP {response.status_code}."),
                transient=response.status_code >= 500 or response.status_code == 429,
                http_status=response.status_code,
            )
        if not isinstance(body, dict):
            raise ProviderError("bad_response", "Stripe's answer is not a JSON object.")
        return body

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        interval = "year" if request.cycle == "yearly" else "month"
        metadata = {"organization_id": request.organization_id, "plan": request.plan}
        data: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount_cents,
                        "recurring": {"interval": interval},
                        "product_data": {"name": f"Loved CRM {request.plan_name}"},
                    },
                }
            ],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.organization_id,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
        }
        if request.customer_id:
            data["customer"] = request.customer_id
        elif request.customer_email:
            data["customer_email"] = request.customer_email
        body = await self._request("POST", "/v1/checkout/sessions", data=data)
        if not isinstance(body.get("id"), str) or not isinstance(body.get("url"), str):
            raise ProviderError("bad_response", "Stripe's checkout session has no id or url.")
        return CheckoutSession(id=body["id"], url=body["url"])

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        body = await self._request(
            "POST",
            "/v1/billing_portal/sessions",
            data={"customer": customer_id, "return_url": return_url},
        )
        url = body.get("url")
        if not isinstance(url, str):
            raise ProviderError("bad_response", "Stripe's portal session has no url.")
        return url

    async def list_invoices(self, customer_id: str, limit: int = 12) -> list[Invoice]:
        body = await self._request(
            "GET", "/v1/invoices", params={"customer": customer_id, "limit": limit}
        )
        invoices = []
        for item in body.get("data") or []:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            invoices.append(
                Invoice(
                    id=item["id"],
                    number=item.get("number") if isinstance(item.get("number"), str) else None,
                    status=str(item.get("status") or "open"),
                    amount_cents=int(item.get("total") or item.get("amount_due") or 0),
                    currency=str(item.get("currency") or "usd").upper(),
                    created=datetime.fromtimestamp(int(item.get("created") or 0), UTC),
                    url=item.get("hosted_invoice_url")
                    if isinstance(item.get("hosted_invoice_url"), str)
                    else None,
                )
            )
        return invoices

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/subscriptions/{subscription_id}")

    async def report_usage(
        self, customer_id: str, event_name: str, value: int, timestamp: datetime, identifier: str
    ) -> None:
        await self._request(
            "POST",
            "/v1/billing/meter_events",
            data={
                "event_name": event_name,
                "identifier": identifier,
                "timestamp": int(timestamp.timestamp()),
                "payload": {"stripe_customer_id": customer_id, "value": value},
            },
            idempotency_key=identifier,
        )
