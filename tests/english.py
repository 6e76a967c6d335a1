"""Finding English on a page rendered in Portuguese: the page's visible texts (and those
people hear or hover) against the catalog's English messages and common English words. Used
by the page tests and the browser tests."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from babel.messages.pofile import read_po

from lovedcrm.web.i18n import LOCALE_DIR

# Words that are English and not Portuguese (nor names the product keeps: WhatsApp, API,
# webhook, sandbox, lead, e-mail, CSV, Meta…).
ENGLISH = re.compile(
    r"\b(the|your|with|and|you|this|that|from|have|has|will|are|is|of|to|for|not|yet|"
    r"save|cancel|delete|edit|add|search|settings|name|company|stage|value|owner|"
    r"created|updated|today|yesterday|ago|select|apply|back|next|previous|loading|"
    r"close|open|new|import|export|filter|filters|sort|show|hide|more|less|page)\b",
    re.IGNORECASE,
)
# What the page shows from the data, not from the product (the lead and the organization).
DATA = ("Carla Dias", "Loja Web", "Roberta Teles", "Teles Doces")
ATTRIBUTES = ("aria-label", "title", "placeholder", "alt")


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code", "pre", "template"):
            self._skip += 1
        for name, value in attrs:
            if name in ATTRIBUTES and value:
                self.texts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code", "pre", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(data)


def texts_of(html: str) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    found = []
    for text in parser.texts:
        for name in DATA:
            text = text.replace(name, " ")
        text = " ".join(text.split())
        if text:
            found.append(text)
    return found


def english_messages() -> set[str]:
    """The catalog's English messages whose Portuguese differs (placeholders aside)."""
    po = LOCALE_DIR / "pt_BR" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        catalog = read_po(handle)
    messages: set[str] = set()
    for message in catalog:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for msgid, text in zip(ids, strings, strict=False):
            if (
                isinstance(msgid, str)
                and text
                and text != msgid
                and "%(" not in msgid
                and len(msgid) > 3
            ):
                messages.add(msgid)
    return messages


def english_in(texts: list[str], messages: set[str]) -> list[str]:
    return [t for t in texts if t in messages or ENGLISH.search(t)]
