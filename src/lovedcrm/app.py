"""create_app(): settings, database, middleware, routers."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from lovedcrm.auth.api_keys import UsageFlusher
from lovedcrm.auth.deps import SESSION_COOKIE
from lovedcrm.config import Settings, get_settings
from lovedcrm.core.errors import install_error_handlers
from lovedcrm.core.idempotency import IdempotencyMiddleware
from lovedcrm.core.logging import configure_logging
from lovedcrm.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from lovedcrm.core.openapi import install_problem_openapi
from lovedcrm.core.ratelimit import RateLimitHeadersMiddleware
from lovedcrm.db.engine import Database, create_database

API_DESCRIPTION = """
Loved CRM's JSON API. Authenticate with `Authorization: Bearer <access token>` from
`POST /api/v1/auth/login`, or `Authorization: Bearer <API key>` (`lcrm_…`, from
`/api/v1/api-keys`). Every error is `application/problem+json` (RFC 9457) with a stable
`code`. Responses carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; over
the limit the answer is 429 with `Retry-After`. A POST with an `Idempotency-Key` header,
retried with the same key and body, returns the first response (`Idempotent-Replayed: true`)
and creates nothing new.
"""


# Lead import uploads (API and web page) get settings.import_max_bytes instead.
IMPORT_UPLOAD_PATHS = ("/api/v1/imports", "/leads/import")

# Each module exposes ``router``; one line per module (HTML pages last).
ROUTER_MODULES = [
    # First: providers post here at high rates, and routes are matched in order.
    "lovedcrm.messaging.webhook_ingest",
    "lovedcrm.core.health",
    "lovedcrm.auth.api",
    "lovedcrm.auth.api_keys_api",
    "lovedcrm.organizations.api",
    "lovedcrm.leads.import_api",  # before leads.api: /leads/export.csv is not a {lead_id}
    "lovedcrm.leads.api",
    "lovedcrm.leads.dedup_api",
    "lovedcrm.leads.activities_api",
    "lovedcrm.pipeline.api",
    "lovedcrm.pipeline.board_api",
    "lovedcrm.core.live",
    "lovedcrm.messaging.templates_api",
    "lovedcrm.messaging.whatsapp_api",
    "lovedcrm.jobs.api",
    "lovedcrm.webhooks.api",
    "lovedcrm.web.settings_views",
    "lovedcrm.web.whatsapp_views",
    "lovedcrm.web.templates_views",
    "lovedcrm.web.board_views",
    "lovedcrm.web.leads_views",
    "lovedcrm.web.inbox_views",
    "lovedcrm.web.views",
]


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "db", None) is None:
            app.state.db = create_database(settings)
        worker, worker_task = None, None
        if settings.embedded_worker:
            from lovedcrm.jobs.engine import Worker

            worker = Worker(
                app.state.db, settings, concurrency=settings.embedded_worker_concurrency
            )
            worker_task = asyncio.create_task(worker.run())
        usage = UsageFlusher(app.state.db, settings.api_key_usage_flush_seconds)
        usage.start()
        yield
        hub = getattr(app.state, "live_hub", None)
        if hub is not None:  # the live-events listener, started by the first stream
            await hub.stop()
        await usage.stop()  # the last API key usage counts
        if worker is not None and worker_task is not None:
            worker.stop()
            await worker_task
        await app.state.db.dispose()

    app = FastAPI(
        title="Loved CRM API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = database
    install_error_handlers(app)
    install_problem_openapi(app)
    # Innermost first: RateLimit-* headers, then Idempotency-Key replay (inside the body limit).
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(IdempotencyMiddleware, session_cookie=SESSION_COOKIE)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={p: settings.import_max_bytes for p in IMPORT_UPLOAD_PATHS},
    )
    app.add_middleware(RequestContextMiddleware)

    for module in ROUTER_MODULES:
        app.include_router(importlib.import_module(module).router)
    static = Path(__file__).parent / "web" / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
