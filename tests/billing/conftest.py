"""Billing tests: an organization with billing enforced (the installation's default is off),
and the application pointed at the fake Stripe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from lovedcrm.app import create_app
from lovedcrm.billing import service
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.organizations import plans
from tests.factories import signup
from tests.fakes.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, FakeStripe


async def enforce(
    database: Database, org_id: uuid.UUID, plan: str | None = None, **flags: str
) -> None:
    """Billing on for this organization (an operator flag), on ``plan``, with more flags
    (``limit__leads="2"`` → ``limit.leads``)."""
    async with tenant_transaction(database.sessionmaker, org_id) as session:
        await service.set_flag(session, org_id, "billing", "on")
        if plan is not None:
            await service.set_plan(session, org_id, plan, force=True)
        for name, value in flags.items():
            await service.set_flag(session, org_id, name.replace("__", "."), value)
    plans.invalidate(org_id)


async def web_org(client: httpx.AsyncClient) -> uuid.UUID:
    """Sign up through the form (the client keeps the web session); the organization's id."""
    from tests.factories import PASSWORD, web_signup

    email, _, _ = await web_signup(client)
    me = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {me['access_token']}"}
    current = await client.get("/api/v1/organizations/current", headers=headers)
    return uuid.UUID(current.json()["id"])


@pytest.fixture
async def org(client: httpx.AsyncClient) -> dict[str, Any]:
    """A new organization (on its trial), its admin's headers and its id as a UUID."""
    data = await signup(client)
    data["org_id"] = uuid.UUID(data["organization_id"])
    return data


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def stripe_settings(settings: Settings, fake_stripe: FakeStripe) -> Settings:
    return settings.model_copy(
        update={
            "billing_provider": "stripe",
            "stripe_secret_key": SecretStr(SECRET_KEY),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_api_url": fake_stripe.url,
        }
    )


@pytest.fixture
async def stripe_client(
    stripe_settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stripe_settings, database=database)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
