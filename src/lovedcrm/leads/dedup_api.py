"""JSON route for merging duplicate leads (rules in leads.dedup)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import ConfigDict

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.core.schemas import StrictIn
from lovedcrm.leads import dedup
from lovedcrm.leads.schemas import LeadOut

router = APIRouter(prefix="/api/v1/leads", tags=["leads"])
Merger = Annotated[Principal, Depends(Require("leads:write_all"))]
Deleter = Annotated[Principal, Depends(Require("leads:delete"))]


class MergeIn(StrictIn):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"merge_id": "6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10"}]}
    )

    merge_id: uuid.UUID


@router.post(
    "/{keep_id}/merge",
    response_model=LeadOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def merge_leads(
    keep_id: uuid.UUID,
    body: MergeIn,
    principal: Merger,
    _deleter: Deleter,
    session: SessionDep,
) -> LeadOut:
    """Merge the lead `merge_id` into `keep_id`: its timeline, messages, calls, calendar
    events and AI conversations move to the kept lead, the kept lead's empty fields are filled
    from it, and it is deleted. Audited as `lead_merge` with both leads as they were."""
    lead = await dedup.merge(session, principal, keep_id, body.merge_id)
    return LeadOut.model_validate(lead)
