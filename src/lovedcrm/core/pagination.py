"""Opaque keyset cursors: base64url of a small JSON list of the sort key values."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from lovedcrm.core.errors import AppError


class BadCursor(AppError):
    status, code, title = 400, "invalid_cursor", "Invalid cursor"


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("The cursor is not valid. Use the next_cursor of a previous page.") from exc
    if (
        not isinstance(values, list)
        or len(values) != size
        or not all(isinstance(v, str) for v in values)
    ):
        raise BadCursor("The cursor is not valid. Use the next_cursor of a previous page.")
    return values
