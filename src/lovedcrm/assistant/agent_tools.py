"""The agent's tools, bound to ONE lead on the server.

No tool takes a lead id (or any other record's id): the lead is the one the conversation
belongs to, fixed when the :class:`ToolSet` is built. Whatever a customer writes ("chame a
ferramenta X com lead_id=…"), the model can only call these four functions, with arguments
checked against their schemas (``additionalProperties: false``; the LLM layer raises
``InvalidToolArguments`` for anything else, and :meth:`ToolSet.run` checks again for
providers that do not), and every change goes through ``leads.service.update_lead`` as the
agent's principal, on that one lead, audited (``ai_agent`` rows name the tool).

- ``update_lead_fields``: company, job title, e-mail, estimated value only.
- ``set_custom_field``: an existing custom field definition only (its key is an enum).
- ``record_qualification``: the score (0-100) and the answers to the qualifying questions.
- ``handoff``: ask for a human, with a reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.assistant.llm.base import Tool, ToolCall, parse_tool_call
from lovedcrm.audit import service as audit
from lovedcrm.core.errors import AppError
from lovedcrm.core.principal import Principal
from lovedcrm.leads import service as leads_service

LEAD_FIELDS: tuple[str, ...] = ("company", "job_title", "email", "estimated_value")
TOOL_NAMES: tuple[str, ...] = (
    "update_lead_fields",
    "set_custom_field",
    "record_qualification",
    "handoff",
)


def tool_definitions(custom_fields: Sequence[Mapping[str, Any]]) -> list[Tool]:
    """The four tools, ``set_custom_field`` limited to the organization's definitions (left
    out when there is none)."""
    tools = [
        Tool(
            "update_lead_fields",
            "Fill fields of the customer's lead with what the customer said.",
            {
                "type": "object",
                "properties": {
                    "company": {"type": "string"},
                    "job_title": {"type": "string"},
                    "email": {"type": "string"},
                    "estimated_value": {"type": "number"},
                },
                "additionalProperties": False,
            },
        ),
        Tool(
            "record_qualification",
            "Record how qualified the customer is (0-100) and their answers to the "
            "qualifying questions (need, budget, timing and the organization's own).",
            {
                "type": "object",
                "properties": {
                    "score": {"type": "integer"},
                    "answers": {"type": "object"},
                    "summary": {"type": "string"},
                },
                "required": ["score"],
                "additionalProperties": False,
            },
        ),
        Tool(
            "handoff",
            "Hand the conversation to a human of the team (the customer asks for a person, "
            "is upset, is qualified, or you are unsure).",
            {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
                "additionalProperties": False,
            },
        ),
    ]
    keys = [str(d["key"]) for d in custom_fields if d.get("key")]
    if keys:
        tools.insert(
            1,
            Tool(
                "set_custom_field",
                "Set one of the organization's custom fields on the customer's lead.",
                {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string", "enum": keys},
                        "value": {"type": ["string", "number", "boolean"]},
                    },
                    "required": ["key", "value"],
                    "additionalProperties": False,
                },
            ),
        )
    return tools


@dataclass
class ToolOutcome:
    """What one call did: ``ok`` and a short result the model reads back."""

    name: str
    ok: bool
    result: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolSet:
    """The tools of one turn, on one lead. ``qualification``, ``answers``, ``summary`` and
    ``handoff_reason`` collect what the model recorded; the agent stores them."""

    session: AsyncSession
    principal: Principal
    lead_id: uuid.UUID
    tools: list[Tool]
    qualification: int | None = None
    answers: dict[str, str] = field(default_factory=dict)
    summary: str | None = None
    handoff_reason: str | None = None
    outcomes: list[ToolOutcome] = field(default_factory=list)
    fields_filled: list[str] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {t.name for t in self.tools}

    async def run(self, call: ToolCall) -> ToolOutcome:
        """Run one call; a call outside the set or off its schema is refused (never run)."""
        checked = parse_tool_call(call.id, call.name, dict(call.arguments), self.tools)
        if not isinstance(checked, ToolCall):
            outcome = ToolOutcome(call.name, False, f"refused: {checked[0]}", dict(call.arguments))
        else:
            try:
                outcome = await self._dispatch(checked)
            except AppError as exc:
                outcome = ToolOutcome(call.name, False, f"refused: {exc.detail}", checked.arguments)
        self.outcomes.append(outcome)
        await audit.record(
            self.session,
            action="tool_call" if outcome.ok else "tool_refused",
            resource_type="ai_agent",
            resource_id=self.lead_id,
            organization_id=self.principal.org(),
            user_id=None,
            changes={
                "tool": call.name,
                "arguments": {k: str(v)[:200] for k, v in dict(call.arguments).items()},
                "result": outcome.result[:300],
                "on_behalf_of": str(self.principal.user_id),
            },
        )
        return outcome

    async def _dispatch(self, call: ToolCall) -> ToolOutcome:
        args = call.arguments
        if call.name == "update_lead_fields":
            return await self._update_fields(args)
        if call.name == "set_custom_field":
            key, value = str(args["key"]), args["value"]
            # Checked against the definition by the leads service (before any write).
            await leads_service.update_lead(
                self.session, self.principal, self.lead_id, {"custom_fields": {key: value}}
            )
            self.fields_filled.append(f"custom_fields.{key}")
            return ToolOutcome(call.name, True, f"custom field {key} set", args)
        if call.name == "record_qualification":
            score = max(0, min(100, int(args["score"])))
            self.qualification = score
            answers = args.get("answers") or {}
            if isinstance(answers, dict):
                self.answers.update({str(k)[:60]: str(v)[:300] for k, v in answers.items() if v})
            if isinstance(args.get("summary"), str) and args["summary"].strip():
                self.summary = args["summary"].strip()[:1000]
            return ToolOutcome(call.name, True, f"qualification {score} recorded", args)
        if call.name == "handoff":
            self.handoff_reason = str(args.get("reason") or "model")[:200]
            return ToolOutcome(call.name, True, "a human will take over", args)
        return ToolOutcome(call.name, False, "refused: the tool was not offered", args)

    async def _update_fields(self, args: dict[str, Any]) -> ToolOutcome:
        changes: dict[str, Any] = {}
        for name in LEAD_FIELDS:
            value = args.get(name)
            if value is None or value == "":
                continue
            if name == "estimated_value":
                try:
                    number = Decimal(str(value))
                except InvalidOperation:
                    continue
                if not Decimal(0) <= number < Decimal("100000000"):
                    continue
                changes[name] = number.quantize(Decimal("0.01"))
            else:
                changes[name] = str(value).strip()[:255]
        if not changes:
            return ToolOutcome("update_lead_fields", False, "refused: nothing to change", args)
        await leads_service.update_lead(self.session, self.principal, self.lead_id, changes)
        self.fields_filled.extend(changes)
        return ToolOutcome(
            "update_lead_fields", True, f"updated: {', '.join(sorted(changes))}", args
        )
