"""The demo organization, loaded once, and the create-admin command's account creation."""

from __future__ import annotations

import random
import secrets
from decimal import Decimal

import click
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import authentication
from lovedcrm.auth import service as auth_service
from lovedcrm.config import Settings
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import create_database
from lovedcrm.db.tenant import tenant_transaction
from lovedcrm.leads import service as leads_service
from lovedcrm.messaging import sandbox, switching, whatsapp_configs

DEMO_EMAIL = "demo@example.com"

_LEADS = [
    ("Mariana Costa", "Padaria Pão Dourado", "+5511987654321", "whatsapp", "4500.00"),
    ("João Pereira", "Oficina Pereira & Filhos", "+5521998877665", "referral", "12000.00"),
    ("Ana Beatriz Lima", "Clínica Sorriso", "+5531991234567", "ads", "8900.00"),
    ("Carlos Eduardo Souza", "Souza Imóveis", "+5541999990000", "form", "25000.00"),
    ("Fernanda Rocha", "Studio Fit", "+5551988776655", "whatsapp", "3200.00"),
    ("Rafael Almeida", "Almeida Contabilidade", "+5561981112233", "email", "15000.00"),
]


async def load_demo(settings: Settings, *, announce: bool = True) -> None:
    db = create_database(settings)
    try:
        async with tenant_transaction(db.sessionmaker, None) as session:
            if await auth_service.get_user_by_email(session, DEMO_EMAIL) is not None:
                if announce:
                    click.echo(f"Demo organization already loaded. Log in as {DEMO_EMAIL}.")
                return
            password = "demo-" + secrets.token_urlsafe(9)
            user, org = await auth_service.signup(
                session,
                settings,
                email=DEMO_EMAIL,
                password=password,
                full_name="Demo Loved",
                organization_name="Loved Demo",
            )
            user.email_verified = True
            principal = await authentication.principal_for_member(session, org.id, user.id)
            assert principal is not None  # the admin of the organization just created
            rng = random.Random(7)  # noqa: S311 - demo data, not security
            for name, company, phone, source, value in _LEADS:
                await leads_service.create_lead(
                    session,
                    principal,
                    {
                        "full_name": name,
                        "company": company,
                        "phone": phone,
                        "source": source,
                        "estimated_value": Decimal(value),
                        "assigned_to": user.id,
                        "probability_percentage": rng.choice([10, 25, 40, 60]),
                    },
                )
            await _demo_whatsapp(session, settings, principal)
        click.echo(
            "\n  Loved CRM demo is ready.\n"
            f"  Log in at {settings.base_url}/login\n"
            f"    email:    {DEMO_EMAIL}\n"
            f"    password: {password}\n"
            "  (shown only this once; reset it with `lovedcrm create-admin` or the reset page)\n"
        )
    finally:
        await db.dispose()


async def _demo_whatsapp(session: AsyncSession, settings: Settings, principal: Principal) -> None:
    """The sandbox WhatsApp provider, active, and two customers' messages waiting in the
    inbox (processed by the worker like real webhooks)."""
    config = await whatsapp_configs.create_config(
        session, principal, settings, {"provider_type": "sandbox", "label": "Sandbox (demo)"}
    )
    await switching.activate(session, principal, settings, config.id)
    for phone, name, text in (
        ("+5511987654321", "Mariana Costa", "Oi! Vocês entregam no sábado? Preciso de 200 pães."),
        ("+5511912345678", "Paulo Mendes", "Boa tarde, vi o anúncio. Qual o valor do plano anual?"),
    ):
        await sandbox.inject(
            session, principal.org(), from_number=phone, content=text, contact_name=name
        )


async def create_admin_account(
    settings: Settings, email: str, full_name: str, organization_name: str, password: str
) -> str:
    db = create_database(settings)
    try:
        async with tenant_transaction(db.sessionmaker, None) as session:
            user, org = await auth_service.signup(
                session,
                settings,
                email=email,
                password=password,
                full_name=full_name,
                organization_name=organization_name,
            )
            user.email_verified = True
            return org.slug
    finally:
        await db.dispose()
