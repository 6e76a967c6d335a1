"""Cross-cutting tables of the public API (not in the spec; see docs/schema-deviations.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, PrimaryKeyConstraint, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import Base, now_not_null


class IdempotencyKey(Base):
    """A POST's Idempotency-Key and the first response it got. Keyed by a hash of the
    credential and the key, so only the same caller can replay it (no tenant column)."""

    __tablename__ = "idempotency_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = now_not_null()
    expires_at: Mapped[datetime] = mapped_column()


Index("ix_idempotency_keys_expires_at", IdempotencyKey.expires_at)


class RateLimitCounter(Base):
    """Fixed-window request counters shared by every server process (UNLOGGED table)."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (
        PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_limit_counters"),
        {"prefixes": ["UNLOGGED"]},
    )

    bucket: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[datetime] = mapped_column()
    count: Mapped[int] = mapped_column(Integer, server_default=text("0"))


Index("ix_rate_limit_counters_window", RateLimitCounter.window_start)
