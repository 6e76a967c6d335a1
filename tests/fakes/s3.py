"""A fake S3-compatible server (path-style): PutObject, GetObject, DeleteObject, with S3's
XML errors, checking the SigV4 credential's key id and the payload hash boto3 sends."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

from tests.fakes import FakeServer, RecordedRequest, Reply

ACCESS_KEY = "AKIAFAKEKEY123"
SECRET_KEY = "fake-secret-key"


def _error(status: int, code: str, message: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return Reply(status, body, "application/xml")


class FakeS3(FakeServer):
    def __init__(self, bucket: str = "lovedcrm-files") -> None:
        self.bucket = bucket
        self.objects: dict[str, tuple[bytes, str]] = {}
        super().__init__()

    def handle(self, request: RecordedRequest) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"):
            return _error(403, "InvalidAccessKeyId", "The AWS Access Key Id does not exist.")
        declared = request.headers.get("x-amz-content-sha256", "")
        signed = declared not in ("", "UNSIGNED-PAYLOAD") and not declared.startswith("STREAMING-")
        if signed and declared != hashlib.sha256(request.body).hexdigest():
            return _error(400, "XAmzContentSHA256Mismatch", "The payload hash differs.")
        bucket, _, key = request.path.lstrip("/").partition("/")
        key = unquote(key)
        if bucket != self.bucket:
            return _error(404, "NoSuchBucket", "The specified bucket does not exist")
        if request.method == "PUT":
            self.objects[key] = (
                request.body,
                request.headers.get("content-type", "binary/octet-stream"),
            )
            return Reply(200, b"", "application/xml", {"ETag": '"etag"'})
        if request.method == "GET":
            if key not in self.objects:
                return _error(404, "NoSuchKey", "The specified key does not exist.")
            data, content_type = self.objects[key]
            return Reply(200, data, content_type)
        if request.method == "DELETE":
            self.objects.pop(key, None)
            return Reply(204, b"", "application/xml")
        return _error(405, "MethodNotAllowed", "Not allowed")
