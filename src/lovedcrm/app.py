"""create_app(): settings, database, middleware, routers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from lovedcrm import wiring  # noqa: F401 - registers every job handler and event subscriber
from lovedcrm.assistant import (
    agent_api,
    agent_pages,
    ai_settings_api,
    ai_settings_pages,
    suggestions_api,
    suggestions_pages,
)
from lovedcrm.assistant import api as assistant_api
from lovedcrm.assistant import pages as assistant_pages
from lovedcrm.auth import (
    account_api,
    account_pages,
    api_keys_api,
    api_keys_pages,
    team_api,
    team_pages,
)
from lovedcrm.auth import api as auth_api
from lovedcrm.auth import pages as auth_pages
from lovedcrm.auth.api_keys import UsageFlusher
from lovedcrm.auth.authentication import authenticate_request
from lovedcrm.auth.frame import frame_source
from lovedcrm.billing import api as billing_api
from lovedcrm.billing import pages as billing_pages
from lovedcrm.billing import webhook as billing_webhook
from lovedcrm.calendar import api as calendar_api
from lovedcrm.calendar import pages as calendar_pages
from lovedcrm.calls import api as calls_api
from lovedcrm.calls import callbacks as calls_callbacks
from lovedcrm.calls import costs_api, costs_pages, switching_api, switching_pages
from lovedcrm.calls import pages as calls_pages
from lovedcrm.config import Settings, get_settings
from lovedcrm.core import health, live, metrics
from lovedcrm.core.deps import SESSION_COOKIE
from lovedcrm.core.errors import install_error_handlers
from lovedcrm.core.idempotency import IdempotencyMiddleware
from lovedcrm.core.logging import configure_logging
from lovedcrm.core.metrics import MetricsMiddleware
from lovedcrm.core.middleware import (
    REDOC_CONTENT_SECURITY_POLICY,
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from lovedcrm.core.openapi import docs_router, install_problem_openapi
from lovedcrm.core.process import die_with_supervisor, settle_heap
from lovedcrm.core.ratelimit import RateLimitHeadersMiddleware
from lovedcrm.core.routing import install_routing_rules
from lovedcrm.core.tracing import tracer_provider
from lovedcrm.db.engine import Database, create_database
from lovedcrm.jobs import api as jobs_api
from lovedcrm.jobs import pages as jobs_pages
from lovedcrm.jobs.engine import Worker
from lovedcrm.leads import activities_api, dedup_api
from lovedcrm.leads import api as leads_api
from lovedcrm.leads import import_api as leads_import_api
from lovedcrm.leads import pages as leads_pages
from lovedcrm.marketing import api as marketing_api
from lovedcrm.marketing import intake as marketing_intake
from lovedcrm.marketing import pages as marketing_pages
from lovedcrm.marketing import tracking as marketing_tracking
from lovedcrm.messaging import templates_api, whatsapp_api
from lovedcrm.messaging import webhook_ingest as whatsapp_webhooks
from lovedcrm.messaging.pages import inbox as inbox_pages
from lovedcrm.messaging.pages import templates as templates_pages
from lovedcrm.messaging.pages import whatsapp as whatsapp_pages
from lovedcrm.monitoring import pages as monitoring_pages
from lovedcrm.notifications import api as notifications_api
from lovedcrm.notifications import pages as notifications_pages
from lovedcrm.organizations import api as organizations_api
from lovedcrm.organizations import pages as organizations_pages
from lovedcrm.pipeline import api as pipeline_api
from lovedcrm.pipeline import board_api
from lovedcrm.pipeline import pages as pipeline_pages
from lovedcrm.privacy import api as privacy_api
from lovedcrm.privacy import pages as privacy_pages
from lovedcrm.reports import api as reports_api
from lovedcrm.reports import forecast_api, forecast_pages
from lovedcrm.reports import pages as reports_pages
from lovedcrm.scoring import api as scoring_api
from lovedcrm.scoring import pages as scoring_pages
from lovedcrm.web import assets, preferences
from lovedcrm.web.problems import localize_problem
from lovedcrm.webhooks import api as webhooks_api
from lovedcrm.webhooks import pages as webhooks_pages

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

# Every router, in matching order (HTML pages last). Providers' webhooks come first: they
# are posted at high rates and routes are matched in order.
ROUTERS: tuple[APIRouter, ...] = (
    whatsapp_webhooks.router,
    calls_callbacks.router,
    marketing_intake.router,  # lead-ads webhooks
    marketing_tracking.router,  # /m/...: opens, clicks, unsubscribes
    billing_webhook.router,  # before the billing API: Stripe's signed events
    health.router,
    metrics.router,  # /metrics (Prometheus; a token or a private address)
    docs_router,  # /docs and /redoc, from local files
    # The leads' API, the most requested, before the rest of the API.
    leads_import_api.router,  # before leads_api: /leads/export.csv is not a {lead_id}
    leads_api.router,
    dedup_api.router,
    activities_api.router,
    auth_api.router,
    account_api.router,
    api_keys_api.router,
    team_api.router,
    organizations_api.router,
    scoring_api.router,
    forecast_api.router,  # before the reports' API: /reports/forecast is not a report name
    reports_api.router,
    pipeline_api.router,
    board_api.router,
    live.router,
    templates_api.router,
    whatsapp_api.router,
    switching_api.router,  # before the calls' API: /calls/migrations is not a call id
    costs_api.router,
    calls_api.router,
    assistant_api.router,
    ai_settings_api.router,
    agent_api.router,
    suggestions_api.router,
    jobs_api.router,
    webhooks_api.router,
    notifications_api.router,
    billing_api.router,
    marketing_api.router,
    privacy_api.router,  # /api/v1/leads/{id}/consents, /privacy/..., /audit
    organizations_pages.router,
    preferences.router,
    assets.router,
    whatsapp_pages.router,
    templates_pages.router,
    pipeline_pages.router,
    scoring_pages.router,  # before leads_pages: /leads/{id}/score-panel
    calendar_api.router,
    calendar_pages.router,  # before leads_pages: /leads/{id}/meetings-panel
    calls_pages.router,  # before leads_pages: /leads/{id}/calls-panel, /leads/{id}/call
    privacy_pages.router,  # before leads_pages: /leads/{id}/privacy-panel, /consents
    leads_pages.router,
    assistant_pages.router,
    ai_settings_pages.router,
    suggestions_pages.router,  # before inbox_pages: /inbox/{id}/suggestions
    agent_pages.router,  # before inbox_pages: /inbox/{id}/agent
    inbox_pages.router,
    auth_pages.router,
    account_pages.router,
    team_pages.router,
    api_keys_pages.router,
    webhooks_pages.router,
    jobs_pages.router,
    notifications_pages.router,
    billing_pages.router,
    marketing_pages.router,
    monitoring_pages.router,  # /settings/system
    switching_pages.router,  # before the calls' pages: /settings/telephony/switching
    costs_pages.router,  # before the reports' pages
    forecast_pages.router,  # before the reports' pages
    reports_pages.router,  # last: the home page `/`
)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    die_with_supervisor()  # a worker of `serve --workers N` ends with its supervisor

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "db", None) is None:
            app.state.db = create_database(settings)
        worker, worker_task = None, None
        if settings.embedded_worker:
            worker = Worker(
                app.state.db, settings, concurrency=settings.embedded_worker_concurrency
            )
            worker_task = asyncio.create_task(worker.run())
        usage = UsageFlusher(app.state.db, settings.api_key_usage_flush_seconds)
        usage.start()
        settle_heap()
        yield
        hub = getattr(app.state, "live_hub", None)
        if hub is not None:  # the live-events listener, started by the first stream
            await hub.stop()
        await usage.stop()  # the last API key usage counts
        if worker is not None and worker_task is not None:
            worker.stop()
            await worker_task
        await app.state.db.dispose()
        if app.state.tracer_provider is not None:
            app.state.tracer_provider.shutdown()  # the last spans are sent

    app = FastAPI(
        title="Loved CRM API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # core.openapi.docs_router serves /docs and /redoc offline
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.authenticator = authenticate_request
    app.state.frame_source = frame_source
    install_error_handlers(app, localize_problem)
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
    app.state.tracer_provider = tracer_provider(settings)
    app.add_middleware(
        MetricsMiddleware,
        tracer=app.state.tracer_provider.get_tracer("lovedcrm.http")
        if app.state.tracer_provider is not None
        else None,
    )
    # Outermost: every answer, the 413 and the error pages too, carries the security headers.
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.cookie_secure,
        path_policies={"/redoc": REDOC_CONTENT_SECURITY_POLICY},
    )

    for router in ROUTERS:
        app.include_router(router)
    install_routing_rules(app)  # UUID ids in API paths; 405 with the full Allow
    static = Path(__file__).parent / "web" / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
