"""The reports' filters: a period of whole days (organization time) with the period of equal
length before it, and optionally an owner, a source and a stage; parsed from query parameters
with every bad value named (422)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from lovedcrm.core.errors import ValidationFailed

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    owner_id: uuid.UUID | None = None
    source: str | None = None
    stage_id: uuid.UUID | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Filters:
        return Filters(
            self.start - timedelta(days=self.days),
            self.start - timedelta(days=1),
            self.owner_id,
            self.source,
            self.stage_id,
        )


def parse_filters(raw: Mapping[str, str | None], today: date) -> Filters:
    """Filters from query parameters (``start``, ``end``: YYYY-MM-DD; ``owner``, ``stage``:
    ids; ``source``). Nothing given: the last 30 days up to today. Bad values: 422 naming
    each field."""
    errors: list[dict[str, str]] = []

    def day(name: str) -> date | None:
        value = (raw.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.append({"field": name, "message": "Use a date as YYYY-MM-DD."})
            return None

    def ident(name: str) -> uuid.UUID | None:
        value = (raw.get(name) or "").strip()
        if not value:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            errors.append({"field": name, "message": "Not a valid id."})
            return None

    start, end = day("start"), day("end")
    owner, stage = ident("owner"), ident("stage")
    source = (raw.get("source") or "").strip() or None
    if source is not None and len(source) > 100:
        errors.append({"field": "source", "message": "At most 100 characters."})
    if end is None:
        end = today if start is None else min(today, start + timedelta(days=DEFAULT_DAYS - 1))
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        errors.append({"field": "end", "message": "The end comes before the start."})
    elif (end - start).days + 1 > MAX_DAYS:
        errors.append({"field": "end", "message": "A period is at most three years."})
    if errors:
        raise ValidationFailed(
            "The report filters are invalid: " + ", ".join(sorted({e["field"] for e in errors})),
            code="invalid_report_filters",
            extra={"errors": errors},
        )
    return Filters(start, end, owner, source, stage)
