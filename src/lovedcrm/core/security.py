"""Password hashing (argon2id), opaque tokens (stored as SHA-256), JWT access tokens,
AES-GCM for provider secrets, and CSRF tokens bound to a web session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lovedcrm.config import Settings

# argon2id with the library's RFC 9106 "low memory" profile defaults.
_hasher = PasswordHasher()
# A hash of a random password, verified against when the email is unknown so that a failed
# log-in takes the same time whether or not the account exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "lovedcrm-api"


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# argon2id costs tens of milliseconds of CPU (64 MiB of memory): run on the event loop it
# would stall every other request, so hashing and verifying run in a worker thread.


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(_verify, password_hash, password)


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Opaque tokens are stored only as their SHA-256 (they carry 256 bits of entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    session_id: uuid.UUID,
) -> tuple[str, int]:
    now = utcnow()
    ttl = settings.access_token_minutes * 60
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "org": str(organization_id) if organization_id else None,
        "sid": str(session_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "aud": JWT_AUDIENCE,
        "typ": "access",
    }
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=JWT_ALGORITHM)
    return token, ttl


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """Raises ``jwt.PyJWTError`` for an expired, forged or malformed token."""
    claims: dict[str, Any] = jwt.decode(
        token,
        settings.secret_key.get_secret_value(),
        algorithms=[JWT_ALGORITHM],
        audience=JWT_AUDIENCE,
        options={"require": ["sub", "sid", "exp", "iat", "aud"]},
    )
    if claims.get("typ") != "access":
        raise jwt.InvalidTokenError("not an access token")
    return claims


CSRF_FIELD = "csrf_token"  # the form field that carries the token (or the X-CSRF-Token header)


def csrf_token(settings: Settings, session_token_hash: str) -> str:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_token_hash.encode(), hashlib.sha256).hexdigest()


def csrf_valid(settings: Settings, session_token_hash: str, candidate: str | None) -> bool:
    return bool(candidate) and hmac.compare_digest(
        csrf_token(settings, session_token_hash), candidate or ""
    )


class SecretBox:
    """AES-256-GCM for provider secrets at rest: ``v1:`` + base64(nonce | ciphertext+tag)."""

    PREFIX = "v1:"

    def __init__(self, key_b64: str) -> None:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("LOVEDCRM_ENCRYPTION_KEY must be base64 of 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, *, context: str = "") -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode() or None)
        return self.PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, *, context: str = "") -> str:
        if not stored.startswith(self.PREFIX):
            raise ValueError("value is not an encrypted secret")
        raw = base64.b64decode(stored[len(self.PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], context.encode() or None).decode()


def mask_secret(value: str | None, visible: int = 4) -> str | None:
    if not value:
        return None
    return "•" * 8 + value[-visible:] if len(value) > visible * 2 else "•" * 8
