"""WhatsApp provider adapters (``cloud`` for Meta's Cloud API, ``waha`` for the WAHA bridge)
and the few HTTP helpers they share. The interface lives in ``base``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from lovedcrm.core.http import read_at_most
from lovedcrm.messaging.providers.base import MediaTooLarge, ProviderError

# Error bodies are only read to extract a message; never buffer a large one.
_ERROR_BODY_LIMIT = 64 * 1024


def digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def e164(value: str) -> str:
    """``"5511987654321"`` or ``"+55 11 98765-4321"`` → ``"+5511987654321"``."""
    return "+" + digits(value)


def epoch_to_datetime(value: Any, *, millis: bool = False) -> datetime:
    """Provider timestamps are epoch seconds (or ms) as int or text; a missing or garbled one
    falls back to now rather than dropping the event."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return datetime.now(UTC)
    if millis:
        seconds /= 1000
    return datetime.fromtimestamp(seconds, tz=UTC)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def network_error(exc: httpx.HTTPError, service: str) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        text = f"{service} did not answer in time; it will be retried."
    else:
        text = f"Could not reach {service}; it will be retried."
    return ProviderError("network", text, transient=True, details=f"{type(exc).__name__}: {exc}")


async def read_error_body(response: httpx.Response) -> bytes:
    return await read_at_most(response.aiter_bytes(), _ERROR_BODY_LIMIT)


async def fetch_limited(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    max_bytes: int,
    service: str,
    on_error: Callable[[httpx.Response, bytes], ProviderError],
) -> tuple[bytes, str | None]:
    """GET ``url`` streaming, and give up with ``MediaTooLarge`` as soon as the declared
    Content-Length or the bytes actually received pass ``max_bytes`` (a server may omit or
    understate the length, so the count is what decides)."""
    try:
        async with client.stream("GET", url, headers=dict(headers)) as response:
            if response.status_code >= 400:
                raise on_error(response, await read_error_body(response))
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise MediaTooLarge(max_bytes, int(declared))
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise MediaTooLarge(max_bytes)
                chunks.append(chunk)
            return b"".join(chunks), response.headers.get("content-type")
    except httpx.HTTPError as exc:
        raise network_error(exc, service) from exc
