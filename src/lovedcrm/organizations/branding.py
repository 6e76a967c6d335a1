"""Branding: the organization's logo (the primary color is a plain setting).

A logo is PNG, JPEG or WebP, recognized by its first bytes (the file name and the declared
type are not trusted); SVG is refused, since it can carry scripts. It is stored under
``data_dir/uploads/<organization id>/logo.<ext>`` and its path kept in
``organizations.settings["logo"]``. Only members of the organization can fetch it.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.core.storage import write_atomically
from lovedcrm.organizations import service as org_service
from lovedcrm.organizations.models import Organization

MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class Logo:
    path: Path
    media_type: str


def sniff_image(data: bytes) -> str | None:
    """The extension of a PNG, JPEG or WebP image by its magic bytes; None otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def human_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    return f"{n // 1000} KB"


def _data_path(settings: Settings, relative: str) -> Path:
    return Path(settings.data_dir).resolve() / relative


async def save_logo(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    data: bytes,
) -> Organization:
    """Replace the organization's logo (permission ``settings:manage``; audited)."""
    principal.require("settings:manage")
    max_bytes = settings.logo_max_bytes
    if not data:
        raise ValidationFailed(
            "The file is empty. Choose a PNG, JPEG or WebP image.",
            code="logo_empty",
            extra={"errors": [{"field": "logo", "message": "is empty"}]},
        )
    if len(data) > max_bytes:
        raise ValidationFailed(
            f"The logo is too large: the limit is {human_size(max_bytes)}.",
            code="logo_too_large",
            extra={
                "limit_bytes": max_bytes,
                "errors": [{"field": "logo", "message": f"exceeds {human_size(max_bytes)}"}],
            },
        )
    ext = sniff_image(data)
    if ext is None:
        raise ValidationFailed(
            "The file is not a PNG, JPEG or WebP image.",
            code="logo_not_an_image",
            extra={"errors": [{"field": "logo", "message": "must be PNG, JPEG or WebP"}]},
        )
    org_id = principal.org()
    relative = f"uploads/{org_id}/logo.{ext}"
    folder = _data_path(settings, f"uploads/{org_id}")
    org = await org_service.update_organization(
        session, principal, name=None, settings={"logo": relative}
    )
    write_atomically(folder / f"logo.{ext}", data)
    # A logo of another format is now stale.
    for other in MEDIA_TYPES:
        if other != ext:
            with contextlib.suppress(FileNotFoundError):
                (folder / f"logo.{other}").unlink()
    return org


def _is_file(path: Path) -> bool:
    return path.is_file()


async def logo_for(session: AsyncSession, settings: Settings, organization_id: uuid.UUID) -> Logo:
    """The logo file of an organization; 404 when it has none. Whether the reader may see it
    (a member of that organization) is the caller's question (``auth.pages``)."""
    org = await session.get(Organization, organization_id)
    stored = (org.settings or {}).get("logo") if org is not None else None
    if org is None or not org_service.logo_path_valid(org.id, stored):
        raise NotFound("No logo for this organization.", code="logo_not_found")
    path = _data_path(settings, str(stored))
    if not _is_file(path):
        raise NotFound("No logo for this organization.", code="logo_not_found")
    return Logo(path=path, media_type=MEDIA_TYPES[path.suffix.lstrip(".")])
