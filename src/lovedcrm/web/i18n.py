"""Languages and formats for the web pages.

Strings in templates and views are English msgids; the catalogs under ``web/locale`` hold the
translations (pt-BR is the default language). The ``.po`` files are the source: each is
compiled to ``.mo`` on first use when the ``.mo`` is missing or older, so there is no build
step (and the ``.mo`` files are not committed). Where the package folder is read-only the
catalog is compiled in memory instead.

The language of a request: the person's choice (the ``lovedcrm_lang`` cookie, set from the
user menu), then the organization's ``settings.locale``, then ``Accept-Language``, then pt-BR.

A :class:`Localizer` carries the language, currency and time zone of one request and does
every format the pages need: money, numbers, dates, relative times, phone numbers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale, negotiate_locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations
from markupsafe import Markup

LOCALE_DIR = Path(__file__).parent / "locale"
LANG_COOKIE = "lovedcrm_lang"
DEFAULT_LOCALE = "pt_BR"
SUPPORTED = ("pt_BR", "en")
# What an organization setting or the language cookie may hold, and the catalog it means.
LANGUAGE_TAGS = {"pt-BR": "pt_BR", "en": "en"}
LANGUAGE_NAMES = {"pt-BR": "Português (Brasil)", "en": "English"}
CURRENCIES = ("BRL", "USD", "EUR")
DEFAULT_CURRENCY = "BRL"
DEFAULT_TIMEZONE = "America/Sao_Paulo"

_compile_lock = threading.Lock()


def N_(message: str) -> str:
    """Marks a message for extraction (``make messages``) without translating it here."""
    return message


# Messages of the services that pages show as they come (``{{ error|tr }}``): listed so the
# extraction keeps them in the catalogs.
SERVICE_MESSAGES = (
    N_("Wrong email or password."),
    N_("An account with this email already exists. Log in instead."),
    N_("Too many failed log-ins. Wait a few minutes and try again."),
    N_("This link is invalid, expired or already used."),
    N_("The account is disabled."),
    N_("Full name and password are needed to create your account."),
    N_("You are not a member of that organization."),
    N_("The form expired or came from another site. Reload the page."),
    N_("The file is not a PNG, JPEG or WebP image."),
    N_("The file is empty. Choose a PNG, JPEG or WebP image."),
    N_("You are not a member of any organization. Create one or accept an invitation."),
)


def tag_of(locale: str) -> str:
    """The BCP 47 tag of a catalog name: ``pt_BR`` → ``pt-BR`` (for ``<html lang>``)."""
    return locale.replace("_", "-")


def catalog_name(value: str | None) -> str | None:
    """A supported catalog for a tag such as ``pt-BR``, ``pt_br``, ``pt`` or ``en-US``."""
    if not value:
        return None
    found = negotiate_locale([value.strip().replace("-", "_")], list(SUPPORTED))
    return found if found in SUPPORTED else None


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an ``Accept-Language`` header, best first (``q`` respected)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        pieces = part.strip().split(";")
        tag = pieces[0].strip()
        if not tag or tag == "*" or not re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", tag):
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            weighted.append((-q, index, tag.replace("-", "_")))
    return [tag for _, _, tag in sorted(weighted)]


def choose_locale(
    cookie: str | None, organization_locale: str | None, accept_language: str | None
) -> str:
    """The catalog for a request: the person's cookie, the organization's, the browser's."""
    for candidate in (cookie, organization_locale):
        found = catalog_name(candidate)
        if found:
            return found
    found = negotiate_locale(parse_accept_language(accept_language), list(SUPPORTED))
    return found if found in SUPPORTED else DEFAULT_LOCALE


# --- catalogs ---------------------------------------------------------------------------


