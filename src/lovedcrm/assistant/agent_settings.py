"""The WhatsApp agent's configuration, in ``Organization.settings["ai_agent"]`` (admins):
on/off, the WhatsApp numbers it answers (``config_ids``), the mode (``out_of_hours`` or
``unowned``), business hours in a time zone (the organization's by default,
America/Sao_Paulo), the organization's own qualifying questions (asked after need, budget
and timing), the qualification score that hands off, the turn limit, how long a person's
message keeps it quiet, an approved template for a closed 24-hour window, and who it acts
as (the admin who switched it on)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.core.errors import NotFound, ValidationFailed
from lovedcrm.core.principal import Principal
from lovedcrm.messaging.models import WhatsappConfig
from lovedcrm.organizations.models import Organization

SETTINGS_KEY = "ai_agent"
DEFAULT_ZONE = "America/Sao_Paulo"
Mode = Literal["out_of_hours", "unowned"]
MODES: tuple[str, ...] = ("out_of_hours", "unowned")
BUILTIN_QUESTIONS: dict[str, tuple[str, str]] = {
    "need": ("O que você está procurando?", "What are you looking for?"),
    "budget": ("Qual orçamento você tem em mente?", "What budget do you have in mind?"),
    "timing": ("Para quando você precisa?", "By when do you need it?"),
}


@dataclass(frozen=True)
class AgentSettings:
    enabled: bool = False
    config_ids: tuple[str, ...] = ()
    mode: Mode = "unowned"
    timezone: str = DEFAULT_ZONE
    days: tuple[int, ...] = (0, 1, 2, 3, 4)  # Monday = 0
    start: str = "09:00"
    end: str = "18:00"
    questions: tuple[str, ...] = ()
    handoff_score: int = 70
    max_turns: int = 6
    human_quiet_hours: int = 12
    window_template_id: str | None = None
    acting_user_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "config_ids": list(self.config_ids),
            "mode": self.mode,
            "timezone": self.timezone,
            "days": list(self.days),
            "start": self.start,
            "end": self.end,
            "questions": list(self.questions),
            "handoff_score": self.handoff_score,
            "max_turns": self.max_turns,
            "human_quiet_hours": self.human_quiet_hours,
            "window_template_id": self.window_template_id,
            "acting_user_id": self.acting_user_id,
        }

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(DEFAULT_ZONE)

    def questions_in_order(self) -> list[tuple[str, str]]:
        """(key, question) in asking order: need, budget, timing, then the custom ones."""
        custom = [(f"custom_{i + 1}", q) for i, q in enumerate(self.questions)]
        return [(k, k) for k in BUILTIN_QUESTIONS] + custom


_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def settings_of(org_settings: dict[str, Any] | None) -> AgentSettings:
    raw = (org_settings or {}).get(SETTINGS_KEY)
    if not isinstance(raw, dict):
        raw = {}
    default = AgentSettings()
    tz = str(raw.get("timezone") or (org_settings or {}).get("timezone") or DEFAULT_ZONE)

    def _int(name: str, fallback: int) -> int:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else fallback

    mode = raw.get("mode") if raw.get("mode") in MODES else default.mode
    return AgentSettings(
        enabled=raw.get("enabled") is True,
        config_ids=tuple(str(c) for c in raw.get("config_ids") or ()),
        mode=mode,  # type: ignore[arg-type]
        timezone=tz,
        days=tuple(int(d) for d in raw.get("days", default.days) if str(d).isdigit()),
        start=str(raw.get("start") or default.start),
        end=str(raw.get("end") or default.end),
        questions=tuple(str(q) for q in raw.get("questions") or () if str(q).strip()),
        handoff_score=_int("handoff_score", default.handoff_score),
        max_turns=_int("max_turns", default.max_turns),
        human_quiet_hours=_int("human_quiet_hours", default.human_quiet_hours),
        window_template_id=str(raw["window_template_id"])
        if raw.get("window_template_id")
        else None,
        acting_user_id=str(raw["acting_user_id"]) if raw.get("acting_user_id") else None,
    )


async def get_agent_settings(session: AsyncSession, principal: Principal) -> AgentSettings:
    principal.require("settings:manage")
    org = await session.get(Organization, principal.org())
    return settings_of(org.settings if org else None)


def _checked_settings(values: dict[str, Any], current: AgentSettings) -> AgentSettings:
    errors: list[dict[str, str]] = []
    data = current.as_dict()
    for name in ("enabled",):
        if name in values:
            data[name] = bool(values[name])
    if "config_ids" in values:
        ids = []
        for raw in values["config_ids"] or ():
            try:
                ids.append(str(uuid.UUID(str(raw))))
            except ValueError:
                errors.append({"field": "config_ids", "message": "must be WhatsApp number ids"})
        data["config_ids"] = ids
    if "mode" in values:
        if values["mode"] not in MODES:
            errors.append({"field": "mode", "message": "must be out_of_hours or unowned"})
        else:
            data["mode"] = values["mode"]
    if "timezone" in values:
        try:
            ZoneInfo(str(values["timezone"]))
            data["timezone"] = str(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                {"field": "timezone", "message": "must be a time zone such as America/Sao_Paulo"}
            )
    if "days" in values:
        days = values["days"] or []
        if not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
            errors.append({"field": "days", "message": "must be weekdays from 0 (Monday) to 6"})
        else:
            data["days"] = sorted(set(days))
    for name in ("start", "end"):
        if name in values:
            if not _HHMM.fullmatch(str(values[name] or "")):
                errors.append({"field": name, "message": "must be a time such as 09:00"})
            else:
                data[name] = str(values[name])
    if "questions" in values:
        questions = [str(q).strip()[:200] for q in values["questions"] or () if str(q).strip()]
        if len(questions) > 5:
            errors.append({"field": "questions", "message": "at most 5 questions"})
        data["questions"] = questions[:5]
    for name, low, high in (
        ("handoff_score", 1, 100),
        ("max_turns", 1, 50),
        ("human_quiet_hours", 0, 168),
    ):
        if name in values:
            value = values[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors.append(
                    {"field": name, "message": f"must be a whole number from {low} to {high}"}
                )
            else:
                data[name] = value
    if "window_template_id" in values:
        raw = values["window_template_id"]
        try:
            data["window_template_id"] = str(uuid.UUID(str(raw))) if raw else None
        except ValueError:
            errors.append({"field": "window_template_id", "message": "must be a template id"})
    if errors:
        raise ValidationFailed(
            "The agent settings are not valid: " + ", ".join(e["field"] for e in errors),
            code="invalid_agent_settings",
            extra={"errors": errors},
        )
    return settings_of({SETTINGS_KEY: data})


async def update_agent_settings(
    session: AsyncSession, principal: Principal, values: dict[str, Any]
) -> AgentSettings:
    """Change the fields given; switching the agent on makes it act as this admin."""
    principal.require("settings:manage")
    org = (
        await session.execute(
            select(Organization)
            .where(Organization.id == principal.org())
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if org is None:
        raise NotFound("Organization not found.")
    current = settings_of(org.settings)
    new = _checked_settings(values, current)
    if new.config_ids:
        known = set(
            (
                await session.execute(
                    select(WhatsappConfig.id).where(WhatsappConfig.organization_id == org.id)
                )
            ).scalars()
        )
        if not {uuid.UUID(c) for c in new.config_ids} <= known:
            raise ValidationFailed(
                "The agent settings are not valid: config_ids",
                code="invalid_agent_settings",
                extra={"errors": [{"field": "config_ids", "message": "unknown WhatsApp number"}]},
            )
    if new.enabled and (not current.enabled or not current.acting_user_id):
        new = replace(new, acting_user_id=str(principal.user_id))
    stored = new.as_dict()
    org_zone = (org.settings or {}).get("timezone") or DEFAULT_ZONE
    if stored["timezone"] == org_zone and "timezone" not in values:
        stored.pop("timezone")
    org.settings = {**(org.settings or {}), SETTINGS_KEY: stored}
    org.updated_at = func.now()
    await session.flush()
    await audit.record_by(
        session, principal, "update", "ai_agent_settings", org.id,
        audit.diff(current.as_dict(), new.as_dict()),
    )  # fmt: skip
    return new


def in_business_hours(agent: AgentSettings, at: datetime) -> bool:
    local = at.astimezone(agent.zone())
    if local.weekday() not in agent.days:
        return False
    start = time.fromisoformat(agent.start)
    end = time.fromisoformat(agent.end)
    now = local.time()
    return start <= now < end if start <= end else (now >= start or now < end)


def question_text(key_or_text: str, english: bool) -> str:
    builtin = BUILTIN_QUESTIONS.get(key_or_text)
    if builtin is not None:
        return builtin[1] if english else builtin[0]
    return key_or_text


def next_question_key(agent: AgentSettings, answers: dict[str, str]) -> str | None:
    return next((k for k, _ in agent.questions_in_order() if not answers.get(k)), None)
