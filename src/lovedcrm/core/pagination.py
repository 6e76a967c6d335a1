"""Keyset pagination, the one implementation: opaque cursors and the ``(key, id)`` ordering.

A list ordered by a key (a date, a name, a value) and the row id as a tie-breaker pages with
``WHERE (key, id) < (last key, last id)`` on an index — never an OFFSET, never a sort of the
whole tenant. The cursor is base64url of a small JSON list ``[sort name, key, id]``: a cursor of
another sort (or a forged one) is a 400 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from lovedcrm.core.errors import AppError

KeyExpr = ColumnElement[Any] | InstrumentedAttribute[Any]
_INVALID = "The cursor is not valid. Use the next_cursor of a previous page."


class BadCursor(AppError):
    status, code, title = 400, "invalid_cursor", "Invalid cursor"


class _HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


R = TypeVar("R", bound=_HasId)


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(_INVALID) from exc
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise BadCursor(_INVALID)
    return values


def keyset_after(
    query: Select[Any],
    cursor: str | None,
    *,
    key: KeyExpr,
    id_col: KeyExpr,
    sort: str = "",
    parse: Callable[[str], Any] = datetime.fromisoformat,
    descending: bool = True,
) -> Select[Any]:
    """Order ``query`` by ``(key, id)`` and, given a cursor of the same sort, start after it.
    Fetch ``limit + 1`` rows and give them to :func:`page_of`."""
    if cursor:
        sort_raw, key_raw, id_raw = decode_cursor(cursor, 3)
        if sort_raw != sort:
            raise BadCursor(_INVALID)
        try:
            value, last_id = parse(key_raw), uuid.UUID(id_raw)
        except (ValueError, ArithmeticError) as exc:
            raise BadCursor(_INVALID) from exc
        # ``parse`` may give SQL for a value Python cannot hold (a date's -infinity).
        bound = value if isinstance(value, ColumnElement) else literal(value)
        row, last = tuple_(key, id_col), tuple_(bound, literal(last_id))
        query = query.where(row < last if descending else row > last)
    if descending:
        return query.order_by(key.desc(), id_col.desc())
    return query.order_by(key.asc(), id_col.asc())


def page_of(
    rows: Sequence[R], limit: int, *, key_of: Callable[[R], Any], sort: str = ""
) -> tuple[list[R], str | None]:
    """Trim a ``limit + 1`` fetch to the page and give the cursor of the next one."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    last = page[-1]
    value = key_of(last)
    raw = value.isoformat() if isinstance(value, datetime) else value
    return page, encode_cursor([sort, raw, last.id])
