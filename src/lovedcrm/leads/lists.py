"""Pages of leads: the sorts a list offers, its filters, the search box, and the keyset
page of the leads a principal sees (``list_leads``). ``leads.service`` re-exports what other
modules use from here."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    Uuid,
    bindparam,
    column,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.auth.models import User
from lovedcrm.core.errors import ValidationFailed
from lovedcrm.core.pagination import KeyExpr, keyset_after, page_of
from lovedcrm.core.phones import to_e164
from lovedcrm.core.principal import Principal
from lovedcrm.db import reads
from lovedcrm.leads.access import org_region, visible
from lovedcrm.leads.models import NEVER, SORT_KEYS, Lead, PipelineStage

_NEVER = "-infinity"  # a date sort key's floor, as a cursor carries it


def _date_key(raw: str) -> Any:
    return (
        literal_column(NEVER, DateTime(timezone=True))
        if raw == _NEVER
        else datetime.fromisoformat(raw)
    )


def _date_of(name: str) -> Callable[[Any], Any]:
    return lambda row: getattr(row, name) or _NEVER


# sort name -> (the column the key comes from, cursor parser, key of a loaded row); the key
# expressions (and their indexes) are leads.models.SORT_KEYS.
_SORTS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], Any]]] = {
    "created_at": ("created_at", _date_key, _date_of("created_at")),
    "updated_at": ("updated_at", _date_key, _date_of("updated_at")),
    "full_name": ("full_name", str, lambda row: row.full_name),
    "lead_score": ("lead_score", int, lambda row: row.lead_score or 0),  # CHECK: 0 or more
    # The list page's other columns (not offered by the JSON API's LeadSort).
    "company": ("company", str, lambda row: row.company or ""),
    "estimated_value": (
        "estimated_value",
        Decimal,
        lambda row: max(row.estimated_value or Decimal(0), Decimal(0)),
    ),
    "last_activity_at": ("last_activity_at", _date_key, _date_of("last_activity_at")),
}
RELEVANCE = "relevance"
DEFAULT_SORT = "-created_at"
# A list row: every column of the lead but the search's own.
LIST_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in Lead.__table__.columns if c.name != "search_text"
)

# Sorts on a related row's value: the key is selected with the page as ``sort_key``.
_RELATED_SORTS: dict[str, tuple[KeyExpr, Callable[[str], Any]]] = {
    "stage": (
        func.coalesce(
            select(PipelineStage.stage_order)
            .where(PipelineStage.id == Lead.stage_id)
            .correlate(Lead)
            .scalar_subquery(),
            0,
        ),
        int,
    ),
    "assignee": (
        func.coalesce(
            select(func.lower(User.full_name))
            .where(User.id == Lead.assigned_to)
            .correlate(Lead)
            .scalar_subquery(),
            "",
        ),
        str,
    ),
}


@dataclass
class LeadPage:
    items: list[Any]  # rows with the lead's columns as attributes
    next_cursor: str | None


_SEARCH_BOUND = func.lovedcrm_search_leads(
    bindparam("q", type_=String),
    bindparam("q_like", type_=String),
    bindparam("q_digits", type_=String),
    bindparam("q_e164", type_=String),
).table_valued(column("id", Uuid), column("rank", BigInteger))


def _phone_like(q: str) -> bool:
    """A query with six digits or more is also searched as a phone number."""
    return sum(ch.isdigit() for ch in q) >= 6


def _search_params(q: str, region: str) -> dict[str, Any]:
    """``lovedcrm_search_leads`` (migration 0010)'s arguments: the current organization's
    leads matching ``q``, ignoring case and accents -- the text as typed anywhere in the
    name, company, e-mail or phone, or every word of it in the name or company within one
    typo; a phone typed in any format also matches its E.164 form or a run of its digits.
    ``rank`` orders them: those matching as typed first, newest first within each. The
    matching runs there, on the organization's GIN indexes: under row-level security
    PostgreSQL would not use them for these (non-leakproof) operators."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    digits = "".join(ch for ch in q if ch.isdigit())
    e164: str | None = None
    if _phone_like(q):
        with contextlib.suppress(ValueError):
            e164 = to_e164(q, region)
    return {
        "q": q,
        "q_like": f"%{escaped}%",
        "q_digits": f"%{digits}%" if len(digits) >= 6 else None,
        "q_e164": e164,
    }


