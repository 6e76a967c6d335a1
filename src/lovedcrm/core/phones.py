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
