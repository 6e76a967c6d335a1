"""Pages of the WhatsApp agent: Settings → AI agent (admins: on/off per number, hours,
mode, questions, limits, this month's tokens, export and delete the AI data), and the inbox
banner on a conversation ("IA atendendo — assumir", or to whom it was handed off), an htmx
fragment because the messaging domain sits below the assistant and cannot import it."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.assistant import agent_members, agent_settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, ValidationFailed
from lovedcrm.messaging import whatsapp_configs
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Member, Shell, page_router, parse_uuid, redirect, render, require

router = page_router()
Admin = Annotated[Shell, Depends(require("settings:manage"))]
URL = "/settings/ai/agent"
WEEKDAYS = (
    N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"),
)  # fmt: skip
_MESSAGES = {
    "config_ids": N_("Choose WhatsApp numbers of this organization."),
    "mode": N_("Choose when the agent answers."),
    "timezone": N_("Use a time zone such as America/Sao_Paulo."),
    "days": N_("Choose the working days."),
    "start": N_("Use a time such as 09:00."),
    "end": N_("Use a time such as 18:00."),
    "questions": N_("At most 5 questions, one per line."),
    "handoff_score": N_("A whole number from 1 to 100."),
    "max_turns": N_("A whole number from 1 to 50."),
    "human_quiet_hours": N_("A whole number of hours from 0 to 168."),
}
REASONS = {
    "asked_for_human": N_("the customer asked for a person"),
    "negative_sentiment": N_("the customer's message was negative"),
    "qualified": N_("the customer is qualified"),
    "max_turns": N_("the turn limit was reached"),
    "unsure": N_("the agent was unsure"),
    "window_closed": N_("the 24-hour window is closed"),
    "provider_error": N_("the AI provider failed"),
    "model": N_("the model asked for a human"),
    "plan_limit": N_("the plan's AI tokens for this month are used up"),
}


def _form_of(value: agent_settings.AgentSettings) -> dict[str, Any]:
    return {
        **value.as_dict(),
        "questions_text": "\n".join(value.questions),
        "handoff_score": str(value.handoff_score),
        "max_turns": str(value.max_turns),
        "human_quiet_hours": str(value.human_quiet_hours),
    }


async def _page(
    request: Request,
    frame: Shell,
    session: SessionDep,
    settings: SettingsDep,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    current = await agent_settings.get_agent_settings(session, frame.principal)
    configs = await whatsapp_configs.list_configs(session, frame.principal)
    return render(
        request,
        "assistant/agent_settings.html",
        status_code,
        **frame.context("settings"),
        tab="ai_agent",
        form=form or _form_of(current),
        errors=errors or {},
        configs=[
            {
                "id": str(c.id),
                "name": whatsapp_configs.provider_name(c.provider_type),
                "phone": c.business_phone_id or c.session_id or "",
                "active": bool(c.is_active),
            }
            for c in configs
        ],
        weekdays=WEEKDAYS,
        usage=await agent_members.usage(session, frame.principal, settings),
    )


@router.get(URL, response_class=HTMLResponse)
async def agent_settings_page(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _page(request, frame, session, settings)


def _int(raw: Any) -> Any:
    text = str(raw or "").strip()
    return int(text) if text.isdigit() else text


@router.post(URL, response_class=HTMLResponse)
async def agent_settings_save(
    request: Request, frame: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    raw = await request.form()
    questions = [q.strip() for q in str(raw.get("questions") or "").splitlines() if q.strip()]
    values: dict[str, Any] = {
        "enabled": raw.get("enabled") == "1",
        "config_ids": [str(v) for v in raw.getlist("config_ids")],
        "mode": str(raw.get("mode") or ""),
        "timezone": str(raw.get("timezone") or "").strip(),
        "days": [int(str(d)) for d in raw.getlist("days") if str(d).isdigit()],
        "start": str(raw.get("start") or "").strip(),
        "end": str(raw.get("end") or "").strip(),
        "questions": questions,
        "handoff_score": _int(raw.get("handoff_score")),
        "max_turns": _int(raw.get("max_turns")),
        "human_quiet_hours": _int(raw.get("human_quiet_hours")),
    }
    try:
        await agent_settings.update_agent_settings(session, frame.principal, values)
    except ValidationFailed as exc:
        errors = {
            str(e["field"]): t(_MESSAGES.get(str(e["field"]), _MESSAGES["mode"]))
            for e in (exc.extra or {}).get("errors", [])
        }
        form = {
            **values,
            "questions_text": "\n".join(questions),
            **{k: str(values[k]) for k in ("handoff_score", "max_turns", "human_quiet_hours")},
        }
        return await _page(
            request, frame, session, settings, form=form, errors=errors, status_code=422
        )
    return redirect(URL, t("AI agent settings saved."))


@router.get(URL + "/export")
async def agent_data_export(frame: Admin, session: SessionDep) -> Response:
    data = await agent_members.export_ai_data(session, frame.principal)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="ai-data.json"'},
    )


@router.post(URL + "/delete-data", response_class=HTMLResponse)
async def agent_data_delete(request: Request, frame: Admin, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    raw = await request.form()
    if raw.get("confirm") != "1":
        return redirect(URL, t("Tick the box to confirm the deletion."), "error")
    counts = await agent_members.delete_ai_data(session, frame.principal)
    return redirect(
        URL,
        t("AI data deleted: %(n)s records.") % {"n": sum(counts.values())},
    )


async def _banner(request: Request, frame: Member, session: SessionDep, lead_id: str) -> Response:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        return Response(status_code=204)
    try:
        state = await agent_members.state_for(session, frame.principal, parsed)
    except AppError:
        return Response(status_code=204)
    return render(
        request,
        "assistant/agent_banner.html",
        **frame.context("inbox"),
        state=state,
        lead_id=str(parsed),
        reasons=REASONS,
    )


@router.get("/inbox/{lead_id}/agent", response_class=HTMLResponse)
async def agent_banner(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    return await _banner(request, frame, session, lead_id)


@router.post("/inbox/{lead_id}/agent/take-over", response_class=HTMLResponse)
async def agent_take_over(
    request: Request, lead_id: str, frame: Member, session: SessionDep
) -> Response:
    parsed = parse_uuid(lead_id)
    if parsed is None:
        return Response(status_code=404)
    await agent_members.take_over(session, frame.principal, parsed)
    if request.headers.get("HX-Request"):
        return await _banner(request, frame, session, lead_id)
    t = frame.i18n.gettext
    return redirect(f"/inbox/{parsed}", t("You took over this conversation from the AI agent."))
