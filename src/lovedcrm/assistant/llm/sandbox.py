"""The offline ``sandbox`` provider: deterministic, no network, nothing to download. Rules
for the moments every sales chat has (a greeting, a price question, asking for a person, a
complaint) and retrieval over the examples it is given (the organization's approved replies):
the same conversation always gets the same answer. The demo and the tests use it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lovedcrm.assistant.llm.base import (
    AudioFile,
    ChatMessage,
    Completion,
    ConnectionCheck,
    ProviderKind,
    Tool,
    ToolCall,
    Usage,
    rough_tokens,
)
from lovedcrm.assistant.llm.text import TfIdf, fold, tokens

MODEL = "sandbox-1"
# How close an example's question must be to be reused as it is.
RETRIEVAL_THRESHOLD = 0.35
HANDOFF_TOOLS = ("handoff", "hand_off", "request_human", "handoff_to_human")


@dataclass(frozen=True)
class Rule:
    name: str
    cues: tuple[str, ...]
    answer_pt: str
    answer_en: str


RULES: tuple[Rule, ...] = (
    Rule(
        "human",
        ("atendente", "humano", "pessoa", "falar com alguem", "human", "real person", "agent"),
        "Claro! Vou chamar alguém da nossa equipe para falar com você.",
        "Of course! I'll ask someone from our team to talk to you.",
    ),
    Rule(
        "complaint",
        (
            "reclam",
            "pessimo",
            "horrivel",
            "absurdo",
            "insatisfeit",
            "nao funciona",
            "complain",
            "terrible",
            "awful",
        ),
        "Sinto muito pelo transtorno. Pode me contar o que aconteceu para resolvermos?",
        "I'm sorry about that. Could you tell me what happened so we can fix it?",
    ),
    Rule(
        "price",
        (
            "quanto custa",
            "preco",
            "valor",
            "orcamento",
            "quanto fica",
            "how much",
            "price",
            "quote",
            "cost",
        ),
        "Posso te passar os valores! Para indicar a melhor opção, qual é a sua necessidade e "
        "para quando você precisa?",
        "Happy to share prices! To suggest the best option, what do you need and by when?",
    ),
    Rule(
        "greeting",
        ("oi", "ola", "bom dia", "boa tarde", "boa noite", "hello", "hi", "good morning"),
        "Olá! Obrigado pelo contato. Como posso ajudar?",
        "Hello! Thanks for reaching out. How can I help?",
    ),
)
FALLBACK_PT = "Obrigado pela mensagem! Vou verificar e já te respondo."
FALLBACK_EN = "Thanks for your message! Let me check and get back to you."
_ENGLISH_CUES = frozenset(
    [
        "the",
        "you",
        "your",
        "please",
        "thanks",
        "thank",
        "hello",
        "hi",
        "how",
        "what",
        "when",
        "price",
        "want",
        "need",
        "is",
        "are",
    ]
)


def _english(text: str) -> bool:
    words = fold(text).split()
    return sum(w.strip("?!.,") in _ENGLISH_CUES for w in words) >= max(1, len(words) // 4)


def matched_rule(text: str) -> Rule | None:
    folded = fold(text)
    for rule in RULES:
        for cue in rule.cues:
            end = r"\b" if len(cue) <= 3 else ""
            if re.search(rf"\b{re.escape(cue)}{end}", folded):
                return rule
    return None


class SandboxProvider:
    kind: ProviderKind = "sandbox"

    def __init__(self, examples: Sequence[tuple[str, str]] = ()) -> None:
        """``examples``: (a customer's message, the reply the team approved)."""
        self.examples = list(examples)
        self._index = TfIdf([tokens(q) for q, _ in self.examples]) if self.examples else None

    def retrieve(self, text: str) -> tuple[str, float] | None:
        if self._index is None:
            return None
        scores = self._index.similarities(tokens(text))
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return self.examples[best][1], scores[best]

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Tool] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        last = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
        prompt_tokens = sum(rough_tokens(m.content) for m in messages)
        rule = matched_rule(last)
        offered = {t.name for t in tools or ()}
        handoff = next((name for name in HANDOFF_TOOLS if name in offered), None)
        if rule is not None and rule.name == "human" and handoff is not None:
            call = ToolCall(id="sandbox-call-1", name=handoff, arguments={"reason": "asked"})
            return Completion(
                text=None,
                tool_calls=(call,),
                usage=Usage(prompt_tokens, rough_tokens(json.dumps(call.arguments))),
                finish_reason="tool_calls",
                model=MODEL,
            )
        english = _english(last)
        found = self.retrieve(last)
        if found is not None and found[1] >= RETRIEVAL_THRESHOLD:
            text = found[0]
        elif rule is not None:
            text = rule.answer_en if english else rule.answer_pt
        elif found is not None and found[1] > 0:
            text = found[0]
        else:
            text = FALLBACK_EN if english else FALLBACK_PT
        if max_tokens is not None and rough_tokens(text) > max_tokens:
            text = text[: max_tokens * 4]
            finish = "length"
        else:
            finish = "stop"
        return Completion(
            text=text,
            usage=Usage(prompt_tokens, rough_tokens(text)),
            finish_reason=finish,
            model=MODEL,
        )

    async def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(True, "The sandbox answers offline.", MODEL)

    async def transcribe(self, audio: AudioFile, *, model: str, language: str | None) -> str:
        """A fixed, clearly labelled demo text in the organization's language: nothing is
        listened to, nothing leaves the machine."""
        return SANDBOX_TRANSCRIPTION_PT if language == "pt" else SANDBOX_TRANSCRIPTION_EN


SANDBOX_TRANSCRIPTION_PT = (
    "[Transcrição de demonstração] Cliente: Olá, recebi o contato de vocês e gostaria de "
    "saber mais sobre os planos. Vendedor: Claro! Vou enviar uma proposta por WhatsApp ainda "
    "hoje."
)
SANDBOX_TRANSCRIPTION_EN = (
    "[Demo transcription] Customer: Hi, I got your message and would like to know more about "
    "the plans. Sales rep: Of course! I'll send you a proposal on WhatsApp today."
)
