"""The pipeline board: one column per active stage (in ``stage_order``) with its count and the
sum of ``estimated_value`` over every matching lead, and its first cards in board order; a
move between or within columns, refused when the card changed since it was shown.

Board order is ``leads.board_position`` ascending (ties by id). New leads default to the top
(migration 0004). A move puts the card halfway between its new neighbours; when two
neighbours are too close for that, the column is renumbered (1024 apart, same order) without
bumping the leads' versions, so nobody's open cards turn stale.

Only active leads (``status = 'active'``) are on the board. Visibility follows
``leads.service.visible``: a sales member sees, counts and moves only their own leads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    any_,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.core.errors import Conflict, NotFound, ValidationFailed
from lovedcrm.core.events import DomainEvent, emit
from lovedcrm.core.pagination import BadCursor, decode_cursor, encode_cursor
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads
from lovedcrm.leads.models import Lead, PipelineStage
from lovedcrm.leads.stages import get_stage
from lovedcrm.pipeline.board_schemas import CardOut

PAGE = 50
STEP = 1024.0
# Below this gap between two neighbours the column is renumbered before inserting between.
MIN_GAP = 1e-3
MAX_PAGE = 200


@dataclass(frozen=True)
class BoardFilters:
    assigned_to: uuid.UUID | None = None
    source: str | None = None
    score_min: int | None = None
    score_max: int | None = None
    q: str | None = None


@dataclass
class Card:
    id: uuid.UUID
    stage_id: uuid.UUID
    full_name: str
    company: str | None
    estimated_value: Decimal | None
    lead_score: int | None
    scored: bool  # a score was calculated (a new lead has 0 and no score yet)
    source: str | None
    status: str | None
    assigned_to: uuid.UUID | None
    assignee_name: str | None
    assignee_initials: str | None
    last_activity_at: datetime | None
    last_activity_age_seconds: int | None
    board_position: float
    version: int
    has_phone: bool = False  # the card offers a call only to a lead with a phone


@dataclass
class BoardColumn:
    stage: PipelineStage
    lead_count: int
    total_value: Decimal
    cards: list[Card] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass
class Board:
    columns: list[BoardColumn]


@dataclass
class CardPage:
    items: list[Card]
    next_cursor: str | None


def initials(name: str | None) -> str | None:
    """ "Ana Maria Souza" -> "AS"; one word -> its first letter."""
    words = [w for w in (name or "").split() if w[:1].isalnum()]
    if not words:
        return None
    picked = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return picked.upper()


_CARD_COLUMNS = (
    Lead.id,
    Lead.stage_id,
    Lead.full_name,
    Lead.company,
    Lead.estimated_value,
    Lead.lead_score,
    Lead.score_last_calculated_at,
    Lead.source,
    Lead.status,
    Lead.assigned_to,
    Lead.last_activity_at,
    Lead.created_at,
    Lead.board_position,
    Lead.version,
    User.full_name.label("assignee_name"),
    Lead.phone.is_not(None).label("has_phone"),
)


def _card(row: Any, now: datetime) -> Card:
    since = row.last_activity_at
    return Card(
        id=row.id,
        stage_id=row.stage_id,
        full_name=row.full_name,
        company=row.company,
        estimated_value=row.estimated_value,
        lead_score=row.lead_score,
        scored=row.score_last_calculated_at is not None,
        source=row.source,
        status=row.status,
        assigned_to=row.assigned_to,
        assignee_name=row.assignee_name,
        assignee_initials=initials(row.assignee_name),
        last_activity_at=since,
        last_activity_age_seconds=(
            None if since is None else max(0, int((now - since).total_seconds()))
        ),
        board_position=row.board_position,
        version=row.version,
        has_phone=bool(row.has_phone),
    )


def card_json(card: Card) -> dict[str, Any]:
    return CardOut.model_validate(card).model_dump(mode="json")


async def _conditions(
    session: AsyncSession, principal: Principal, filters: BoardFilters
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        Lead.organization_id == principal.org(),
        Lead.status == "active",
    ]
    if not principal.can("leads:read_all"):
        where.append(Lead.assigned_to == principal.user_id)
    if filters.assigned_to:
        where.append(Lead.assigned_to == filters.assigned_to)
    if filters.source:
        where.append(func.lower(Lead.source) == filters.source.strip().lower())
    if filters.score_min is not None:
        where.append(func.coalesce(Lead.lead_score, 0) >= filters.score_min)
    if filters.score_max is not None:
        where.append(func.coalesce(Lead.lead_score, 0) <= filters.score_max)
    if filters.q and filters.q.strip():
        # The matching ids once, not once per column (search: leads.service).
        region = await leads.org_region(session, principal)
        matches = leads.search_matches(filters.q.strip(), region)
        ids = list((await session.execute(matches)).scalars())
        where.append(Lead.id == any_(literal(ids, ARRAY(UUID(as_uuid=True)))))
    return where


def _cards_query(where: list[ColumnElement[bool]]) -> Any:
    return (
        select(*_CARD_COLUMNS)
        .outerjoin(User, User.id == Lead.assigned_to)
        .where(*where)
        .order_by(Lead.board_position, Lead.id)
    )


def _cursor(card: Card) -> str:
    return encode_cursor(["board", repr(card.board_position), card.id])


def _page(rows: list[Any], limit: int, now: datetime) -> tuple[list[Card], str | None]:
    cards = [_card(r, now) for r in rows[:limit]]
    return cards, (_cursor(cards[-1]) if len(rows) > limit and cards else None)


async def active_stages(session: AsyncSession, principal: Principal) -> list[PipelineStage]:
    result = await session.execute(
        select(PipelineStage)
        .where(PipelineStage.organization_id == principal.org(), PipelineStage.is_active.is_(True))
        .order_by(PipelineStage.stage_order)
    )
    return list(result.scalars())


async def board(
    session: AsyncSession,
    principal: Principal,
    filters: BoardFilters | None = None,
    *,
    limit: int = PAGE,
) -> Board:
    """Every active stage in order with its totals (all matching leads the principal can see)
    and its first ``limit`` cards; three queries whatever the number of stages."""
    principal.require("leads:read")
    filters = filters or BoardFilters()
    where = await _conditions(session, principal, filters)
    stages = await active_stages(session, principal)
    totals = {
        stage_id: (int(count), Decimal(total or 0))
        for stage_id, count, total in (
            await session.execute(
                select(
                    Lead.stage_id,
                    func.count(),
                    func.coalesce(func.sum(Lead.estimated_value), 0),
                )
                .where(*where)
                .group_by(Lead.stage_id)
            )
        ).all()
    }
    stage_ids = select(PipelineStage.id.label("sid")).where(
        PipelineStage.organization_id == principal.org(), PipelineStage.is_active.is_(True)
    )
    stage_sub = stage_ids.subquery("s")
    per_stage = _cards_query([*where, Lead.stage_id == stage_sub.c.sid]).limit(limit + 1).lateral()
    query = select(per_stage).select_from(stage_sub.join(per_stage, literal(True)))
    rows = (await session.execute(query)).all()
    by_stage: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        by_stage.setdefault(row.stage_id, []).append(row)
    now = datetime.now(UTC)
    columns = []
    for stage in stages:
        count, total = totals.get(stage.id, (0, Decimal(0)))
        cards, cursor = _page(by_stage.get(stage.id, []), limit, now)
        columns.append(BoardColumn(stage, count, total, cards, cursor))
    return Board(columns=columns)


async def stage_cards(
    session: AsyncSession,
    principal: Principal,
    stage_id: uuid.UUID,
    filters: BoardFilters | None = None,
    *,
    after: str | None = None,
    limit: int = PAGE,
) -> CardPage:
    """The next cards of one column ("load more"), after the cursor of the previous page."""
    principal.require("leads:read")
    filters = filters or BoardFilters()
    await get_stage(session, principal, stage_id)
    where = await _conditions(session, principal, filters)
    where.append(Lead.stage_id == stage_id)
    if after:
        kind, raw_pos, raw_id = decode_cursor(after, 3)
        try:
            if kind != "board":
                raise ValueError(kind)
            position, last_id = float(raw_pos), uuid.UUID(raw_id)
        except ValueError as exc:
            raise BadCursor(
                "The cursor is not valid. Use the next_cursor of a previous page."
            ) from exc
        where.append(
            tuple_(Lead.board_position, Lead.id) > tuple_(literal(position), literal(last_id))
        )
    rows = list((await session.execute(_cards_query(where).limit(limit + 1))).all())
    cards, cursor = _page(rows, limit, datetime.now(UTC))
    return CardPage(items=cards, next_cursor=cursor)


async def get_card(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Card:
    """One card as the board shows it (404 when the principal cannot see the lead); whatever
    its status, so a page can drop a card that left the board."""
    principal.require("leads:read")
    query = leads.visible(
        principal,
        _cards_query([Lead.organization_id == principal.org(), Lead.id == lead_id]),
    )
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound("No lead with that id.", code="lead_not_found")
    return _card(row, datetime.now(UTC))


# --- moves ------------------------------------------------------------------------------


def _column(organization_id: uuid.UUID, stage_id: uuid.UUID, lead_id: uuid.UUID) -> list[Any]:
    return [
        Lead.organization_id == organization_id,
        Lead.stage_id == stage_id,
        Lead.status == "active",
        Lead.id != lead_id,
    ]


async def _neighbour(
    session: AsyncSession, organization_id: uuid.UUID, stage_id: uuid.UUID, neighbour: uuid.UUID
) -> float:
    position = (
        await session.execute(
            select(Lead.board_position).where(
                Lead.organization_id == organization_id,
                Lead.id == neighbour,
                Lead.stage_id == stage_id,
                Lead.status == "active",
            )
        )
    ).scalar_one_or_none()
    if position is None:
        raise ValidationFailed(
            "The card to place it next to is not in that column (any more): reload the board.",
            code="invalid_neighbour",
            extra={"neighbour_id": str(neighbour)},
        )
    return float(position)


async def _between(
    session: AsyncSession,
    lead: Lead,
    stage_id: uuid.UUID,
    before_id: uuid.UUID | None,
    after_id: uuid.UUID | None,
) -> tuple[float | None, float | None]:
    """The positions the card must go between (None: no card on that side)."""
    low: float | None
    high: float | None
    org, column = lead.organization_id, _column(lead.organization_id, stage_id, lead.id)
    key = tuple_(Lead.board_position, Lead.id)
    if after_id is not None:
        low = await _neighbour(session, org, stage_id, after_id)
        if before_id is not None:
            return low, await _neighbour(session, org, stage_id, before_id)
        high = (
            await session.execute(
                select(Lead.board_position)
                .where(*column, key > tuple_(literal(low), literal(after_id)))
                .order_by(Lead.board_position, Lead.id)
                .limit(1)
            )
        ).scalar_one_or_none()
        return low, high
    if before_id is not None:
        high = await _neighbour(session, org, stage_id, before_id)
        low = (
            await session.execute(
                select(Lead.board_position)
                .where(*column, key < tuple_(literal(high), literal(before_id)))
                .order_by(Lead.board_position.desc(), Lead.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        return low, high
    top = (await session.execute(select(func.min(Lead.board_position)).where(*column))).scalar()
    return None, top


def _midpoint(low: float | None, high: float | None) -> float | None:
    """A position strictly between, or None when the gap is too small (renumber first)."""
    if low is None and high is None:
        return 0.0
    if low is None:
        return float(high) - STEP  # type: ignore[arg-type]
    if high is None:
        return low + STEP
    middle = (low + high) / 2
    if high - low < MIN_GAP or not low < middle < high:
        return None
    return middle


async def renumber(session: AsyncSession, organization_id: uuid.UUID, stage_id: uuid.UUID) -> None:
    """Spread a column's positions 1024 apart, keeping its order; versions are left alone."""
    ranked = (
        select(
            Lead.id.label("id"),
            (func.row_number().over(order_by=(Lead.board_position, Lead.id)) * STEP).label("pos"),
        )
        .where(
            Lead.organization_id == organization_id,
            Lead.stage_id == stage_id,
            Lead.status == "active",
        )
        .subquery()
    )
    await session.execute(text("SELECT set_config('lovedcrm.skip_version', 'on', true)"))
    await session.execute(
        update(Lead)
        .where(Lead.id == ranked.c.id, Lead.organization_id == organization_id)
        .values(board_position=ranked.c.pos)
        .execution_options(synchronize_session=False)
    )
    await session.execute(text("SELECT set_config('lovedcrm.skip_version', '', true)"))


