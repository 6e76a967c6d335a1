"""Base Pydantic models for the API: unknown fields are refused (422), and what the JSON
Schema of an input says is what is accepted -- no more, no less (schemathesis checks both)."""

from __future__ import annotations

import re
import types
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


# Text is stripped, and NUL is refused: what the schema of a text field says.
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _document_text_rules(schema: dict[str, Any]) -> None:
    """A text field refuses NUL, and one that must not be empty must not be blank either
    (whitespace is stripped first): say so with a ``pattern`` where the field has none."""
    for prop in schema.get("properties", {}).values():
        variants = [prop, *prop.get("anyOf", [])]
        variants += [v["items"] for v in variants if isinstance(v.get("items"), dict)]
        for variant in variants:
            if variant.get("type") == "string" and not {"pattern", "format"} & set(variant):
                variant["pattern"] = NOT_BLANK if variant.get("minLength", 0) >= 1 else NO_NUL


def _scalar_types(annotation: Any) -> set[Any]:
    """The types a field accepts, ``None`` left out: ``int | None`` → {int}."""
    if get_origin(annotation) is Annotated:
        return _scalar_types(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_scalar_types(a) for a in get_args(annotation)))
    return set() if annotation is type(None) else {annotation}


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        _document_text_rules(schema)
        return schema

    @field_validator("*", mode="before")
    @classmethod
    def _as_the_schema_says(cls, value: Any, info: ValidationInfo) -> Any:
        """A JSON boolean is not a number and a JSON number is not a boolean (pydantic would
        read ``0`` as false and ``false`` as 0; text, from forms and files, still converts);
        a text's ``maxLength`` counts what was sent, before the whitespace is stripped."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        accepted = _scalar_types(field.annotation)
        if isinstance(value, bool) and accepted and accepted <= {int, float, Decimal}:
            raise PydanticCustomError(
                "number_not_boolean", "Input should be a number, not a boolean"
            )
        if type(value) in (int, float) and accepted == {bool}:
            raise PydanticCustomError(
                "boolean_not_number", "Input should be a boolean (true or false), not a number"
            )
        if isinstance(value, str):
            limits = [getattr(m, "max_length", None) for m in field.metadata]
            limit = next((n for n in limits if n is not None), None)
            if limit is not None and len(value) > limit:
                raise PydanticCustomError(
                    "string_too_long",
                    "String should have at most {max_length} characters",
                    {"max_length": limit},
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold NUL: refuse it here as bad input, not a server error.
        if _has_nul(data):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return data


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
        raise PydanticCustomError(
            "datetime_parsing",
            "Input should be an ISO 8601 date-time, such as 2025-01-31T14:00:00-03:00",
        )
    return value


# A date-time as the schema says (``format: date-time``): ISO 8601 text, never a number of
# seconds (which pydantic would otherwise read as a Unix time).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, bool | int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value)
    ):
        raise PydanticCustomError(
            "date_parsing", "Input should be an ISO 8601 date, such as 2025-01-31"
        )
    return value


# A date as the schema says (``format: date``): ISO 8601 text, never a number.
IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]
