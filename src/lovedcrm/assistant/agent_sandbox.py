"""The offline agent (the ``sandbox`` provider for the agent): deterministic rules that take
the customer's answer to the question asked last, spot a budget, a deadline and an e-mail
anywhere in a message, call the agent's tools for them, and ask the next question."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from lovedcrm.assistant.agent_settings import question_text
from lovedcrm.assistant.llm.base import (
    ChatMessage,
    Completion,
    ConnectionCheck,
    ProviderKind,
    Tool,
    ToolCall,
    Usage,
    rough_tokens,
)
from lovedcrm.assistant.llm.sandbox import matched_rule

_MONEY = re.compile(
    r"(?:r\$\s*(\d[\d.,]*)(\s*(?:mil|k))?)|(?:(\d[\d.,]*)\s*(mil|k)?\s*(?:reais|real|brl))|"
    r"(?:(\d[\d.,]*)\s*(mil|k)\b)|(?:(?:budget|orcamento|orçamento)\D{0,20}(\d[\d.,]*)(\s*(?:mil|k))?)",
    re.IGNORECASE,
)
_TIMING = re.compile(
    r"\b(hoje|amanh[ãa]|semana|m[êe]s|meses|dias?|urgente|ano|agora|asap|today|tomorrow|"
    r"week|month|year|janeiro|fevereiro|mar[çc]o|abril|maio|junho|julho|agosto|setembro|"
    r"outubro|novembro|dezembro|\d{1,2}/\d{1,2})\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _money(text_: str) -> float | None:
    m = _MONEY.search(text_)
    if not m:
        return None
    groups = [g for g in m.groups()]
    number = next((g for g in groups if g and g[0].isdigit()), None)
    if number is None:
        return None
    thousands = any(g and g.strip().lower() in ("mil", "k") for g in groups)
    cleaned = (
        number.replace(".", "").replace(",", ".") if "," in number else number.replace(".", "")
    )
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value * 1000 if thousands else value


class AgentSandbox:
    """The offline agent: deterministic rules that take the answer to the question asked
    last, spot a budget, a deadline and an e-mail anywhere, call the tools for them, and ask
    the next question. A customer's text is only ever data here (it never picks a tool or
    an argument name)."""

    kind: ProviderKind = "sandbox"

    def __init__(
        self, questions: list[tuple[str, str]], answers: dict[str, str], asked: str | None
    ) -> None:
        self.questions = questions
        self.answers = dict(answers)
        self.asked = asked

    def _score(self, answers: dict[str, str]) -> int:
        return round(
            100 * sum(1 for k, _ in self.questions if answers.get(k)) / len(self.questions)
        )

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Tool] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        prompt = sum(rough_tokens(m.content) for m in messages)
        last = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
        offered = {t.name for t in tools or ()}
        if messages and messages[-1].role != "tool" and offered:
            rule = matched_rule(last)
            if rule is not None and rule.name == "human" and "handoff" in offered:
                call = ToolCall("sb-handoff", "handoff", {"reason": "asked_for_human"})
                return Completion(None, (call,), Usage(prompt, 8), "tool_calls", "agent-sandbox")
            answers = dict(self.answers)
            found: dict[str, Any] = {}
            value = _money(last)
            if value is not None and not answers.get("budget"):
                answers["budget"] = last.strip()[:300]
                found["estimated_value"] = value
            email = _EMAIL.search(last)
            if email:
                found["email"] = email.group(0)
            if _TIMING.search(last) and not answers.get("timing"):
                answers["timing"] = last.strip()[:300]
            if self.asked and not answers.get(self.asked) and last.strip():
                answers[self.asked] = last.strip()[:300]
            calls: list[ToolCall] = []
            if found and "update_lead_fields" in offered:
                calls.append(ToolCall("sb-fields", "update_lead_fields", found))
            if answers != self.answers and "record_qualification" in offered:
                self.answers = answers
                summary = "; ".join(f"{k}: {v}" for k, v in answers.items())
                calls.append(
                    ToolCall(
                        "sb-qualify",
                        "record_qualification",
                        {"score": self._score(answers), "answers": answers, "summary": summary},
                    )
                )
            if calls:
                out = rough_tokens(json.dumps([c.arguments for c in calls]))
                return Completion(
                    None, tuple(calls), Usage(prompt, out), "tool_calls", "agent-sandbox"
                )
        # The reply: acknowledge, then the next question.
        rule = matched_rule(last)
        english = _english(last)
        opener = ""
        if rule is not None and rule.name == "price":
            opener = "Happy to share prices! " if english else "Posso te passar os valores! "
        elif rule is not None and rule.name == "greeting" and not self.answers:
            opener = (
                "Hello! Thanks for reaching out. " if english else "Olá! Obrigado pelo contato. "
            )
        elif self.answers:
            opener = "Thanks! " if english else "Obrigado! "
        pending = next((q for k, q in self.questions if not self.answers.get(k)), None)
        if pending is None:
            reply = opener + (
                "Great, I have what I need." if english else "Perfeito, já tenho o que preciso."
            )
        else:
            reply = opener + question_text(pending, english)
        return Completion(reply, (), Usage(prompt, rough_tokens(reply)), "stop", "agent-sandbox")

    async def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(True, "The agent sandbox answers offline.", "agent-sandbox")


_EN_CUES = frozenset(
    ("the", "you", "your", "please", "thanks", "hello", "hi", "how", "what", "when", "want",
     "need", "is", "are", "i")
)  # fmt: skip


def _english(text_: str) -> bool:
    words = [w.strip("?!.,").lower() for w in text_.split()]
    return bool(words) and sum(w in _EN_CUES for w in words) >= max(1, len(words) // 4)
