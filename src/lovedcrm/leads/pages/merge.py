"""Merging two leads (the rule lives in ``leads.dedup``) and deleting one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.leads import dedup
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.pages._common import ACTIVE, LeadInPage, find_lead, lead_not_found, on_lead
from lovedcrm.web.kit import Member, page_router, parse_uuid, redirect, render

router = page_router()

MERGE_RESULTS = 10


@router.get("/leads/{lead_id}/merge", response_class=HTMLResponse)
async def lead_merge_page(
    request: Request, frame: Member, session: SessionDep, lead: LeadInPage
) -> Response:
    q = (request.query_params.get("q") or "").strip()[:200]
    other = None
    other_id = parse_uuid(request.query_params.get("other"))
    results: list[Any] = []
    if other_id is not None and other_id != lead.id:
        other = await find_lead(session, frame, other_id)
    elif q:
        page = await leads_service.list_leads(
            session, frame.principal, limit=MERGE_RESULTS + 1, q=q, sort="full_name"
        )
        results = [row for row in page.items if row.id != lead.id][:MERGE_RESULTS]
    return render(
        request,
        "leads/merge.html",
        **frame.context(ACTIVE),
        lead=lead,
        other=other,
        q=q,
        results=results,
        can_merge=frame.principal.can("leads:write_all") and frame.principal.can("leads:delete"),
    )


@router.post("/leads/{lead_id}/merge", response_class=HTMLResponse)
async def lead_merge(
    frame: Member,
    session: SessionDep,
    lead: LeadInPage,
    other_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    other = parse_uuid(other_id)
    if other is None:
        raise lead_not_found()
    kept = await on_lead(dedup.merge(session, frame.principal, lead.id, other))
    return redirect(f"/leads/{kept.id}", frame.i18n.gettext("Leads merged."))


@router.get("/leads/{lead_id}/delete", response_class=HTMLResponse)
async def lead_delete_page(request: Request, frame: Member, lead: LeadInPage) -> Response:
    return render(request, "leads/delete.html", **frame.context(ACTIVE), lead=lead)


@router.post("/leads/{lead_id}/delete", response_class=HTMLResponse)
async def lead_delete(frame: Member, session: SessionDep, lead: LeadInPage) -> Response:
    name = lead.full_name
    await on_lead(leads_service.delete_lead(session, frame.principal, lead.id))
    return redirect("/leads", frame.i18n.gettext("Lead %(name)s deleted.") % {"name": name})
