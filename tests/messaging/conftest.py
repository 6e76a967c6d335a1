"""Fixtures for the messaging tests (shared helpers are in `tests/factories.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for a provider adapter talking to a fake server."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client
