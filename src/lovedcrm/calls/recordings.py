"""Serving a stored call recording (the API and the lead page's player share it)."""

from __future__ import annotations

import asyncio

from fastapi import Response
from fastapi.responses import FileResponse

from lovedcrm.config import Settings
from lovedcrm.core.errors import NotFound
from lovedcrm.core.storage import FileMissing, get_storage


async def response(settings: Settings, key: str) -> Response:
    media = "audio/mpeg" if key.endswith(".mp3") else "audio/wav"
    storage = get_storage(settings)
    path = storage.local_path(key)
    headers = {"Cache-Control": "private, max-age=3600"}
    if path is not None:
        return FileResponse(path, media_type=media, headers=headers)
    try:
        data = await asyncio.to_thread(storage.read, key)
    except FileMissing as exc:
        raise NotFound("This call has no recording.", code="recording_not_found") from exc
    return Response(data, media_type=media, headers=headers)
