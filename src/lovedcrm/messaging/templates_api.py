"""JSON routes for message templates (thin: rules in messaging.templates)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from lovedcrm.core.deps import Require, SessionDep
from lovedcrm.core.openapi import problem_responses
from lovedcrm.core.principal import Principal
from lovedcrm.messaging import templates
from lovedcrm.messaging.template_schemas import TemplateIn, TemplateOut, TemplateUpdateIn

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])
Reader = Annotated[Principal, Depends(Require("messages:read"))]
Manager = Annotated[Principal, Depends(Require("templates:manage"))]


@router.get("", response_model=list[TemplateOut], responses=problem_responses(401, 403, 422))
async def list_templates(
    principal: Reader,
    session: SessionDep,
    category: Annotated[str | None, Query(max_length=100, examples=["follow_up"])] = None,
    is_active: bool | None = None,
) -> list[TemplateOut]:
    """The organization's templates, grouped by category, each original before its variants."""
    rows = await templates.list_templates(session, principal, category=category, active=is_active)
    return [TemplateOut.model_validate(t) for t in rows]


@router.post(
    "",
    response_model=TemplateOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422),
)
async def create_template(body: TemplateIn, principal: Manager, session: SessionDep) -> TemplateOut:
    """Create a template; with `parent_template_id`, an A/B variant of that template. Every
    `{{variable}}` must be a lead field or a custom field."""
    template = await templates.create_template(session, principal, body.model_dump())
    return TemplateOut.model_validate(template)


@router.get(
    "/{template_id}", response_model=TemplateOut, responses=problem_responses(401, 403, 404, 422)
)
async def get_template(
    template_id: uuid.UUID, principal: Reader, session: SessionDep
) -> TemplateOut:
    return TemplateOut.model_validate(await templates.get_template(session, principal, template_id))


@router.patch(
    "/{template_id}", response_model=TemplateOut, responses=problem_responses(401, 403, 404, 422)
)
async def update_template(
    template_id: uuid.UUID, body: TemplateUpdateIn, principal: Manager, session: SessionDep
) -> TemplateOut:
    template = await templates.update_template(
        session, principal, template_id, body.model_dump(exclude_unset=True)
    )
    return TemplateOut.model_validate(template)


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_template(
    template_id: uuid.UUID, principal: Manager, session: SessionDep
) -> Response:
    await templates.delete_template(session, principal, template_id)
    return Response(status_code=204)