def search_matches(q: str, region: str) -> Select[tuple[uuid.UUID]]:
    """The ids of the current organization's leads matching ``q`` (see ``_search_params``)."""
    return select(_SEARCH_BOUND.alias("found").c.id).params(_search_params(q, region))


def _search(q: str, region: str) -> ColumnElement[bool]:
    return Lead.id.in_(search_matches(q, region))


def search_filter(q: str | None, region: str) -> ColumnElement[bool] | None:
    """The search condition for ``q`` (None when there is nothing to search)."""
    return _search(q.strip(), region) if q and q.strip() else None


def effective_sort(sort: str | None, q: str | None) -> str:
    """The order of a list: as asked, else by relevance when searching, else newest first.
    Relevance without a search is newest first too."""
    searching = bool(q and q.strip())
    if sort is None:
        sort = RELEVANCE if searching else DEFAULT_SORT
    return DEFAULT_SORT if sort == RELEVANCE and not searching else sort


# Each filter of a list, its value bound by name (``list_leads`` gives the values).
_FILTERS: dict[str, ColumnElement[bool]] = {
    "stage_id": Lead.stage_id == bindparam("stage_id"),
    "assigned_to": Lead.assigned_to == bindparam("assigned_to"),
    "status": Lead.status == bindparam("status"),
    "source": func.lower(Lead.source) == bindparam("source", type_=String),
    "score_min": SORT_KEYS["lead_score"] >= bindparam("score_min"),
    "score_max": SORT_KEYS["lead_score"] <= bindparam("score_max"),
    "created_after": Lead.created_at >= bindparam("created_after"),
    "created_before": Lead.created_at < bindparam("created_before"),
}
# A first page's statement per shape, with its compiled form when ``db.reads`` can run it.
_PAGES: dict[tuple[Any, ...], tuple[Select[Any], reads.Prepared | None]] = {}
_PAGES_KEPT = 512


def _remember_page(
    shape: tuple[Any, ...], statement: Select[Any], prepared: reads.Prepared | None
) -> None:
    if len(_PAGES) >= _PAGES_KEPT:
        _PAGES.pop(next(iter(_PAGES)))  # the oldest: a bound on per-member shapes
    _PAGES[shape] = (statement, prepared)


def _page_statement(
    principal: Principal,
    wanted: list[str],
    sort: str,
    bound: frozenset[str],
    cursor: str | None,
) -> Select[Any]:
    """The statement of a page of leads with its values bound by name (see ``list_leads``):
    ``org``, ``limit``, the filters in ``bound`` and the search's (``_search_params``)."""
    name = sort.lstrip("-")
    table = Lead.__table__.c
    # Plain rows, not ORM objects: a page is read-only, and skipping the identity map and
    # instance state halves the cost of a page.
    query = visible(
        principal,
        select(*(table[c] for c in dict.fromkeys(["id", *wanted]))).where(
            Lead.organization_id == bindparam("org")
        ),
    )
    for filter_name, condition in _FILTERS.items():
        if filter_name in bound:
            query = query.where(condition)
    searching = "q" in bound
    key: Any
    id_col: Any = Lead.id
    parse: Callable[[str], Any]
    if name == RELEVANCE:
        # The matches in order, then each one's lead by id until the page is full: the plan
        # cannot read the whole organization to join them (OFFSET 0 keeps both apart).
        found = _SEARCH_BOUND.alias("match")
        ranked = (
            select(found.c.id, found.c.rank)
            .order_by(found.c.rank, found.c.id)
            .offset(0)
            .subquery("found")
        )
        lead = query.where(Lead.id == ranked.c.id).offset(0).lateral("lead")
        query = select(lead, ranked.c.rank.label("sort_key")).select_from(
            ranked.join(lead, literal(True))
        )
        key, id_col, parse = ranked.c.rank, ranked.c.id, int
    else:
        if searching:
            query = query.where(Lead.id.in_(select(_SEARCH_BOUND.alias("found").c.id)))
        if name in _RELATED_SORTS:
            key, parse = _RELATED_SORTS[name]
            query = query.add_columns(key.label("sort_key"))
        else:
            _, parse, _ = _SORTS[name]
            key = SORT_KEYS[name]
    query = keyset_after(
        query,
        cursor,
        sort=sort,
        key=key,
        id_col=id_col,
        parse=parse,
        descending=sort.startswith("-"),
    )
    return query.limit(bindparam("limit", type_=Integer))


