"""E-mail addresses: the one normalisation and validation every entry point uses."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from lovedcrm.core.errors import ValidationFailed


def normalize_email(email: str) -> str:
    return email.strip().lower()


def valid_email(email: str) -> str:
    """Normalised address, or ValidationFailed naming what is wrong (for every entry point,
    forms included, not only the JSON API's schema)."""
    try:
        info = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(
            "The email address is not valid.",
            code="invalid_email",
            extra={"errors": [{"field": "email", "message": str(exc)}]},
        ) from exc
    return info.normalized.lower()
