"""OpenAPI helpers: every error is documented as ``application/problem+json``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import Field

from lovedcrm.core.schemas import Out


class Problem(Out):
    """An RFC 9457 problem (``application/problem+json``) with a stable ``code``."""

    type: str = Field(examples=["https://lovedcrm.dev/problems/lead_not_found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["No lead with that id."])
    code: str = Field(examples=["lead_not_found"])
    instance: str | None = None
    request_id: str | None = None


_PROBLEM_DESCRIPTIONS = {
    400: "Bad request (for example an invalid cursor)",
    401: "Not authenticated",
    403: "Missing permission (the problem names it)",
    404: "Not found (or not visible to you)",
    409: "Conflict with the current state",
    422: "Invalid fields (the problem lists them in `errors`)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, all ``application/problem+json``."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {"application/problem+json": {"schema": ref}},
        }
        for status in statuses
    }


# The error statuses every authenticated route may answer.
AUTH_ERRORS = (401, 403)


class FieldError(Out):
    field: str = Field(examples=["email"])
    message: str = Field(examples=["value is not a valid email address"])
    type: str | None = None


class ValidationProblem(Problem):
    errors: list[FieldError] = Field(default_factory=list)


def install_problem_openapi(app: FastAPI) -> None:
    """Document FastAPI's automatic 422 as the problem+json the API really returns (with the
    list of field errors), instead of its default ``HTTPValidationError`` JSON."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, FieldError, ValidationProblem):
            components[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        ref = {"$ref": "#/components/schemas/ValidationProblem"}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                response = operation.get("responses", {}).get("422")
                if response is not None:
                    response["content"] = {"application/problem+json": {"schema": ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