async def list_leads(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int = 50,
    cursor: str | None = None,
    stage_id: uuid.UUID | None = None,
    assigned_to: uuid.UUID | None = None,
    status: str | None = None,
    source: str | None = None,
    score_min: int | None = None,
    score_max: int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    q: str | None = None,
    sort: str | None = None,
    columns: Collection[str] | None = None,
) -> LeadPage:
    """A keyset page of the leads the principal sees, ordered by ``sort`` (see
    :func:`effective_sort`; a leading ``-`` is descending) and the id, on an index
    ``(organization_id, key, id)`` for every order but those of a related row (stage,
    assignee). Items are plain rows with ``columns`` (all of the lead's by default) and
    whatever the order needs."""
    principal.require("leads:read")
    sort = effective_sort(sort, q)
    name = sort.lstrip("-")
    wanted = list(LIST_COLUMNS if columns is None else columns)
    if name in _SORTS:
        wanted.append(_SORTS[name][0])
    elif name not in _RELATED_SORTS and name != RELEVANCE:
        raise ValidationFailed(f"Unknown sort: {sort}", code="invalid_sort")
    searching = bool(q and q.strip())
    # Each filter as given (the same truthiness as the query string: an empty stage is none).
    given = {
        "stage_id": stage_id or None,
        "assigned_to": assigned_to or None,
        "status": status or None,
        "source": source.strip().lower() if source else None,
        "score_min": score_min,
        "score_max": score_max,
        "created_after": created_after,
        "created_before": created_before,
    }
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    params["org"] = principal.org()
    params["limit"] = limit + 1
    if searching:
        assert q is not None
        text_ = q.strip()
        # The organization's phone region matters only to a query that may be a phone.
        region = await org_region(session, principal) if _phone_like(text_) else "BR"
        params |= _search_params(text_, region)
    # The statement depends on the page's shape, never on its values (all bound), so the
    # first page of each shape is built once per process: building one (the relevance
    # order's subqueries above all) cost more than running it. A member without
    # ``leads:read_all`` gets their own (``visible`` names them).
    shape = (
        sort,
        tuple(wanted),
        frozenset(params),
        None if principal.can("leads:read_all") else principal.user_id,
    )
    known = None if cursor else _PAGES.get(shape)
    if known is None:
        statement = _page_statement(principal, wanted, sort, frozenset(params), cursor)
        prepared = None
        if not cursor:
            prepared = reads.prepare(statement, session.get_bind().dialect)
            _remember_page(shape, statement, prepared)
    else:
        statement, prepared = known
    key_of: Callable[[Any], Any] = (
        attrgetter("sort_key")
        if sort.lstrip("-") == RELEVANCE or sort.lstrip("-") in _RELATED_SORTS
        else _SORTS[sort.lstrip("-")][2]
    )
    # Plain columns need none of the ORM's execution machinery; a first page, none of
    # SQLAlchemy's per execution either (db.reads).
    rows: list[Any]
    if prepared is not None:
        rows = await reads.fetch(session, prepared, params)
    else:
        connection = await session.connection()
        rows = list((await connection.execute(statement, params)).all())
    rows, cursor_out = page_of(rows, limit, sort=sort, key_of=key_of)
    return LeadPage(items=rows, next_cursor=cursor_out)
