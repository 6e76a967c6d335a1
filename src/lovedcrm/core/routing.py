"""Method Not Allowed, answered for the whole path (installed by ``create_app``):

- a 405 lists in ``Allow`` every method the path supports, across all its routes (the
  router names only the methods of the first route whose path matched);
- a path that two routes share in shape -- ``/api/v1/leads/export.csv`` is also
  ``/api/v1/leads/{lead_id}`` -- is what it really is: ``PATCH /api/v1/leads/export.csv``
  is a 405 (the export is only read), not a 422 for a lead id that is not a UUID.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _ids_are_valid(context: Any, path_params: dict[str, Any]) -> bool:
    """Whether the path's values fit the route's UUID parameters (a route for
    ``/leads/{lead_id}`` is not a route for ``/leads/export.csv``)."""
    dependant = getattr(context, "dependant", None)
    for param in getattr(dependant, "path_params", None) or []:
        if param.field_info.annotation is uuid.UUID and param.name in path_params:
            try:
                uuid.UUID(str(path_params[param.name]))
            except ValueError:
                return False
    return True


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers for this request's path."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route_methods = context.methods
        if not route_methods:
            continue
        match, child_scope = context.matches(request.scope)
        if match is not Match.NONE and _ids_are_valid(context, child_scope.get("path_params", {})):
            methods |= set(route_methods)
    return sorted(methods, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))


async def _answer(handler: Any, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


def install_routing_rules(app: FastAPI) -> None:
    answer_http = app.exception_handlers[HTTPException]
    answer_invalid = app.exception_handlers[RequestValidationError]

    async def not_allowed(request: Request, allow: list[str]) -> Response:
        exc = HTTPException(405, headers={"Allow": ", ".join(allow)})
        return await _answer(answer_http, request, exc)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return await not_allowed(request, allowed_methods(app, request))

    async def invalid_request(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        # An id of the path is not a UUID: is the path another route's?
        if any(
            e.get("loc", ("",))[0] == "path" and e.get("type") == "uuid_parsing" for e in errors
        ):
            allow = allowed_methods(app, request)
            if allow and request.method not in allow:
                return await not_allowed(request, allow)
        return await _answer(answer_invalid, request, exc)

    app.add_exception_handler(405, method_not_allowed)
    app.add_exception_handler(RequestValidationError, invalid_request)
