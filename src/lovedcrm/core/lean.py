"""Routes that answer their common requests without FastAPI's per-request solving.

For each request FastAPI walks the route's dependency tree and validates every declared
query parameter through pydantic (a list of leads declares fourteen): on this kind of
machine that costs more than the database's part of the answer. A hot route can register a
*lean* handler (:func:`lean`): it reads the few parameters of the common request itself and
answers, or returns None for anything else (a parameter it does not read, a value it does
not parse exactly as FastAPI would), and the route's ordinary handler answers instead, with
its validation, its errors and its documentation. So the lean handler changes how fast an
answer comes, never what it is; ``tests/core/test_lean.py`` compares the two.

A lean handler authenticates with the same functions as the dependencies
(``core.deps.require_request``) inside the same unit of work (``core.deps.unit_of_work``),
and errors it raises are answered by the same exception handlers. See
``docs/decisions/0014-lean-hot-reads.md``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

LeanHandler = Callable[[Request], Awaitable[Response | None]]
_LEAN = "__lovedcrm_lean__"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Model = TypeVar("Model", bound=BaseModel)


def lean(handler: LeanHandler) -> Callable[[Endpoint], Endpoint]:
    """Give an endpoint of a :class:`LeanRoute` router a lean handler (see the module's doc).
    Put it under the route's decorator."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LEAN, handler)
        return endpoint

    return mark


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose endpoint's lean handler, if any, is asked first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        handler: LeanHandler | None = getattr(self.endpoint, _LEAN, None)
        if handler is None:
            return full

        async def answer(request: Request) -> Response:
            response = await handler(request)
            return response if response is not None else await full(request)

        return answer


def single_values(request: Request, known: frozenset[str]) -> dict[str, str] | None:
    """The query parameters named in ``known`` that the request gives, each once and not
    empty; None when one is repeated or empty (FastAPI's rules for those are left to it).
    Other parameters are ignored, as FastAPI ignores them."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in known:
            continue
        if name in values or value == "":
            return None
        values[name] = value
    return values


async def json_body(request: Request, model: type[Model]) -> Model | None:
    """The request's body as ``model``, read as FastAPI reads a body parameter (the body's
    JSON, ``json.loads``, validated in Python mode); None when it is not plainly JSON (no
    ``Content-Type: application/json`` exactly, not UTF-8 JSON) or not valid, so that FastAPI
    answers with its own error. The body stays cached on the request for FastAPI."""
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        return model.model_validate(json.loads(await request.body()))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
