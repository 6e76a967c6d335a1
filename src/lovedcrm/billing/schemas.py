"""Billing's JSON shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lovedcrm.core.schemas import StrictIn

PlanKey = Literal["starter", "pro", "enterprise"]
Cycle = Literal["monthly", "yearly"]
Currency = Literal["BRL", "USD"]


class PriceOut(BaseModel):
    currency: str = Field(examples=["BRL"])
    cycle: str = Field(examples=["monthly"])
    amount_cents: int


class PlanOut(BaseModel):
    key: str = Field(examples=["pro"])
    name: str = Field(examples=["Pro"])
    prices: list[PriceOut]
    limits: dict[str, int | None] = Field(description="null: unlimited")
    features: list[str]


class BillingUsageOut(BaseModel):
    limit: str = Field(examples=["leads"])
    used: int
    allowed: int | None = Field(description="null: unlimited (or billing off)")
    percent: int
    warning: bool = Field(description="Past the soft limit (80 %).")


class BillingSubscriptionOut(BaseModel):
    plan: str = Field(examples=["pro"])
    enforced: bool = Field(description="false: billing is off here (every feature, no limit).")
    status: str | None = Field(examples=["trialing"])
    billing_cycle: str | None
    amount_cents: int | None
    currency: str | None
    trial_end: datetime | None
    trial_days_left: int | None
    current_period_end: datetime | None
    past_due_since: datetime | None
    read_only: bool
    features: list[str]
    usage: list[BillingUsageOut]


class CheckoutIn(StrictIn):
    plan: PlanKey
    cycle: Cycle = "monthly"
    currency: Currency | None = None


class RedirectOut(BaseModel):
    url: str = Field(description="Where to send the person (Stripe, or the sandbox checkout).")


class InvoiceOut(BaseModel):
    id: str
    number: str | None
    status: str
    amount_cents: int
    currency: str
    created: datetime
    url: str | None
