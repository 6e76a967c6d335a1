"""The demo organization, loaded once, and the create-admin command's account creation."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth import authentication
from lovedcrm.auth import service as auth_service
from lovedcrm.auth import team as auth_team
from lovedcrm.calls import configs as calls_configs
from lovedcrm.config import Settings
from lovedcrm.core import clock
from lovedcrm.core.principal import Principal
from lovedcrm.db.engine import create_database
from lovedcrm.db.tenant import set_tenant, tenant_transaction
from lovedcrm.leads import activities
from lovedcrm.leads import service as leads_service
from lovedcrm.leads import stages as leads_stages
from lovedcrm.leads.models import Lead
from lovedcrm.messaging import sandbox, switching, whatsapp_configs

DEMO_EMAIL = "demo@example.com"
DEMO_TIMEZONE = "America/Sao_Paulo"

# The team: the demo admin (index 0) and two salespeople invited by it.
_SELLERS = [("bruna.santos", "Bruna Santos"), ("diego.oliveira", "Diego Oliveira")]


@dataclass(frozen=True)
class DemoLead:
    name: str
    company: str | None
    phone: str | None
    email: str | None
    source: str
    value: str
    owner: int  # 0 the admin, 1 Bruna, 2 Diego
    stage: int  # 0..4, the default stages in order
    days_ago: int  # when the lead came in
    status: str = "active"
    lost_reason: str | None = None


# A working week of a small B2B seller: leads over every stage, a few won and lost.
LEADS = [
    DemoLead(
        "Mariana Costa",
        "Padaria Pão Dourado",
        "+5511987654321",
        "mariana@paodourado.com.br",
        "whatsapp",
        "4500.00",
        1,
        0,
        1,
    ),
    DemoLead(
        "João Pereira",
        "Oficina Pereira & Filhos",
        "+5521998877665",
        None,
        "referral",
        "12000.00",
        2,
        1,
        6,
    ),
    DemoLead(
        "Ana Beatriz Lima",
        "Clínica Sorriso",
        "+5531991234567",
        "ana@clinicasorriso.com.br",
        "ads",
        "8900.00",
        1,
        2,
        9,
    ),
    DemoLead(
        "Carlos Eduardo Souza",
        "Souza Imóveis",
        "+5541999990000",
        "carlos@souzaimoveis.com",
        "form",
        "25000.00",
        0,
        3,
        14,
    ),
    DemoLead(
        "Fernanda Rocha",
        "Studio Fit",
        "+5551988776655",
        "fernanda.rocha@gmail.com",
        "whatsapp",
        "1800.50",
        2,
        0,
        0,
    ),
    DemoLead(
        "Rafael Almeida",
        "Almeida Contabilidade",
        "+5561981112233",
        "rafael@almeidacont.com.br",
        "email",
        "15000.00",
        0,
        2,
        11,
    ),
    DemoLead(
        "Patrícia Gomes", "Doces da Pati", "+5511976543210", None, "whatsapp", "950.00", 1, 0, 2
    ),
    DemoLead(
        "Lucas Martins",
        "Martins Transportes",
        "+5519998765432",
        "lucas@martinstransportes.com.br",
        "referral",
        "32000.00",
        2,
        3,
        18,
    ),
    DemoLead(
        "Juliana Ribeiro",
        "Ribeiro Advogados",
        "+5521987651234",
        "juliana@ribeiroadv.com.br",
        "form",
        "7200.00",
        0,
        1,
        4,
    ),
    DemoLead(
        "Thiago Carvalho", "Auto Peças Carvalho", "+5531988881111", None, "ads", "5400.00", 2, 1, 3
    ),
    DemoLead(
        "Camila Fernandes",
        "Escola Aprender",
        "+5548991239876",
        "camila@escolaaprender.com.br",
        "email",
        "18500.00",
        1,
        2,
        16,
    ),
    DemoLead(
        "Bruno Araújo",
        "Araújo Engenharia",
        "+5562999887766",
        "bruno@araujoeng.com.br",
        "referral",
        "41000.00",
        0,
        3,
        21,
    ),
    DemoLead(
        "Larissa Barbosa",
        "Floricultura Jardim",
        "+5511945678901",
        None,
        "whatsapp",
        "1200.00",
        2,
        0,
        0,
    ),
    DemoLead(
        "Gustavo Nunes",
        "Nunes Tech",
        "+5541987650000",
        "gustavo@nunestech.io",
        "form",
        "9600.00",
        1,
        1,
        7,
    ),
    DemoLead(
        "Aline Moreira",
        "Moreira Estética",
        "+5585988776655",
        "aline@moreiraestetica.com.br",
        "ads",
        "3900.00",
        0,
        0,
        1,
    ),
    DemoLead(
        "Ricardo Teixeira",
        "Teixeira Materiais",
        "+5571999123456",
        "ricardo@teixeiramat.com.br",
        "referral",
        "27500.00",
        2,
        4,
        25,
        "converted",
    ),
    DemoLead(
        "Vanessa Dias",
        "Café Aroma",
        "+5511934567890",
        "vanessa@cafearoma.com.br",
        "whatsapp",
        "6300.00",
        1,
        4,
        19,
        "converted",
    ),
    DemoLead(
        "Eduardo Cardoso",
        "Cardoso Logística",
        "+5521976549876",
        "eduardo@cardosolog.com.br",
        "email",
        "14800.00",
        0,
        4,
        28,
        "converted",
    ),
    DemoLead(
        "Sabrina Castro",
        "Pet Shop Amigo Fiel",
        "+5531977776666",
        None,
        "ads",
        "2100.00",
        2,
        1,
        12,
        "lost",
        "Preço acima do orçamento",
    ),
    DemoLead(
        "Marcelo Lopes",
        "Lopes Construtora",
        "+5561992345678",
        "marcelo@lopesconstrutora.com.br",
        "form",
        "38000.00",
        1,
        3,
        23,
        "lost",
        "Escolheu um concorrente",
    ),
    DemoLead(
        "Renata Freitas",
        None,
        "+5511923456789",
        "renata.freitas@hotmail.com",
        "whatsapp",
        "800.00",
        0,
        0,
        5,
        "lost",
        "Sem resposta",
    ),
]

# (lead index, note)
_NOTES = [
    (1, "Quer orçamento para 3 elevadores automotivos. Decide com o sócio na sexta."),
    (2, "Pediu proposta com parcelamento em 6x. Enviar até quinta."),
    (3, "Reunião presencial feita. Negociando desconto de 5% para fechar este mês."),
    (7, "Frota de 40 caminhões; interesse no plano anual. Concorrente atual: planilha."),
    (11, "Diretor financeiro aprovou; falta o jurídico revisar o contrato."),
    (15, "Contrato assinado. Onboarding marcado para segunda."),
    (19, "Fechou com o concorrente pelo prazo de entrega."),
]

# (lead index, title, days from today (negative: overdue), hour in the demo's time zone)
_TASKS = [
    (1, "Ligar para confirmar a visita", 0, 15),
    (2, "Enviar proposta revisada", -1, 10),
    (3, "Enviar minuta do contrato", 0, 11),
    (8, "Retornar o e-mail sobre prazos", -2, 9),
    (10, "Apresentar a proposta para a diretoria", 2, 14),
    (11, "Cobrar o retorno do jurídico", 1, 10),
    (13, "Agendar demonstração", 0, 17),
]

# Customers who wrote on WhatsApp (processed by the worker like real webhooks); the second is
# not a lead yet and becomes one.
INBOUND = [
    ("+5511987654321", "Mariana Costa", "Oi! Vocês entregam no sábado? Preciso de 200 pães."),
    ("+5511912345678", "Paulo Mendes", "Boa tarde, vi o anúncio. Qual o valor do plano anual?"),
    ("+5551988776655", "Fernanda Rocha", "Consegue me mandar a proposta hoje? É urgente."),
    ("+5511945678901", "Larissa Barbosa", "Quero fechar o pacote de flores para o evento."),
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
            await build_demo(session, settings, password)
        if announce:
            click.echo(
                "\n  Loved CRM demo is ready.\n"
                f"  Log in at {settings.base_url}/login\n"
                f"    email:    {DEMO_EMAIL}\n"
                f"    password: {password}\n"
                "  (shown only this once; reset it with `lovedcrm create-admin` or the reset "
                "page)\n"
            )
    finally:
        await db.dispose()


async def build_demo(
    session: AsyncSession, settings: Settings, password: str, *, email: str = DEMO_EMAIL
) -> uuid.UUID:
    """The demo organization in ``session``: a team of three, leads spread over the stages
    with values, owners, notes and tasks (due today and overdue), a few won and lost, and
    WhatsApp conversations, the sandbox telephony. Returns the organization's id."""
    user, org = await auth_service.signup(
        session,
        settings,
        email=email,
        password=password,
        full_name="Demo Loved",
        organization_name="Loved Demo",
    )
    user.email_verified = True
    user.phone = "+55 11 98888-0001"  # click-to-call rings the salesperson's own phone first
    admin = await authentication.principal_for_member(session, org.id, user.id)
    assert admin is not None  # the admin of the organization just created
    team = [admin]
    domain = email.rpartition("@")[2]
    for local, name in _SELLERS:
        _, token = await auth_team.create_invitation(
            session, settings, admin, email=f"{local}@{domain}", role="sales"
        )
        seller, _ = await auth_team.accept_invitation(
            session,
            settings,
            token=token,
            user=None,
            full_name=name,
            password="demo-" + secrets.token_urlsafe(12),
        )
        principal = await authentication.principal_for_member(session, org.id, seller.id)
        assert principal is not None
        team.append(principal)
    await set_tenant(session, org.id, user.id)
    stages = await leads_stages.list_stages(session, admin)
    now = clock.now()
    created = []
    for item in LEADS:
        owner = team[item.owner]
        lead = await leads_service.create_lead(
            session,
            owner,
            {
                "full_name": item.name,
                "company": item.company,
                "phone": item.phone,
                "email": item.email,
                "source": item.source,
                "estimated_value": Decimal(item.value),
                "assigned_to": owner.user_id,
                "probability_percentage": 10 + 20 * item.stage if item.stage < 4 else 100,
                "allow_duplicate": True,
            },
        )
        for stage in stages[1 : item.stage + 1]:  # the way it came, on the timeline
            await leads_service.update_lead(session, owner, lead.id, {"stage_id": stage.id})
        if item.status != "active":
            changes: dict[str, Any] = {"status": item.status}
            if item.lost_reason:
                changes["lost_reason"] = item.lost_reason
            await leads_service.update_lead(session, owner, lead.id, changes)
        created.append((lead, owner))
        await session.execute(
            update(Lead)
            .where(Lead.id == lead.id)
            .values(created_at=now - timedelta(days=item.days_ago, hours=item.owner + 1))
        )
    for index, text in _NOTES:
        lead, owner = created[index]
        await activities.create_activity(
            session, owner, lead.id, activity_type="note", description=text
        )
    zone = ZoneInfo(DEMO_TIMEZONE)
    today = now.astimezone(zone).date()
    for index, title, days, hour in _TASKS:
        lead, owner = created[index]
        due = datetime.combine(today + timedelta(days=days), time(hour), tzinfo=zone)
        await activities.create_activity(
            session,
            owner,
            lead.id,
            activity_type="task",
            title=title,
            metadata={"due_at": due.isoformat(), "done": False},
        )
    await _demo_whatsapp(session, settings, admin)
    # The sandbox telephony: "Ligar" on a lead rings, answers and completes a simulated call.
    await calls_configs.create_config(
        session,
        admin,
        settings,
        {
            "provider_type": "sandbox",
            "label": "Sandbox (demo)",
            "business_numbers": ["+55 11 3000-1000"],
            "cost_per_minute": Decimal("0.10"),
            "currency": "BRL",
        },
    )
    return org.id


async def _demo_whatsapp(session: AsyncSession, settings: Settings, principal: Principal) -> None:
    """The sandbox WhatsApp provider, active, and customers' messages waiting in the inbox
    (processed by the worker like real webhooks)."""
    config = await whatsapp_configs.create_config(
        session, principal, settings, {"provider_type": "sandbox", "label": "Sandbox (demo)"}
    )
    await switching.activate(session, principal, settings, config.id)
    for phone, name, text in INBOUND:
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
