"""Loading one of the organization's rows by id for a principal."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.core.errors import AppError
from lovedcrm.core.principal import Principal


class _OrgRow(Protocol):
    @property
    def organization_id(self) -> uuid.UUID | None: ...


T = TypeVar("T", bound=_OrgRow)


async def get_in_org(
    session: AsyncSession,
    model: type[T],
    row_id: uuid.UUID,
    principal: Principal,
    missing: AppError,
) -> T:
    """The ``model`` row with ``row_id`` in the principal's organization; raises ``missing``
    when there is none. RLS already hides other organizations' rows; the explicit check keeps
    a future policy change from turning into a leak."""
    row = await session.get(model, row_id)
    if row is None or row.organization_id != principal.org():
        raise missing
    return row
