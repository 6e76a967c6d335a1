"""The leads list: sort, filters, keyset pages, the export link and bulk actions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.leads import service as leads_service
from lovedcrm.leads.models import LEAD_STATUSES
from lovedcrm.leads.pages._common import ACTIVE, lookups_of
from lovedcrm.leads.schemas import LeadSort
from lovedcrm.web.kit import Member, attempt, flash, page_router, parse_uuid, render

router = page_router()

PAGE_SIZE = 50
# Sort keys of the list page → the service's sort names.
SORTS = {
    "name": "full_name",
    "company": "company",
    "stage": "stage",
    "value": "estimated_value",
    "score": "lead_score",
    "assignee": "assignee",
    "activity": "last_activity_at",
    "created": "created_at",
}
DEFAULT_SORT = "-created"


def _int(value: str | None, low: int, high: int) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return max(low, min(high, number))


@dataclass
class ListFilters:
    stage: str = ""
    assignee: str = ""
    source: str = ""
    status: str = ""
    score_min: str = ""
    score_max: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT

    def query(self, **changes: str | None) -> str:
        """The page's query string with ``changes`` applied (None drops a key)."""
        values: dict[str, str | None] = {
            "q": self.q,
            "stage": self.stage,
            "assignee": self.assignee,
            "source": self.source,
            "status": self.status,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "sort": self.sort if self.sort != DEFAULT_SORT else "",
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v})

    def sort_link(self, key: str) -> str:
        """Ascending on the first click (newest first for dates), then the other way."""
        first = f"-{key}" if key in ("created", "activity", "score", "value") else key
        current = self.sort
        target = ("-" + key if current == key else key) if current.lstrip("-") == key else first
        return "/leads?" + self.query(sort=target, cursor=None)

    def sort_state(self, key: str) -> str:
        if self.sort.lstrip("-") != key:
            return "none"
        return "descending" if self.sort.startswith("-") else "ascending"

    @property
    def active(self) -> bool:
        return any(
            (
                self.q,
                self.stage,
                self.assignee,
                self.source,
                self.status,
                self.score_min,
                self.score_max,
            )
        )

    def service_kwargs(self, principal_id: uuid.UUID) -> dict[str, Any]:
        assignee = principal_id if self.assignee == "me" else parse_uuid(self.assignee)
        name = self.sort.lstrip("-")
        service_sort = SORTS.get(name, "created_at")
        return {
            "stage_id": parse_uuid(self.stage),
            "assigned_to": assignee,
            "source": self.source.strip() or None,
            "status": self.status if self.status in LEAD_STATUSES else None,
            "score_min": _int(self.score_min, 0, 100),
            "score_max": _int(self.score_max, 0, 100),
            "q": self.q.strip()[:200] or None,
            "sort": ("-" if self.sort.startswith("-") else "") + service_sort,
        }

    def export_url(self, principal_id: uuid.UUID) -> str:
        kwargs = self.service_kwargs(principal_id)
        params = {
            "stage_id": kwargs["stage_id"],
            "assigned_to": kwargs["assigned_to"],
            "source": kwargs["source"],
            "status": kwargs["status"],
            "score_min": kwargs["score_min"],
            "score_max": kwargs["score_max"],
            "q": kwargs["q"],
        }
        if kwargs["sort"] in get_args(LeadSort):
            params["sort"] = kwargs["sort"]
        clean = {k: str(v) for k, v in params.items() if v is not None}
        return "/api/v1/leads/export.csv" + ("?" + urlencode(clean) if clean else "")


def _filters_from(request: Request) -> ListFilters:
    params = request.query_params
    sort = params.get("sort") or DEFAULT_SORT
    if sort.lstrip("-") not in SORTS:
        sort = DEFAULT_SORT
    return ListFilters(
        stage=params.get("stage", "")[:64],
        assignee=params.get("assignee", "")[:64],
        source=params.get("source", "")[:100],
        status=params.get("status", "")[:20],
        score_min=params.get("score_min", "")[:3],
        score_max=params.get("score_max", "")[:3],
        q=params.get("q", "")[:200],
        sort=sort,
    )


@router.get("/leads", response_class=HTMLResponse)
async def leads_list(request: Request, frame: Member, session: SessionDep) -> Response:
    principal = frame.principal
    filters = _filters_from(request)
    cursor = request.query_params.get("cursor") or None
    error = None
    lookups = await lookups_of(session, frame)
    wanted = filters.service_kwargs(principal.user_id)
    try:
        page = await attempt(
            session,
            leads_service.list_leads(session, principal, limit=PAGE_SIZE, cursor=cursor, **wanted),
        )
    except AppError as exc:
        if exc.status != 400:
            raise
        # A stale cursor: show the first page instead.
        error = frame.i18n.gettext("That page link expired. Here is the first page.")
        page = await leads_service.list_leads(session, principal, limit=PAGE_SIZE, **wanted)
        cursor = None
    return render(
        request,
        "leads/list.html",
        **frame.context(ACTIVE),
        leads=page.items,
        next_cursor=page.next_cursor,
        next_url="/leads?" + filters.query(cursor=page.next_cursor) if page.next_cursor else None,
        first_url="/leads?" + filters.query() if cursor else None,
        filters=filters,
        lookups=lookups,
        statuses=LEAD_STATUSES,
        sorts=SORTS,
        list_error=error,
        export_url=filters.export_url(principal.user_id) if principal.can("leads:export") else None,
        can_import=principal.can("leads:import"),
        can_write=principal.can("leads:write"),
        can_assign=principal.can("leads:write_all"),
        can_delete=principal.can("leads:delete"),
        back=filters.query(),
    )


@router.post("/leads/bulk")
async def leads_bulk(
    frame: Member,
    session: SessionDep,
    action: Annotated[str, Form(max_length=20)] = "",
    ids: Annotated[list[str] | None, Form()] = None,
    assignee_id: Annotated[str, Form(max_length=64)] = "",
    stage_id: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    t = frame.i18n.gettext
    response = RedirectResponse("/leads" + ("?" + back if back else ""), status_code=303)
    lead_ids = [i for i in (parse_uuid(x) for x in (ids or [])[:500]) if i is not None]
    if not lead_ids:
        flash(response, t("Select at least one lead first."), "error")
        return response
    changes: dict[str, Any] | None = None
    if action == "assign":
        member = parse_uuid(assignee_id)
        if member is None and assignee_id != "none":
            flash(response, t("Choose who the leads go to."), "error")
            return response
        changes = {"assigned_to": member}
    elif action == "stage":
        stage = parse_uuid(stage_id)
        if stage is None:
            flash(response, t("Choose the stage to move the leads to."), "error")
            return response
        changes = {"stage_id": stage}
    elif action != "delete":
        flash(response, t("Choose an action."), "error")
        return response
    done = 0
    for lead_id in lead_ids:
        try:
            if changes is None:
                await attempt(session, leads_service.delete_lead(session, frame.principal, lead_id))
            else:
                await attempt(
                    session,
                    leads_service.update_lead(session, frame.principal, lead_id, dict(changes)),
                )
        except AppError:
            continue
        done += 1
    total = len(lead_ids)
    if action == "delete":
        text = frame.i18n.ngettext(
            "%(done)d of %(total)d lead deleted.", "%(done)d of %(total)d leads deleted.", total
        )
    else:
        text = frame.i18n.ngettext(
            "%(done)d of %(total)d lead updated.", "%(done)d of %(total)d leads updated.", total
        )
    message = text % {"done": done, "total": total}
    if done < total:
        message += " " + t("The others could not be changed: you may not have permission.")
    flash(response, message, "success" if done == total else "error")
    return response
