"""``Stripe-Signature`` verification: ``t=<unix>,v1=<hex>[,v1=<hex>…]``; expected
hex(HMAC-SHA256(endpoint secret, f"{t}.{payload}")); any ``v1`` may match (secret rotation),
compared in constant time; a ``t`` further than the tolerance from now (the injectable
clock) is refused, so a captured delivery cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime


class BadSignature(Exception):
    pass


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    header: str | None, payload: bytes, secret: str, *, now: datetime, tolerance: int
) -> int:
    """The header's timestamp when one ``v1`` matches and it is fresh; else ``BadSignature``."""
    if not header or len(header) > 4096:
        raise BadSignature("missing Stripe-Signature")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise BadSignature("no timestamp or no v1 signature")
    if abs(now.timestamp() - timestamp) > tolerance:
        raise BadSignature("timestamp outside the tolerance")
    expected = sign(secret, timestamp, payload)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise BadSignature("no signature matches")
    return timestamp
