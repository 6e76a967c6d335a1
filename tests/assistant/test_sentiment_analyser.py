"""The offline analyser: polarity (negation, emoji, slang, English), signals, speed budget
is checked in the benchmark, never here."""

from __future__ import annotations

import pytest

from lovedcrm.assistant import leia, sentiment
from lovedcrm.assistant.sentiment import analyse


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Gostei muito, chegou rápido!", "positive"),
        ("não gostei", "negative"),
        ("nada bom", "negative"),
        ("não é ruim", "positive"),
        ("sem problema nenhum, obrigado", "positive"),
        ("Adorei 😍😍", "positive"),
        ("😡😡", "negative"),
        ("mto bom vc é top kkkk", "positive"),
        ("pessimo atendimento, naum recomendo", "negative"),
        ("muuuuito bom!!!", "positive"),
        ("ainda não recebi o produto", "negative"),
        ("veio quebrado", "negative"),
        ("bom produto, mas veio com defeito", "negative"),
        ("I love it, thanks!", "positive"),
        ("This is terrible, I want a refund", "negative"),
        ("it doesn't work", "negative"),
        ("ok", "neutral"),
        ("", "neutral"),
        ("Qual o horário de vocês?", "neutral"),
    ],
)
def test_polarity(text: str, label: str) -> None:
    assert analyse(text).label == label, (text, analyse(text))


def test_score_is_bounded_and_stronger_with_intensifiers() -> None:
    plain, strong = analyse("bom").score, analyse("muito bom!!!").score
    assert 0 < plain < strong <= 1
    assert -1 <= analyse("PÉSSIMO!!! HORRÍVEL!!! LIXO!!!").score < -0.8


def test_accents_repeated_letters_and_slang_are_normalized() -> None:
    assert sentiment.tokens("Ótimo, muuuito bom vc") == ["otimo", ",", "muito", "bom", "voce"]
    assert analyse("pessimo").score == analyse("péssimo").score < 0


@pytest.mark.parametrize(
    ("text", "signal"),
    [
        ("Quanto custa o plano?", "buying_intent"),
        ("qual o preço?", "buying_intent"),
        ("tem desconto no pix?", "buying_intent"),
        ("quero fechar hoje", "buying_intent"),
        ("How much is it?", "buying_intent"),
        ("o produto veio com defeito, quero reembolso", "complaint"),
        ("vou reclamar no procon", "complaint"),
        ("preciso disso urgente", "urgent"),
        ("é pra ontem!!!", "urgent"),
        ("I need it right now, urgent", "urgent"),
        ("quero falar com um atendente", "wants_human"),
        ("posso falar com uma pessoa?", "wants_human"),
        ("I want to talk to a human", "wants_human"),
    ],
)
def test_signals(text: str, signal: str) -> None:
    assert signal in analyse(text).signals, (text, analyse(text))


def test_quiet_messages_have_no_signal() -> None:
    result = analyse("Bom dia, tudo bem?")
    assert result.signals == () and result.urgency == 0


def test_urgency_grows_with_cues() -> None:
    assert analyse("preciso hoje").urgency < analyse("URGENTE, preciso hoje!!!").urgency <= 100
    assert analyse("URGENTE, preciso hoje!!!").urgency >= sentiment.URGENT_AT


def test_leia_port_keeps_leias_quirks() -> None:
    # LeIA scores "não" itself as negative and reads only "mas" as a contrast.
    assert leia.compound("não") < 0
    assert leia.label("Produto excelente") == 1
    assert leia.label("Produto ruim") == -1
