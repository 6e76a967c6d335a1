"""Phone numbers: stored in E.164, parsed in any human format with a default region."""

from __future__ import annotations

import re

import phonenumbers

# E.164: "+", a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(value: str | None) -> bool:
    return bool(value) and _E164.fullmatch(value or "") is not None


def to_e164(raw: str, region: str = "BR") -> str:
    """A number typed by a person, in any format (the region's when it has no "+"), in
    E.164. Raise ValueError when the text is not a possible phone number."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"'{raw}' is not a phone number") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"'{raw}' is not a possible phone number")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not is_e164(number):
        raise ValueError(f"'{raw}' is not a phone number in E.164")
    return number


def sender_e164(raw: str | None) -> str | None:
    """A number as a provider reports it (Meta's ``wa_id`` ``"5511987654321"``, a bridge's
    ``"+5511987654321"``) in E.164, or None when it is not one: only ASCII digits after an
    optional "+", a possible number for its country code. Never guessed from a region: a
    sender that is not a number must not become anyone's phone."""
    text = (raw or "").strip()
    number = text[1:] if text.startswith("+") else text
    if not number.isascii() or not number.isdigit() or not is_e164("+" + number):
        return None
    try:
        parsed = phonenumbers.parse("+" + number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164 if is_e164(e164) else None


def equivalent_numbers(e164: str) -> list[str]:
    """The number, plus its Brazilian mobile twin with/without the ninth digit (WhatsApp
    still uses the old form for some accounts): both are the same phone."""
    variants = [e164]
    digits = e164.lstrip("+")
    if digits.startswith("55") and len(digits) == 13 and digits[4] == "9":
        variants.append("+" + digits[:4] + digits[5:])
    elif digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        variants.append("+" + digits[:4] + "9" + digits[4:])
    return variants
