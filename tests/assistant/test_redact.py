"""Redaction of the agent's audit trail: secrets, Luhn-valid card numbers, valid CPFs."""

from __future__ import annotations

import pytest

from lovedcrm.assistant.redact import cpf_valid, luhn_valid, redact, redact_value


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("minha chave sk-proj-AbCdEf0123456789xyzXYZ", "api_key"),
        ("token ghp_0123456789abcdefghijABCDEFGHIJ", "api_key"),
        ("AKIAIOSFODNN7EXAMPLE", "api_key"),
        ("Authorization: Bearer abc.def-123456789XYZ", "token"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "token"),
        ("a senha: hunter2xyz", "secret"),
        ("password=correct-horse", "secret"),
        ("cartão 4111 1111 1111 1111", "card"),
        ("cartão 5500-0000-0000-0004 ok", "card"),
        ("3782 822463 10005", "card"),  # Amex, 15 digits
        ("CPF 529.982.247-25", "cpf"),
        ("cpf 52998224725", "cpf"),
    ],
)
def test_secrets_cards_and_cpfs_are_redacted(text: str, kind: str) -> None:
    out = redact(text)
    assert f"[REDACTED:{kind}]" in out


@pytest.mark.parametrize(
    "text",
    [
        "meu telefone é +55 11 98765-4321",
        "pedido 1234567890123 (não passa no Luhn)",  # 13 digits, Luhn-invalid
        "CPF 123.456.789-00",  # wrong check digits
        "quanto custa o plano de R$ 1.500,00?",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_helpers_and_nested_values() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert cpf_valid("52998224725") and not cpf_valid("11111111111")
    value = {"a": ["CPF 529.982.247-25", {"b": "4111111111111111"}], "n": 3}
    assert redact_value(value) == {
        "a": ["CPF [REDACTED:cpf]", {"b": "[REDACTED:card]"}],
        "n": 3,
    }
    assert redact(None) == ""
