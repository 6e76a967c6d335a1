"""OpenAPI: every error documented as ``application/problem+json``, on every operation that
can answer it; and the API's documentation pages (/docs, /redoc) from local files only.

A route declares what only it can answer (``responses=problem_responses(404, 409)``);
:func:`install_problem_openapi` adds, centrally, what any operation of a kind can answer:

- with a credential (a ``security`` requirement): 401, 403 and 429 (the hourly budget);
- with a body: 400 (a body that cannot be parsed, e.g. broken multipart), 413 (too large),
  422 (invalid fields);
- with parameters: 422; with path parameters: 404;
- a POST under ``/api/v1``: 400 and 409 too (a malformed or in-flight ``Idempotency-Key``).
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import Field

from lovedcrm.core.schemas import Out

PROBLEM_JSON = "application/problem+json"


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
    400: "Bad request: a body that cannot be parsed, an invalid cursor or Idempotency-Key",
    401: "Not authenticated (no credential, or an expired or revoked one)",
    403: "Missing permission (the problem names it)",
    404: "Not found (or not visible to you)",
    409: "Conflict with the current state (or the same Idempotency-Key still in progress)",
    413: "The body is too large",
    422: "Invalid fields (the problem lists them in `errors`)",
    429: "Too many requests: the hourly budget is spent (see Retry-After)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, all ``application/problem+json``."""
    return {
        status: {
            "model": Problem,
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
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


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_response(status: int) -> dict[str, Any]:
    schema = _ref("ValidationProblem" if status == 422 else "Problem")
    response: dict[str, Any] = {
        "description": _PROBLEM_DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": schema}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until the budget is renewed",
                "schema": {"type": "integer"},
            }
        }
    return response


def common_errors(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer because of what it is (see the module)."""
    statuses: set[int] = set()
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if "requestBody" in operation:
        statuses |= {400, 413, 422}
    parameters = operation.get("parameters", [])
    if parameters:
        statuses.add(422)
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if method == "post" and path.startswith("/api/v1/"):
        statuses |= {400, 409}
    return statuses


def document_errors(schema: dict[str, Any]) -> None:
    """Give every operation the common error responses, each only as problem+json (what the
    app sends: never ``application/json`` for an error)."""
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status in common_errors(path, method, operation):
                responses.setdefault(str(status), _error_response(status))
            if "429" in responses:
                responses["429"].setdefault("headers", _error_response(429)["headers"])
            for status, response in responses.items():
                if status.startswith("4"):
                    name = "ValidationProblem" if status == "422" else "Problem"
                    response["content"] = {PROBLEM_JSON: {"schema": _ref(name)}}


def install_problem_openapi(app: FastAPI) -> None:
    """The app's OpenAPI document with every error documented (see the module)."""

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
        document_errors(schema)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- /docs and /redoc ----------------------------------------------------------------------
# Swagger UI and Redoc from static/vendor (npm packages pinned in package.json, copied by
# `make static`), started by static/api-docs.js: no CDN, and no inline script.

docs_router = APIRouter(include_in_schema=False)

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – Swagger UI</title>
<link rel="stylesheet" href="/static/vendor/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – ReDoc</title>
</head>
<body>
<redoc spec-url="{openapi_url}"></redoc>
<script src="/static/vendor/redoc.standalone.js"></script>
</body>
</html>
"""


def _page(request: Request, template: str) -> HTMLResponse:
    app = request.app
    return HTMLResponse(
        template.format(
            title=html.escape(app.title), openapi_url=html.escape(app.openapi_url or "")
        )
    )


@docs_router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, _SWAGGER_PAGE)


@docs_router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(request, _REDOC_PAGE)