def _compile(po_path: Path, mo_path: Path) -> bytes:
    """The compiled catalog; written beside the .po when it is missing or older."""
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    data = buffer.getvalue()
    try:
        # Atomic: a concurrent process reads the old file or the new one, never half of one.
        fd, tmp = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo.tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; any app user must read it
            os.replace(tmp, mo_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only install: the in-memory copy serves
    return data


def _mo_bytes(locale: str) -> bytes | None:
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    po_path, mo_path = folder / "messages.po", folder / "messages.mo"
    if not po_path.exists():
        return None
    with _compile_lock:
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            return mo_path.read_bytes()
        return _compile(po_path, mo_path)


@lru_cache(maxsize=8)
def _translations_for(locale: str, po_mtime: float) -> Translations:
    data = _mo_bytes(locale)
    if data is None:
        return Translations()  # the msgids (English) as they are
    return Translations(fp=io.BytesIO(data))


def translations(locale: str) -> Translations:
    """The catalog of ``locale``; reloaded when its .po changes."""
    po_path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    mtime = po_path.stat().st_mtime if po_path.exists() else 0.0
    return _translations_for(locale, mtime)


# --- formats ----------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


@dataclass
class Localizer:
    """One request's language, currency and time zone, with every format the pages use."""

    locale: str = DEFAULT_LOCALE
    currency: str = DEFAULT_CURRENCY
    timezone: str = DEFAULT_TIMEZONE
    phone_region: str = "BR"
    _translations: Translations = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.locale not in SUPPORTED:
            self.locale = DEFAULT_LOCALE
        if self.currency not in CURRENCIES:
            self.currency = DEFAULT_CURRENCY
        self._translations = translations(self.locale)
        self.zone = _zone(self.timezone)

    @property
    def tag(self) -> str:
        return tag_of(self.locale)

    # gettext
    def gettext(self, message: str) -> str:
        return self._translations.ugettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._translations.ungettext(singular, plural, n)

    # numbers
    def money(self, value: Decimal | float | int | None, cents: bool | None = True) -> str:
        """``R$ 1.234,56`` in pt-BR, ``R$1,234.56`` in English; ``cents=False`` rounds to the
        unit; ``cents=None`` writes cents only when there are any (``R$ 1.800,50``,
        ``R$ 1.800``)."""
        amount = Decimal(str(value if value is not None else 0))
        if cents is None:
            cents = amount != amount.to_integral_value()
        if cents:
            return format_currency(amount, self.currency, locale=self.locale)
        pattern = Locale.parse(self.locale).currency_formats["standard"].pattern
        whole = pattern.split(";")[0].replace(".00", "")
        return format_currency(
            amount.quantize(Decimal(1), rounding=ROUND_HALF_UP),
            self.currency,
            format=whole,
            locale=self.locale,
            currency_digits=False,
        )

    def number(self, value: Decimal | float | int | None) -> str:
        return format_decimal(value if value is not None else 0, locale=self.locale)

    # dates
    def local(self, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(self.zone)

    def date(self, value: dt.date | dt.datetime | None) -> str:
        """``25/11/2026`` in pt-BR, ``Nov 25, 2026`` in English."""
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            value = self.local(value).date()
        return format_date(value, "short" if self.locale == "pt_BR" else "medium", self.locale)

    def datetime(self, value: dt.datetime | None) -> str:
        if value is None:
            return ""
        local = self.local(value)
        return f"{self.date(local)} {format_time(local, 'short', locale=self.locale)}"

    def reltime_text(self, value: dt.datetime, now: dt.datetime | None = None) -> str:
        """ "há 5 min", "ontem", "em 2 dias"; beyond a month the date itself."""
        now = self.local(now or dt.datetime.now(UTC))
        then = self.local(value)
        seconds = (now - then).total_seconds()
        days = (now.date() - then.date()).days
        if abs(seconds) < 60:
            return self.gettext("just now")
        if 0 < seconds < 3600:
            return self.gettext("%(n)d min ago") % {"n": seconds // 60}
        if -3600 < seconds < 0:
            return self.gettext("in %(n)d min") % {"n": -seconds // 60}
        if days == 0:
            hours = int(abs(seconds) // 3600)
            if seconds > 0:
                return self.gettext("%(n)d h ago") % {"n": hours}
            return self.gettext("in %(n)d h") % {"n": hours}
        if days == 1:
            return self.gettext("yesterday")
        if days == -1:
            return self.gettext("tomorrow")
        if 1 < days < 31:
            return self.ngettext("%(num)d day ago", "%(num)d days ago", days) % {"num": days}
        if -31 < days < -1:
            return self.ngettext("in %(num)d day", "in %(num)d days", -days) % {"num": -days}
        return self.date(then)

    def reltime(self, value: dt.datetime | None, now: dt.datetime | None = None) -> Markup:
        """A ``<time>`` with the relative text and the absolute date and time on hover."""
        if value is None:
            return Markup("")
        local = self.local(value)
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            local.isoformat(), self.datetime(value), self.reltime_text(value, now)
        )

    def phone(self, value: str | None) -> str:
        """``+55 11 98765-4321`` from ``+5511987654321``; anything unparsable as it is."""
        if not value:
            return ""
        try:
            number = phonenumbers.parse(value, self.phone_region)
        except phonenumbers.NumberParseException:
            return value
        if not phonenumbers.is_possible_number(number):
            return value
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def localizer_for(locale: str, org_settings: dict[str, Any] | None = None) -> Localizer:
    org_settings = org_settings or {}
    return Localizer(
        locale=locale,
        currency=str(org_settings.get("currency") or DEFAULT_CURRENCY),
        timezone=str(org_settings.get("timezone") or DEFAULT_TIMEZONE),
        phone_region=str(org_settings.get("phone_region") or "BR"),
    )
