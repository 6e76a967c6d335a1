"""A campaign e-mail's shape: text + HTML, RFC 8058 headers, and the optional DKIM signature
(verified with dkimpy against the public key); signed links and their forgery."""

from __future__ import annotations

import base64
import uuid
from email import message_from_bytes
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from lovedcrm.config import Settings
from lovedcrm.marketing import campaigns, mailer


def _item() -> mailer.Outgoing:
    return mailer.Outgoing(
        key=str(uuid.uuid4()),
        to="maria@example.com",
        subject="Oferta de verão",
        text="Olá Maria",
        html="<p>Olá Maria</p>",
        unsubscribe_url="https://crm.example.com/m/u/" + "a" * 180,
    )


def test_headers_and_parts(settings: Settings) -> None:
    msg = message_from_bytes(mailer.build(settings, _item()))
    assert msg["List-Unsubscribe"] == "<https://crm.example.com/m/u/" + "a" * 180 + ">"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in msg.walk()][1:] == ["text/plain", "text/html"]
    assert "DKIM-Signature" not in msg


def test_dkim_signature_when_a_key_is_configured(settings: Settings, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    signing = settings.model_copy(
        update={
            "marketing_dkim_key_file": tmp_path / "dkim.pem",
            "marketing_dkim_selector": "crm",
            "marketing_dkim_domain": "lovedcrm.local",
        }
    )
    assert mailer.dkim_key(settings) is None  # not configured: not signed
    raw = mailer.build(signing, _item(), mailer.dkim_key(signing))
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"crm._domainkey.lovedcrm.local."
        return record

    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns)
    assert not dkim.verify(raw.replace(b"Maria</p>", b"Mario</p>"), dnsfunc=dns)


def test_signed_links(settings: Settings) -> None:
    org, recipient = uuid.uuid4(), uuid.uuid4()
    url = campaigns.link(settings, "click", org, recipient, "https://loja.example.com/a")
    token = url.rsplit("/", 1)[1]
    data: dict[str, Any] | None = campaigns.unsign(settings, token)
    assert data == {
        "o": str(org),
        "r": str(recipient),
        "k": "click",
        "u": "https://loja.example.com/a",
    }
    body, _, mac = token.partition(".")
    assert campaigns.unsign(settings, body + "." + mac[::-1]) is None
    other = settings.model_copy(
        update={"secret_key": SecretStr("another-secret-key-0123456789abcdefghij")}
    )
    assert campaigns.unsign(other, token) is None
    assert campaigns.safe_target("javascript:alert(1)") is None
