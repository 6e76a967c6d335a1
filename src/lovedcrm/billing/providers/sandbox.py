"""The demo's billing provider: no network. Checkout is a local page (``/billing/sandbox/
checkout``) that "pays" and activates the plan; the portal is the billing page itself;
invoices are none; usage reports go nowhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from lovedcrm.billing.providers.base import CheckoutRequest, CheckoutSession, Invoice

CHECKOUT_PATH = "/billing/sandbox/checkout"


class SandboxProvider:
    name = "sandbox"

    def __init__(self, base_url: str = "") -> None:
        self._base = base_url.rstrip("/")

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        query = urlencode({"plan": request.plan, "cycle": request.cycle})
        return CheckoutSession(id="cs_sandbox", url=f"{CHECKOUT_PATH}?{query}")

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        return "/settings/billing"

    async def list_invoices(self, customer_id: str, limit: int = 12) -> list[Invoice]:
        return []

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return {}

    async def report_usage(
        self, customer_id: str, event_name: str, value: int, timestamp: datetime, identifier: str
    ) -> None:
        return None
