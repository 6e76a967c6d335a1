"""create_app(): settings, database, middleware, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from lovedcrm.config import Settings, get_settings
from lovedcrm.core.errors import install_error_handlers
from lovedcrm.core.logging import configure_logging
from lovedcrm.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from lovedcrm.db.engine import Database, create_database

API_DESCRIPTION = """
Loved CRM's JSON API. Authenticate with `Authorization: Bearer <access token>` from
`POST /api/v1/auth/login`. Every error is `application/problem+json` (RFC 9457) with a stable
`code`.
"""


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "db", None) is None:
            app.state.db = create_database(settings)
        yield
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
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)

    from lovedcrm.auth.api import router as auth_router
    from lovedcrm.core.health import router as health_router
    from lovedcrm.leads.api import router as leads_router
    from lovedcrm.organizations.api import router as org_router
    from lovedcrm.web.views import router as web_router

    for router in (health_router, auth_router, org_router, leads_router, web_router):
        app.include_router(router)
    static = Path(__file__).parent / "web" / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
