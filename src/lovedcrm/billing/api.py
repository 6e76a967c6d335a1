"""JSON routes of billing (thin: rules in ``billing.service``): the subscription and usage,
the plans, a checkout or portal session, invoices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from lovedcrm.billing import service
from lovedcrm.billing.schemas import (
    BillingSubscriptionOut,
    BillingUsageOut,
    CheckoutIn,
    InvoiceOut,
    PlanOut,
    PriceOut,
    RedirectOut,
)
from lovedcrm.core.deps import Require, SessionDep, SettingsDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.organizations import plans

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
Manager = Annotated[Principal, Depends(Require("billing:manage"))]


def plan_out(plan: plans.Plan) -> PlanOut:
    return PlanOut(
        key=plan.key,
        name=plan.name,
        prices=[
            PriceOut(currency=c, cycle=cy, amount_cents=plan.price(c, cy))
            for c in plans.CURRENCIES
            for cy in plans.CYCLES
        ],
        limits=dict(plan.limits),
        features=sorted(plan.features),
    )


@router.get("/plans", response_model=list[PlanOut], responses=problem_responses(401, 403))
async def list_plans(principal: Manager) -> list[PlanOut]:
    return [plan_out(plans.PLANS[key]) for key in plans.PLAN_ORDER]


@router.get(
    "/subscription", response_model=BillingSubscriptionOut, responses=problem_responses(401, 403)
)
async def get_subscription(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> BillingSubscriptionOut:
    view = await service.overview(session, principal, settings)
    sub = view.subscription
    ent = await plans.entitlements(session, principal.org(), settings)
    return BillingSubscriptionOut(
        plan=view.plan.key,
        enforced=view.enforced,
        status=sub.status if sub else None,
        billing_cycle=sub.billing_cycle if sub else None,
        amount_cents=sub.amount_cents if sub else None,
        currency=sub.currency if sub else None,
        trial_end=sub.trial_end if sub else None,
        trial_days_left=view.trial_days_left,
        current_period_end=sub.current_period_end if sub else None,
        past_due_since=sub.past_due_since if sub else None,
        read_only=view.read_only,
        features=sorted(ent.features) if view.enforced else sorted(plans.FEATURES),
        usage=[BillingUsageOut(**line.as_dict()) for line in view.usage],
    )


@router.get("/usage", response_model=list[BillingUsageOut], responses=problem_responses(401, 403))
async def get_usage(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> list[BillingUsageOut]:
    view = await service.overview(session, principal, settings)
    return [BillingUsageOut(**line.as_dict()) for line in view.usage]


@router.post(
    "/checkout",
    response_model=RedirectOut,
    status_code=201,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_checkout(
    body: CheckoutIn, principal: Manager, session: SessionDep, settings: SettingsDep
) -> RedirectOut:
    """A Checkout Session for the plan (Stripe), or the sandbox's checkout page. 409
    ``downgrade_below_usage`` when the organization uses more than the plan allows (the
    problem lists what to remove)."""
    result = await service.start_checkout(
        session, principal, settings, body.plan, body.cycle, body.currency
    )
    return RedirectOut(url=result.url)


@router.post(
    "/portal",
    response_model=RedirectOut,
    status_code=201,
    responses=problem_responses(401, 403, 409),
)
async def create_portal(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> RedirectOut:
    """A Customer Portal session (card, plan changes, cancellation)."""
    return RedirectOut(url=await service.portal_url(session, principal, settings))


@router.get("/invoices", response_model=list[InvoiceOut], responses=problem_responses(401, 403))
async def list_invoices(
    principal: Manager, session: SessionDep, settings: SettingsDep
) -> list[InvoiceOut]:
    found = await service.invoices(session, principal, settings)
    return [InvoiceOut(**vars(i)) for i in found]
