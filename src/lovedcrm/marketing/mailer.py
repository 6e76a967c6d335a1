"""Marketing e-mail: a multipart message (text + HTML) with per-message headers
(``List-Unsubscribe`` + ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, RFC 8058),
optional DKIM, sent in batches over one SMTP connection (``core.mail``'s settings), or written
as ``.eml`` files / logged by the other mail backends. Runs in a thread (``asyncio.to_thread``):
nothing here blocks the event loop.

DKIM is optional: ``LOVEDCRM_MARKETING_DKIM_KEY_FILE`` (a PEM private key),
``LOVEDCRM_MARKETING_DKIM_SELECTOR`` and ``LOVEDCRM_MARKETING_DKIM_DOMAIN``.
"""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import ssl
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from functools import cache
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import structlog

from lovedcrm.config import Settings

log = structlog.stdlib.get_logger("lovedcrm.marketing.mail")
# CRLF line ends (SMTP's), and long unbreakable headers (a List-Unsubscribe URL) kept whole up
# to RFC 5322's 998 characters rather than turned into encoded words mail clients ignore.
POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass
class Outgoing:
    key: str  # the recipient row's id
    to: str
    subject: str
    text: str
    html: str
    unsubscribe_url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    key: str
    ok: bool
    hard_bounce: bool = False
    error: str | None = None


@dataclass(frozen=True)
class DkimKey:
    selector: bytes
    domain: bytes
    key: bytes


def dkim_key(settings: Settings) -> DkimKey | None:
    """The DKIM key the settings name (read once per file, selector and domain)."""
    path = settings.marketing_dkim_key_file
    selector, domain = settings.marketing_dkim_selector, settings.marketing_dkim_domain
    if not (path and selector and domain):
        return None
    return _read_key(str(path), selector, domain)


@cache
def _read_key(path: str, selector: str, domain: str) -> DkimKey:
    return DkimKey(selector.encode(), domain.encode(), Path(path).read_bytes())


def build(settings: Settings, item: Outgoing, key: DkimKey | None = None) -> bytes:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = settings.mail_from
    msg["To"] = item.to
    msg["Subject"] = item.subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{item.key}.{uuid.uuid4().hex[:8]}@lovedcrm>"
    msg["List-Unsubscribe"] = f"<{item.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in item.headers.items():
        msg[name] = value
    msg.set_content(item.text)
    msg.add_alternative(item.html, subtype="html")
    raw = msg.as_bytes(policy=POLICY)
    if key is not None:
        signature = dkim.sign(
            raw,
            key.selector,
            key.domain,
            key.key,
            include_headers=[
                b"from",
                b"to",
                b"subject",
                b"date",
                b"message-id",
                b"list-unsubscribe",
                b"list-unsubscribe-post",
            ],
        )
        raw = signature + raw
    return raw


def _envelope_from(settings: Settings) -> str:
    sender = settings.mail_from
    if "<" in sender and ">" in sender:
        return sender.split("<", 1)[1].split(">", 1)[0]
    return sender


def _send_smtp(settings: Settings, items: list[Outgoing]) -> list[Outcome]:
    key = dkim_key(settings)
    outcomes: list[Outcome] = []
    s = settings
    with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30) as smtp:
        if s.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if s.smtp_username and s.smtp_password:
            smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
        sender = _envelope_from(settings)
        for item in items:
            try:
                refused = smtp.sendmail(sender, [item.to], build(settings, item, key))
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0] if exc.recipients else 550
                outcomes.append(
                    Outcome(item.key, False, hard_bounce=500 <= code < 600, error=f"SMTP {code}")
                )
                continue
            except smtplib.SMTPResponseException as exc:
                outcomes.append(
                    Outcome(
                        item.key,
                        False,
                        hard_bounce=500 <= exc.smtp_code < 600,
                        error=f"SMTP {exc.smtp_code}",
                    )
                )
                smtp.rset()
                continue
            outcomes.append(Outcome(item.key, not refused))
    return outcomes


def _write_files(settings: Settings, items: list[Outgoing]) -> list[Outcome]:
    folder = Path(settings.data_dir) / "mail" / "marketing"
    folder.mkdir(parents=True, exist_ok=True)
    key = dkim_key(settings)
    for item in items:
        (folder / f"{item.key}.eml").write_bytes(build(settings, item, key))
    return [Outcome(item.key, True) for item in items]


def _send_sync(settings: Settings, items: list[Outgoing]) -> list[Outcome]:
    if settings.mail_backend == "smtp":
        return _send_smtp(settings, items)
    if settings.mail_backend == "file":
        return _write_files(settings, items)
    for item in items:
        log.info("marketing mail", to=item.to, subject=item.subject)
    return [Outcome(item.key, True) for item in items]


async def send_many(settings: Settings, items: list[Outgoing]) -> list[Outcome]:
    """Send a batch over one connection, off the event loop. A connection failure fails the
    whole batch (the caller retries it)."""
    if not items:
        return []
    return await asyncio.to_thread(_send_sync, settings, items)
