"""WhatsApp provider adapters (``cloud`` for Meta's Cloud API, ``waha`` for the WAHA bridge)
and the few HTTP helpers they share. The interface lives in ``base``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from lovedcrm.core.http import read_at_most
from lovedcrm.core.outbound import OutboundRefused
from lovedcrm.core.phones import sender_e164
from lovedcrm.messaging.providers.base import MediaTooLarge, ProviderError

# Error bodies are only read to extract a message; never buffer a large one.
_ERROR_BODY_LIMIT = 64 * 1024


def digits(value: str) -> str:
    """The ASCII digits of ``value`` (other scripts' digits are not a phone's)."""
    return re.sub(r"[^0-9]", "", value)


def e164(value: str) -> str:
    """``"5511987654321"`` or ``"+55 11 98765-4321"`` → ``"+5511987654321"`` (a number we
    send to: already E.164 in our database)."""
    return "+" + digits(value)


def sender(value: str | None) -> str | None:
    """A number as a provider reports it (``"5511987654321"``): E.164, or None when it is
    not a phone number (``"abc"``, ``"+"``, 40 digits, other scripts' digits)."""
    return sender_e164(value)


def header_value(value: str, what: str) -> str:
    """``value`` if it can go into an HTTP header; a stored secret that cannot (saved before
    secrets were checked) is a ``ProviderError`` naming it, not a crash."""
    if value.isascii() and value.isprintable():
        return value
    raise ProviderError(
        "invalid_secret",
        f"The {what} contains characters that cannot be sent: type it again in "
        "Settings → WhatsApp.",
    )


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
    if isinstance(exc, OutboundRefused):
        # Retrying cannot help: the address (or where it redirects) is not allowed.
        return ProviderError(
            "address_refused",
            f"{service[:1].upper()}{service[1:]} was not called: {exc}",
            details=str(exc),
        )
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
    except httpx.InvalidURL as exc:
        raise ProviderError(
            "bad_response", f"{service} gave a media address that is not a URL: {exc}"
        ) from exc
    except httpx.HTTPError as exc:
        raise network_error(exc, service) from exc
