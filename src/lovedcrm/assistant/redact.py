"""Redaction of what the agent's audit trail stores: secrets (API keys, bearer and JSON web
tokens, passwords), payment card numbers (13 to 19 digits that pass the Luhn check, with or
without spaces and dashes) and CPFs (with valid check digits, formatted or not) are replaced
by ``[REDACTED:<kind>]`` before a prompt or an answer is written (``agent.record_turn``).

Deliberately over-eager for secrets (a word after "senha:" is dropped even if it was not a
password) and exact for numbers (a phone or an order number is kept: it fails Luhn / the CPF
digits)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MARK = "[REDACTED:{}]"

_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Provider keys: OpenAI (sk-, sk-proj-), Anthropic, GitHub, Slack, Stripe, AWS, Google.
    (
        "api_key",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
            r"xox[abprs]-[A-Za-z0-9\-]{10,}|(?:rk|pk|sk)_(?:live|test)_[A-Za-z0-9]{10,}|"
            r"AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,})"
        ),
    ),
    ("token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{4,}")),
    ("token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{12,}")),
    # "senha: x", "password=x", "api_key: x", "token x"... : the value after the word.
    (
        "secret",
        re.compile(
            r"(?i)\b(senha|password|passwd|pwd|api[_ -]?key|apikey|secret|segredo|token|"
            r"chave(?: de api| api)?|access[_ -]?key)(\s*(?:[:=]|é|e|is)\s*|\s+)"
            r"(?!\[REDACTED)(\"[^\"]{3,}\"|'[^']{3,}'|[^\s,;]{4,})"
        ),
    ),
)
_DIGITS = re.compile(r"(?<![\d])\d(?:[ \-.]?\d){12,18}(?![\d])")
_CPF = re.compile(r"(?<![\d])(\d{3})\.?(\d{3})\.?(\d{3})-?(\d{2})(?![\d])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def cpf_valid(digits: str) -> bool:
    if len(digits) != 11 or len(set(digits)) == 1:
        return False
    for size in (9, 10):
        total = sum(int(d) * w for d, w in zip(digits[:size], range(size + 1, 1, -1), strict=True))
        check = (total * 10) % 11 % 10
        if check != int(digits[size]):
            return False
    return True


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return MARK.format("card")
    return match.group(0)


def _cpf(match: re.Match[str]) -> str:
    digits = "".join(match.groups())
    return MARK.format("cpf") if cpf_valid(digits) else match.group(0)


def _secret(kind: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        if kind == "secret":
            return f"{match.group(1)}{match.group(2)}{MARK.format('secret')}"
        return MARK.format(kind)

    return replace


def redact(text: str | None) -> str:
    """``text`` with secrets, card numbers and CPFs replaced (None: empty)."""
    if not text:
        return ""
    out = text
    for kind, pattern in _SECRET_PATTERNS:
        out = pattern.sub(_secret(kind), out)
    out = _CPF.sub(_cpf, out)
    return _DIGITS.sub(_card, out)


def redact_value(value: Any) -> Any:
    """Every string inside a JSON-like value redacted (keys kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
