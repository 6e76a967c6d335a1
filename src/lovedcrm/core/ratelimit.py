"""Per-credential rate limits shared by every server process.

Fixed one-hour windows counted in the UNLOGGED ``rate_limit_counters`` table: one
``INSERT … ON CONFLICT DO UPDATE … RETURNING count`` per request, so every process (and
every server) sees the same count without any coordination but the database's row lock.
An UNLOGGED table skips the WAL: counters are lost on a crash, which only forgives the
current hour.

The increment runs on its own short AUTOCOMMIT connection, not in the request's
transaction: that transaction rolls back whenever the request fails (a 4xx raised by a
service), and a refused request must still count, or a client could hammer an endpoint
with invalid input for free. It uses the database's small side pool (``Database.side_engine``),
never the main pool the request already holds a connection of: that would deadlock when
every pooled connection belongs to a request waiting for a second one.

A busy credential would make that one counter row the hottest lock in the database, and cost
every request a second connection. So authentication takes *leases*: a process adds up to
``LEASE_MAX`` requests to the counter at once and spends them locally, one per request, until
the lease is used up or the window ends. Each process's leased tokens are a range of the
shared count of its own, so no more than ``limit`` requests are ever admitted however many
processes run; a lease takes at most ``1/LEASE_SHARE`` of what the window has left, so near the
limit leases shrink to a single request and the count is exact. The cost: tokens one process
leased and did not spend by the end of the window are counted although unused, so a
credential may be refused a few requests early, and another process's ``RateLimit-Remaining``
can run a few requests behind. The first request of a credential in a process, and every
other caller (the WhatsApp send limiter), takes one token at a time. While one request of a
process takes the next lease, the others of the same credential wait for it instead of each
taking a lease (and a side connection) of its own.

Responses carry the IETF draft headers ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds to the end of the window); over the limit the answer is 429
``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import weakref
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message, Receive, Scope, Send

from lovedcrm.core.errors import TooManyRequests
from lovedcrm.core.middleware import HttpMiddleware

WINDOW_SECONDS = 3600
# Share of requests that also delete windows older than two hours (no scheduler needed).
CLEANUP_PROBABILITY = 0.01
STATE_KEY = "ratelimit"
LEASE_MAX = 32
LEASE_SHARE = 8

_HIT = text(
    """
    INSERT INTO rate_limit_counters AS c (bucket, window_start, count)
    VALUES (:bucket, to_timestamp(floor(EXTRACT(EPOCH FROM now()) / :w) * :w), :n)
    ON CONFLICT (bucket, window_start) DO UPDATE SET count = c.count + :n
    RETURNING c.count AS n,
              CEIL(EXTRACT(EPOCH FROM (c.window_start + make_interval(secs => :w) - now())))::int
                  AS reset
    """
)
_CLEANUP = text("DELETE FROM rate_limit_counters WHERE window_start < now() - interval '2 hours'")


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    count: int
    reset: int  # seconds until the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


@dataclass
class _Lease:
    count: int  # the window's shared count once this lease was added to it
    left: int  # tokens of the lease not spent yet (the last ones of ``count``)
    ends: float  # time.monotonic() at which the window ends


# Per database (engine) and bucket: the lease this process holds.
_leases: weakref.WeakKeyDictionary[Engine, dict[str, _Lease]] = weakref.WeakKeyDictionary()
# Per database and bucket: the lease being taken now, which other requests wait for.
_refills: weakref.WeakKeyDictionary[Engine, dict[str, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


async def hit(
    engine: AsyncEngine,
    bucket: str,
    limit: int,
    *,
    window_seconds: int = WINDOW_SECONDS,
    lease: bool = False,
) -> RateLimitState:
    """Count one request in ``bucket``'s current window (an hour unless told) and return
    where it stands. With ``lease``, from this process's lease when it holds one."""
    bucket = bucket[:200]
    leases = _leases.setdefault(engine.sync_engine, {}) if lease else {}
    refills = _refills.setdefault(engine.sync_engine, {}) if lease else {}
    while True:
        # The window's end is the database's (its clock decides windows); a lease only needs
        # to know how long it has left, which a monotonic clock measures.
        started = time.monotonic()
        held = leases.get(bucket)
        if held is not None and started < held.ends:
            if held.left > 0:
                held.left -= 1
                count = held.count - held.left
                return RateLimitState(limit, count, reset=max(1, math.ceil(held.ends - started)))
            size = min(LEASE_MAX, max(1, (limit - held.count) // LEASE_SHARE))
        else:
            size = 1
        pending = refills.get(bucket)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            break
        # Another request of this process is taking the next lease: spend from it rather
        # than every waiting request taking one of its own (and a side connection each).
        await asyncio.wait([pending])
    refill = asyncio.get_running_loop().create_future() if lease else None
    if refill is not None:
        refills[bucket] = refill
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(_HIT, {"bucket": bucket, "w": window_seconds, "n": size})
            ).one()
            if random.random() < CLEANUP_PROBABILITY:  # noqa: S311 - not security-relevant
                await conn.execute(_CLEANUP)
        reset = max(1, int(row.reset))
        if lease:
            leases[bucket] = _Lease(int(row.n), size - 1, started + reset)
    finally:
        if refill is not None:
            refill.set_result(None)
            if refills.get(bucket) is refill:
                del refills[bucket]
    return RateLimitState(limit=limit, count=int(row.n) - (size - 1), reset=reset)


def enforce(state: RateLimitState) -> None:
    """429 ``rate_limited`` with ``Retry-After`` when the window's budget is spent."""
    if state.exceeded:
        raise TooManyRequests(
            f"Rate limit of {state.limit} requests per hour exceeded. "
            f"Try again in {state.reset} seconds.",
            code="rate_limited",
            headers={"Retry-After": str(math.ceil(state.reset))},
            extra={"limit": state.limit, "retry_after": state.reset},
        )


class RateLimitHeadersMiddleware(HttpMiddleware):
    """Adds the RateLimit-* headers of the request's principal (left in ``request.state``
    by authentication) to its response, error responses included."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The same dict backs ``request.state`` for every Request made from this scope.
        state: dict[str, object] = scope.setdefault("state", {})

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                rl = state.get(STATE_KEY)
                if isinstance(rl, RateLimitState):
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra = [
                        (k.lower().encode(), v.encode())
                        for k, v in rl.headers().items()
                        if k.lower().encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, _send)
