"""The HTTP helpers the voice adapters share."""

from __future__ import annotations

import httpx

from lovedcrm.calls.providers.base import ProviderError
from lovedcrm.core.http import read_at_most
from lovedcrm.core.outbound import OutboundRefused

_ERROR_BODY_LIMIT = 64 * 1024


def network_error(exc: httpx.HTTPError, service: str) -> ProviderError:
    if isinstance(exc, OutboundRefused):
        return ProviderError(
            "address_refused", f"{service} was not called: {exc}", details=str(exc)
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(
            "network", f"{service} did not answer in time.", transient=True, details=str(exc)
        )
    return ProviderError(
        "network",
        f"Could not reach {service}.",
        transient=True,
        details=f"{type(exc).__name__}: {exc}",
    )


async def error_body(response: httpx.Response) -> bytes:
    return await read_at_most(response.aiter_bytes(), _ERROR_BODY_LIMIT)


async def fetch_limited(
    client: httpx.AsyncClient,
    url: str,
    *,
    service: str,
    max_bytes: int,
    auth: httpx.Auth | tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """GET ``url`` streaming; a body past ``max_bytes`` is refused."""
    try:
        async with client.stream("GET", url, auth=auth, headers=headers or {}) as response:
            if response.status_code >= 400:
                await error_body(response)
                raise ProviderError(
                    str(response.status_code),
                    f"{service} refused the recording download (HTTP {response.status_code}).",
                    transient=response.status_code >= 500 or response.status_code == 429,
                    http_status=response.status_code,
                )
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise ProviderError("too_large", "The recording is larger than the limit.")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.InvalidURL as exc:
        raise ProviderError(
            "bad_response", f"{service} gave a recording address that is not a URL."
        ) from exc
    except httpx.HTTPError as exc:
        raise network_error(exc, service) from exc
