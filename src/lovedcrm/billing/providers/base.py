"""The billing provider interface: what the product needs from Stripe (or the demo's
sandbox), in the product's own types. Adapters know the wire format and nothing about the
database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class ProviderError(Exception):
    """The provider refused or failed a request. ``transient``: retrying later may succeed."""

    def __init__(
        self, code: str, message: str, *, transient: bool = False, http_status: int | None = None
    ) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status


@dataclass(frozen=True)
class CheckoutRequest:
    organization_id: str
    plan: str
    plan_name: str
    cycle: str  # monthly | yearly
    currency: str  # BRL | USD
    amount_cents: int
    success_url: str
    cancel_url: str
    customer_id: str | None = None
    customer_email: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class Invoice:
    id: str
    number: str | None
    status: str
    amount_cents: int
    currency: str
    created: datetime
    url: str | None


class BillingProvider(Protocol):
    name: str

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutSession: ...

    async def create_portal(self, customer_id: str, return_url: str) -> str: ...

    async def list_invoices(self, customer_id: str, limit: int = 12) -> list[Invoice]: ...

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]: ...

    async def report_usage(
        self, customer_id: str, event_name: str, value: int, timestamp: datetime, identifier: str
    ) -> None: ...
