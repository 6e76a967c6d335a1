"""Sparse fieldsets for list endpoints, and the lean way lists are answered.

``GET …?fields=id,full_name,phone`` returns only those fields of each item. The parameter is
checked against the item schema (an unknown name is a 422) and documented in OpenAPI: its
``pattern`` admits exactly the comma-separated field names, which its description lists.
The documented answer is either the full page or the page of partial items
(:func:`partial_model`: the same fields, none required).

Lists are answered without building a pydantic model per item: rows (already only the
columns asked for) become plain dicts, written as the item model would write them
(``tests/leads/test_leads_api.py`` compares the two) by :func:`dumps`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
import pydantic_core
from fastapi import Query, Response
from pydantic import BaseModel, Field, create_model


def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of ``model``'s fields as the API writes them."""
    return tuple(model.model_fields)


def attribute_names(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the attribute it is read from (its validation alias, if any)."""
    names = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        names[name] = alias if isinstance(alias, str) else name
    return names


FIELDS_MAX_LENGTH = 1000


def fields_pattern(model: type[BaseModel]) -> str:
    """The pattern a ``fields`` parameter of a list of ``model`` matches."""
    one = "|".join(field_names(model))
    return rf"^({one})(,({one}))*$"


def fields_query(model: type[BaseModel], example: str) -> Any:
    """The ``fields`` query parameter of a list of ``model``."""
    names = field_names(model)
    return Query(
        pattern=fields_pattern(model),
        max_length=FIELDS_MAX_LENGTH,
        description="Return only these fields of each item, comma-separated (the others are "
        "left out of the answer): " + ", ".join(f"`{n}`" for n in names) + ".",
        examples=[example],
    )


def selected(raw: str | None) -> list[str] | None:
    """The field names of a ``fields`` parameter already checked by its pattern, in order and
    without repeats; None when absent (every field)."""
    return list(dict.fromkeys(raw.split(","))) if raw else None


def partial_model(model: type[BaseModel], name: str) -> type[BaseModel]:
    """``model`` with no field required: what an item is with ``fields``."""
    fields: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        annotation: Any = info.annotation
        fields[field] = (annotation | None, Field(default=None, description=info.description))
    return create_model(name, **fields)


def page_response(
    items: Iterable[Any],
    fields: Sequence[str],
    next_cursor: str | None,
    attributes: Mapping[str, str] | None = None,
) -> Response:
    """``{"items": [...], "next_cursor": ...}`` with ``fields`` of each item, read from the
    rows' attributes (``attributes`` maps a field to its attribute where they differ)."""
    attributes = attributes or {}
    rows = list(items)
    names = [attributes.get(f, f) for f in fields]
    row_fields = getattr(rows[0], "_fields", None) if rows else None
    if row_fields is not None:  # result rows: by position (a Row's getattr is slow)
        at = [row_fields.index(n) for n in names]
        if at == list(range(len(at))):  # the fields lead the row, in order
            listed = [dict(zip(fields, row, strict=False)) for row in rows]
        else:
            listed = [{f: row[i] for f, i in zip(fields, at, strict=True)} for row in rows]
    else:
        listed = [{f: getattr(row, n) for f, n in zip(fields, names, strict=True)} for row in rows]
    body = {"items": listed, "next_cursor": next_cursor}
    return Response(dumps(body), media_type="application/json")


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # as pydantic-core writes a Decimal: the string of its value
    raise TypeError  # orjson raises JSONEncodeError: pydantic-core writes the body


def dumps(body: Any) -> bytes:
    """``body`` as JSON as ``pydantic_core.to_json`` writes it, in about a third of the time
    (orjson: writing a page of 50 leads was the list's largest cost in Python). UUIDs,
    strings (the same escapes), integers, floats, dates with ``Z`` for UTC, decimals as the
    string of their value, dicts and lists come out byte for byte the same; what orjson
    refuses (an integer past 64 bits, a type it does not know) is written by pydantic-core
    instead. Two differences are left (``docs/decisions/0014-lean-hot-reads.md``): a float
    NaN or infinity is written ``null`` (pydantic writes ``NaN``, which is not JSON), and a
    time zone offset with seconds (local mean time, in a non-UTC session, before about 1900)
    is rounded to the minute where pydantic truncates it. ``tests/core/test_fields.py``
    compares both on awkward values."""
    try:
        return orjson.dumps(body, default=_decimal, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(body)
