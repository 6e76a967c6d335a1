"""Every dependency of every route is a coroutine (or an async generator): FastAPI runs a plain
function dependency in its thread pool, a thread hand-off on every request for what is most
often an attribute read (it cost about 4 % of a request's time on the API)."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts


def _sync_dependencies(dependant: Dependant, found: set[str]) -> None:
    for dep in dependant.dependencies:
        call = dep.call
        if call is not None:
            fn = call if inspect.isfunction(call) or inspect.ismethod(call) else call.__call__  # type: ignore[operator]
            if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
                found.add(
                    f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', call)}"
                )
        _sync_dependencies(dep, found)


def test_no_route_dependency_runs_in_the_thread_pool(app: Any) -> None:
    found: set[str] = set()
    routes = 0
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute) and ctx.dependant is not None:
            routes += 1
            _sync_dependencies(ctx.dependant, found)
    assert routes > 300
    assert found == set()