async def _locked_lead(session: AsyncSession, principal: Principal, lead_id: uuid.UUID) -> Lead:
    query = leads.visible(
        principal, select(Lead).where(Lead.id == lead_id, Lead.organization_id == principal.org())
    )
    lead = (
        await session.execute(query.with_for_update().execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if lead is None or not leads.may_edit(principal, lead):
        raise NotFound("No lead with that id.", code="lead_not_found")
    return lead


async def move_lead(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    stage_id: uuid.UUID,
    expected_version: int,
    before_id: uuid.UUID | None = None,
    after_id: uuid.UUID | None = None,
) -> Card:
    """Put a card in a column (``stage_id``), after ``after_id`` and/or before ``before_id``
    (neither: at the top). Refused, changing nothing, when the lead's version is no longer
    ``expected_version`` (409 ``stale_version`` with the fresh card), the stage is not an
    active stage of the organization (422 ``invalid_stage``), or the lead is not the
    principal's to edit (404). A stage change goes through ``leads.service.update_lead``
    (audit, stage-change activity, events, analytics)."""
    principal.require("leads:write")
    lead = await _locked_lead(session, principal, lead_id)
    stage = await session.get(PipelineStage, stage_id)
    if stage is None or stage.organization_id != principal.org() or not stage.is_active:
        raise ValidationFailed(
            "That stage does not exist in this organization or is no longer active: "
            "reload the board.",
            code="invalid_stage",
            extra={"stage_id": str(stage_id)},
        )
    if lead.version != expected_version:
        card = await get_card(session, principal, lead.id)
        raise Conflict(
            "Someone else changed this lead since you loaded it; here is the current card. "
            "Nothing was moved.",
            code="stale_version",
            extra={"lead": card_json(card), "expected_version": expected_version},
        )
    if lead_id in (before_id, after_id):
        raise ValidationFailed("A card cannot go next to itself.", code="invalid_neighbour")
    low, high = await _between(session, lead, stage_id, before_id, after_id)
    position = _midpoint(low, high)
    if position is None:
        await renumber(session, lead.organization_id, stage_id)
        low, high = await _between(session, lead, stage_id, before_id, after_id)
        position = _midpoint(low, high)
        if position is None:  # the two given neighbours are not in order
            raise ValidationFailed(
                "after_id must be above before_id in the column.", code="invalid_neighbour"
            )
    lead.board_position = position
    if stage_id != lead.stage_id:
        await leads.update_lead(session, principal, lead.id, {"stage_id": stage_id})
    else:
        lead.updated_at = func.now()
        await session.flush()
        await session.refresh(lead)
        await emit(
            session,
            DomainEvent(
                type="lead.updated",
                organization_id=lead.organization_id,
                data={
                    "lead_id": str(lead.id),
                    "changed": ["board_position"],
                    "lead": leads.lead_json(lead),
                },
                actor_id=principal.user_id,
            ),
        )
    return await get_card(session, principal, lead.id)
