"""Errors as RFC 9457 problem details (``application/problem+json``) with a stable ``code``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lovedcrm.core.context import request_id_var

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """A failure the client can act on. Services raise these; handlers render them."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}
        self.extra = extra or {}


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "Validation failed"


class TooManyRequests(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal server error",
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
}


# Translates a problem body in place for the request's language: (request, body, contexts),
# where contexts holds pydantic's ``type`` and ``ctx`` of each entry of ``body["errors"]``
# (empty for service errors). Installed by the composition root (web.problems).
Localize = Callable[[Request, dict[str, Any], list[dict[str, Any]]], None]


def problem_body(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://lovedcrm.dev/problems/{code or _CODES.get(status, 'error')}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code or _CODES.get(status, "error"),
    }
    if instance:
        body["instance"] = instance
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return body


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem_body(status, detail, code=code, title=title, instance=instance, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _answer(
    request: Request,
    body: dict[str, Any],
    localize: Localize | None,
    *,
    headers: dict[str, str] | None = None,
    contexts: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    if localize is not None:
        localize(request, body, contexts or [])
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _contexts(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"type": e.get("type"), "ctx": e.get("ctx") or {}} for e in exc.errors()]


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        errors.append(
            {
                "field": ".".join(loc) or "body",
                "message": err.get("msg", ""),
                "type": err.get("type"),
            }
        )
    return errors


def install_error_handlers(app: FastAPI, localize: Localize | None = None) -> None:
    """Problem details for service errors, invalid requests and HTTP errors; ``localize``
    translates them for the request's language (English when it returns them unchanged)."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        body = problem_body(
            exc.status,
            exc.detail,
            code=exc.code,
            title=exc.title,
            instance=request.url.path,
            **exc.extra,
        )
        return _answer(request, body, localize, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        fields = ", ".join(e["field"] for e in errors)
        body = problem_body(
            422,
            f"The request has invalid fields: {fields}",
            code="validation_error",
            instance=request.url.path,
            errors=errors,
        )
        return _answer(request, body, localize, contexts=_contexts(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = (
            exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        )
        body = problem_body(exc.status_code, detail, instance=request.url.path)
        return _answer(request, body, localize, headers=dict(exc.headers) if exc.headers else None)
