"""Settings → Lead scoring (status, metrics, calibration chart, history, retrain, the rules
editor) and the lead page's score panel, an htmx fragment the lead page loads (the leads
domain sits below scoring and cannot import it)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.scoring import service, store
from lovedcrm.scoring.rules_form import FIELDS, form_of, parse_rules_form
from lovedcrm.web.kit import Member, Shell, page_router, parse_uuid, redirect, render

router = page_router()

CHART = {"size": 240, "pad": 32}


def _chart(reliability: list[dict[str, Any]]) -> dict[str, Any]:
    """The calibration chart's points in SVG coordinates (y grows downwards)."""
    size, pad = CHART["size"], CHART["pad"]
    inner = size - 2 * pad
    total = sum(b["count"] for b in reliability) or 1
    points = []
    for b in reliability:
        if not b["count"]:
            continue
        points.append(
            {
                "x": round(pad + b["predicted"] * inner, 1),
                "y": round(size - pad - b["observed"] * inner, 1),
                "r": round(3 + 9 * (b["count"] / total) ** 0.5, 1),
                **b,
            }
        )
    line = " ".join(f"{p['x']},{p['y']}" for p in points)
    ticks = [
        {"v": v / 4, "at": round(pad + v / 4 * inner, 1), "y": round(size - pad - v / 4 * inner, 1)}
        for v in range(5)
    ]
    return {
        "size": size,
        "pad": pad,
        "inner": inner,
        "points": points,
        "line": line,
        "ticks": ticks,
    }


async def _scoring_page(
    request: Request,
    session: SessionDep,
    frame: Shell,
    secret: str,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = await service.status(session, frame.principal, secret=secret)
    trained = [r for r in found.history if (r.config_data or {}).get("status") == "trained"]
    shown = found.scorer.row if found.scorer.kind == store.ML else (trained[0] if trained else None)
    config = dict(shown.config_data or {}) if shown is not None else {}
    won_needed, lost_needed = found.outcomes.needed
    return render(
        request,
        "scoring/settings.html",
        status_code,
        **frame.context("settings"),
        tab="scoring",
        found=found,
        active_model=found.scorer.row,
        active_kind=found.scorer.kind,
        shown=shown,
        metrics=config.get("metrics") or {},
        comparison=config.get("comparison") or {},
        selection=config.get("selection") or {},
        chart=_chart(config.get("reliability") or []) if config.get("reliability") else None,
        won_needed=won_needed,
        lost_needed=lost_needed,
        can_manage=frame.principal.can("settings:manage"),
        form=form or form_of(found.rules),
        fields=FIELDS,
        errors=errors or {},
    )


@router.get("/settings/scoring", response_class=HTMLResponse)
async def scoring_page(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _scoring_page(request, session, frame, settings.secret_key.get_secret_value())


@router.post("/settings/scoring/retrain", response_class=HTMLResponse)
async def scoring_retrain(request: Request, frame: Member, session: SessionDep) -> Response:
    t = frame.i18n.gettext
    try:
        job_id = await service.request_training(session, frame.principal)
    except AppError as exc:
        if exc.status == 403:
            return redirect("/settings/scoring", t("Only admins can retrain the model."), "error")
        return redirect(
            "/settings/scoring", t("Not enough won and lost leads to train a model yet."), "error"
        )
    if job_id is None:
        return redirect("/settings/scoring", t("A training is already on its way."), "info")
    return redirect(
        "/settings/scoring", t("Training started: the page shows the result when it is done.")
    )


@router.post("/settings/scoring/rules", response_class=HTMLResponse)
async def scoring_rules(
    request: Request, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    t = frame.i18n.gettext
    form = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    secret = settings.secret_key.get_secret_value()
    parsed, errors = parse_rules_form(form)
    if errors:
        translated = {k: t(v) for k, v in errors.items()}
        return await _scoring_page(
            request, session, frame, secret, form=form, errors=translated, status_code=422
        )
    try:
        await service.update_rules(session, frame.principal, parsed)
    except AppError as exc:
        message = (
            t("Only admins can change the scoring rules.")
            if exc.status == 403
            else t("Check the rules: a number is out of range.")
        )
        return await _scoring_page(
            request,
            session,
            frame,
            secret,
            form=form,
            errors={"form": message},
            status_code=exc.status,
        )
    return redirect("/settings/scoring", t("Scoring rules saved. The leads are being rescored."))


@router.get("/leads/{lead_id}/score-panel", response_class=HTMLResponse)
async def score_panel(
    request: Request, lead_id: str, frame: Member, session: SessionDep, settings: SettingsDep
) -> Response:
    """The lead page's score, probability and top factors (loaded with hx-get)."""
    parsed: uuid.UUID | None = parse_uuid(lead_id)
    try:
        if parsed is None:
            raise NotFound("No lead with that id.", code="lead_not_found")
        found = await service.lead_score(
            session,
            frame.principal,
            parsed,
            secret=settings.secret_key.get_secret_value(),
            loc=frame.i18n,
        )
    except NotFound:
        return render(request, "scoring/_score_missing.html", 404, **frame.context("leads"))
    won_needed, lost_needed = found.outcomes.needed
    probability = found.scored.probability
    return render(
        request,
        "scoring/_score_panel.html",
        **frame.context("leads"),
        found=found,
        score=found.scored.score,
        percent=None if probability is None else round(probability * 100),
        won_needed=won_needed,
        lost_needed=lost_needed,
        can_manage=frame.principal.can("settings:manage"),
    )
