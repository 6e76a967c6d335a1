"""File storage: the local folder and an S3-compatible bucket (boto3 against a fake S3 server
on loopback), and attachments served from either to their organization only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.core.storage import FileMissing, LocalStorage, S3Storage, get_storage
from lovedcrm.db.engine import Database
from tests.factories import create_lead, signup
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, FakeS3


@pytest.fixture(scope="module")
def s3() -> Iterator[FakeS3]:
    with FakeS3() as fake:
        yield fake


def s3_settings(settings: Settings, s3: FakeS3) -> Settings:
    return settings.model_copy(
        update={
            "storage_backend": "s3",
            "s3_bucket": s3.bucket,
            "s3_endpoint_url": s3.url,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SecretStr(SECRET_KEY),
            "s3_prefix": "prod",
        }
    )


def test_local_storage_keeps_keys_inside_its_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.save("org/attachments/a.jpg", b"abc", "image/jpeg")
    assert storage.read("org/attachments/a.jpg") == b"abc"
    assert storage.local_path("org/attachments/a.jpg") == tmp_path / "org/attachments/a.jpg"
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.save("../escape.txt", b"x", "text/plain")
    storage.delete("org/attachments/a.jpg")
    with pytest.raises(FileMissing):
        storage.read("org/attachments/a.jpg")


def test_s3_storage_round_trip(settings: Settings, s3: FakeS3) -> None:
    storage = get_storage(s3_settings(settings, s3))
    assert isinstance(storage, S3Storage)
    data = b"\xff\xd8\xff" + b"\x01" * 100_000
    storage.save("org-1/attachments/photo.jpg", data, "image/jpeg")
    assert s3.objects["prod/org-1/attachments/photo.jpg"] == (data, "image/jpeg")
    assert storage.read("org-1/attachments/photo.jpg") == data
    assert storage.local_path("org-1/attachments/photo.jpg") is None
    storage.delete("org-1/attachments/photo.jpg")
    with pytest.raises(FileMissing):
        storage.read("org-1/attachments/photo.jpg")


def test_s3_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="LOVEDCRM_S3_BUCKET"):
        Settings(storage_backend="s3")


async def test_attachments_are_served_from_s3_to_their_organization_only(
    settings: Settings, database: Database, s3: FakeS3
) -> None:
    app = create_app(s3_settings(settings, s3), database=database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        owner = await signup(client)
        other = await signup(client)
        h = owner["headers"]
        lead = await create_lead(client, h, full_name="Cliente", phone="11987651111")
        org = owner["organization_id"]
        key = f"{org}/attachments/{uuid.uuid4().hex}.pdf"
        get_storage(s3_settings(settings, s3)).save(key, b"%PDF-1.7 proposta", "application/pdf")
        attachment_id = _attachment(database, org, lead["id"], key)
        r = await client.get(f"/api/v1/attachments/{attachment_id}", headers=h)
        assert r.status_code == 200 and r.content == b"%PDF-1.7 proposta"
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await client.get(f"/api/v1/attachments/{attachment_id}", headers=other["headers"])
        assert r.status_code == 404


def _attachment(database: Database, org: str, lead_id: str, key: str) -> Any:
    engine = create_engine(database.owner_url)
    try:
        with engine.begin() as conn:
            message_id = conn.execute(
                text(
                    "INSERT INTO messages (organization_id, lead_id, provider_type,"
                    " direction, message_type, content) VALUES"
                    " (:o, :l, 'whatsapp_sandbox', 'inbound', 'document', 'proposta')"
                    " RETURNING id"
                ),
                {"o": org, "l": lead_id},
            ).scalar_one()
            return conn.execute(
                text(
                    "INSERT INTO message_attachments (organization_id, message_id, file_name,"
                    " file_type, file_size, file_url) VALUES"
                    " (:o, :m, 'proposta.pdf', 'application/pdf', 17, :k) RETURNING id"
                ),
                {"o": org, "m": message_id, "k": key},
            ).scalar_one()
    finally:
        engine.dispose()
