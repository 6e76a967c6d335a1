"""Monitoring: ``/metrics`` in the Prometheus text format, and OpenTelemetry traces.

What is measured, and where the figures come from:

- per request (``MetricsMiddleware``): ``lovedcrm_http_requests_total`` and the latency
  histogram ``lovedcrm_http_request_duration_seconds`` labelled by method, ROUTE TEMPLATE
  (``/api/v1/leads/{lead_id}``, never the raw path: the label set stays bounded; an unmatched
  path is ``<unmatched>``) and status; ``lovedcrm_inbound_webhooks_total`` by provider (the
  ``/webhooks/<provider>/…`` routes); ``lovedcrm_sse_connections`` (open live streams).
- at scrape time, from the database (the same answer from any process):
  ``lovedcrm_job_queue_depth`` and ``lovedcrm_job_queue_oldest_seconds`` per job type
  (waiting: pending or retrying), ``lovedcrm_jobs`` per type and status (``failed`` = job
  failures), ``lovedcrm_webhook_delivery_failures`` (failed outgoing deliveries), through the
  aggregate-only SECURITY DEFINER functions of migration 0021.
- ``lovedcrm_db_pool_*``: this process's connection pool.

Several processes (``lovedcrm serve --workers N``): the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before starting the workers, so the
per-request figures are prometheus-client's multiprocess files, summed over the workers by
whichever one answers the scrape; the database figures do not need it. With one process the
figures live in memory.

``/metrics`` needs ``Authorization: Bearer <LOVEDCRM_METRICS_TOKEN>`` when the setting is
set, and otherwise answers only loopback and private addresses (401 for anyone else).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from opentelemetry.trace import SpanKind
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lovedcrm.core.clock import now

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "lovedcrm_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "lovedcrm_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INBOUND_WEBHOOKS = Counter(
    "lovedcrm_inbound_webhooks",
    "Webhooks received from providers, by provider and status.",
    ["provider", "status"],
    registry=REGISTRY,
)
SSE_CONNECTIONS = Gauge(
    "lovedcrm_sse_connections",
    "Open live-event (Server-Sent Events) streams.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded cardinality), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request by route template; a span per request when
    tracing is configured (``core.tracing``)."""

    def __init__(self, app: ASGIApp, tracer: Any = None) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        span = None
        if self.tracer is not None:
            span = self.tracer.start_span(f"{scope['method']} request", kind=SpanKind.SERVER)
        try:
            await self.app(scope, receive, _send)
        finally:
            route = route_template(scope)
            method = str(scope["method"])
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
            if route.startswith("/webhooks/") and method == "POST":
                provider = route.split("/")[2] or "unknown"
                INBOUND_WEBHOOKS.labels(provider, str(status)).inc()
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                span.end()


# --- the scrape --------------------------------------------------------------------------


class _Snapshot:
    """A collector over what was gathered before the (synchronous) text is generated."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def database_families(request: Request) -> list[Metric]:
    depth = GaugeMetricFamily(
        "lovedcrm_job_queue_depth", "Jobs waiting (pending or retrying), by type.", labels=["type"]
    )
    oldest = GaugeMetricFamily(
        "lovedcrm_job_queue_oldest_seconds",
        "Age of the oldest waiting job, by type.",
        labels=["type"],
    )
    jobs = GaugeMetricFamily(
        "lovedcrm_jobs", "Jobs in the queue table, by type and status.", labels=["type", "status"]
    )
    failures = GaugeMetricFamily(
        "lovedcrm_webhook_delivery_failures", "Failed outgoing webhook deliveries (attempts)."
    )
    families: list[Metric] = [depth, oldest, jobs, failures]
    database = getattr(request.app.state, "db", None)
    if database is None:
        return families
    async with database.sessionmaker() as session:
        rows = (await session.execute(text("SELECT * FROM lovedcrm_queue_figures()"))).all()
        failed = (await session.execute(text("SELECT lovedcrm_webhook_failures()"))).scalar()
    at = now()
    waiting: dict[str, tuple[int, float]] = {}
    for job_type, status, n, first in rows:
        jobs.add_metric([job_type, status], float(n))
        if status in ("pending", "retrying"):
            count, age = waiting.get(job_type, (0, 0.0))
            seconds = max(0.0, (at - first).total_seconds()) if first is not None else 0.0
            waiting[job_type] = (count + int(n), max(age, seconds))
    for job_type, (count, age) in sorted(waiting.items()):
        depth.add_metric([job_type], float(count))
        oldest.add_metric([job_type], age)
    failures.add_metric([], float(failed or 0))
    pool = database.app_engine.pool
    in_use = GaugeMetricFamily(
        "lovedcrm_db_pool_checked_out", "Connections of this process's pool in use."
    )
    size = GaugeMetricFamily("lovedcrm_db_pool_size", "This process's pool size.")
    in_use.add_metric([], float(getattr(pool, "checkedout", lambda: 0)()))
    size.add_metric([], float(getattr(pool, "size", lambda: 0)()))
    return [*families, in_use, size]


def _process_families() -> list[Metric]:
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return list(merged.collect())
    return list(REGISTRY.collect())


def allowed(request: Request) -> bool:
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        return hmac.compare_digest(given.encode(), expected.encode())
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


router = APIRouter(tags=["monitoring"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if not allowed(request):
        return PlainTextResponse(
            "401 Unauthorized: /metrics needs its bearer token.\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([*_process_families(), *await database_families(request)]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
