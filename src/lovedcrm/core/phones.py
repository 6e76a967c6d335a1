"""Phone numbers: stored in E.164, parsed in any human format with a default region."""

from __future__ import annotations

import phonenumbers


def to_e164(raw: str, region: str = "BR") -> str:
    """Raise ValueError when the text is not a possible phone number."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"'{raw}' is not a phone number") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"'{raw}' is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


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
