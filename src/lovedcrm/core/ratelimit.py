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

Responses carry the IETF draft headers ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds to the end of the window); over the limit the answer is 429
``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Message, Receive, Scope, Send

from lovedcrm.core.errors import TooManyRequests
from lovedcrm.core.middleware import HttpMiddleware

WINDOW_SECONDS = 3600
# Share of requests that also delete windows older than two hours (no scheduler needed).
CLEANUP_PROBABILITY = 0.01
STATE_KEY = "ratelimit"

_HIT = text(
    """
    INSERT INTO rate_limit_counters AS c (bucket, window_start, count)
    VALUES (:bucket, to_timestamp(floor(EXTRACT(EPOCH FROM now()) / :w) * :w), 1)
    ON CONFLICT (bucket, window_start) DO UPDATE SET count = c.count + 1
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


async def hit(
    engine: AsyncEngine, bucket: str, limit: int, *, window_seconds: int = WINDOW_SECONDS
) -> RateLimitState:
    """Count one request in ``bucket``'s current window (an hour unless told) and return
    where it stands."""
    async with engine.connect() as conn:
        row = (await conn.execute(_HIT, {"bucket": bucket[:200], "w": window_seconds})).one()
        if random.random() < CLEANUP_PROBABILITY:  # noqa: S311 - not security-relevant
            await conn.execute(_CLEANUP)
    return RateLimitState(limit=limit, count=int(row.n), reset=max(1, int(row.reset)))


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
