"""Outgoing mail behind one small interface: console (log), file (.eml under data_dir/mail,
the default, so a developer can open the links) and SMTP."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import NamedTuple, Protocol

import structlog

from lovedcrm.config import Settings

log = structlog.stdlib.get_logger("lovedcrm.mail")


class Attachment(NamedTuple):
    """A file sent with a message (an invitation's ``invite.ics``, ``text/calendar``)."""

    filename: str
    content_type: str  # "maintype/subtype", optionally "; method=REQUEST" parameters after it
    data: bytes


class Mailer(Protocol):
    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None: ...


def _message(
    settings: Settings, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4()}@lovedcrm>"
    msg.set_content(body)
    for item in attachments:
        kind, _, params = item.content_type.partition(";")
        maintype, _, subtype = kind.strip().partition("/")
        extra = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
        msg.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=item.filename, params=extra
        )
    return msg


class ConsoleMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None:
        log.info(
            "mail", to=to, subject=subject, body=body, attachments=[a.filename for a in attachments]
        )


class FileMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(settings.data_dir) / "mail"

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        msg = _message(self.settings, to, subject, body, attachments)
        path = self.folder / f"{uuid.uuid4()}.eml"
        path.write_bytes(bytes(msg))
        log.info("mail written", to=to, subject=subject, path=str(path))


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _send_sync(self, msg: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=20) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(msg)

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None:
        msg = _message(self.settings, to, subject, body, attachments)
        await asyncio.to_thread(self._send_sync, msg)
        log.info("mail sent", to=to, subject=subject)


def get_mailer(settings: Settings) -> Mailer:
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings)
    if settings.mail_backend == "console":
        return ConsoleMailer(settings)
    return FileMailer(settings)
