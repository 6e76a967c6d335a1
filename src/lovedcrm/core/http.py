"""HTTP client plumbing shared by the provider adapters and the webhook sender."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def read_at_most(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The first ``limit`` bytes of a streamed body; stops reading once it has them, so a
    large body is never buffered."""
    kept: list[bytes] = []
    size = 0
    async for chunk in chunks:
        kept.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(kept)[:limit]
