"""The import wizard: upload → mapping (with a preview) → progress. The rules (formats,
limits, mapping checks, the job) live in ``leads.importing``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lovedcrm.config import Settings
from lovedcrm.core.deps import SessionDep, SettingsDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.leads import import_files, importing
from lovedcrm.leads.pages._common import ACTIVE, definitions_of, not_found
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import Member, Shell, is_htmx, page_router, parse_uuid, render, require

router = page_router()

Importer = Annotated[Shell, Depends(require("leads:import"))]


async def import_in_page(job_id: str, frame: Member, session: SessionDep) -> BackgroundJob:
    """The import of the URL, else its 404 page."""
    parsed = parse_uuid(job_id)
    try:
        if parsed is None:
            raise NotFound("No import with that id.")
        return await importing.get_import(session, frame.principal, parsed)
    except NotFound as exc:
        raise not_found(N_("Import not found"), N_("This import does not exist.")) from exc


ImportInPage = Annotated[BackgroundJob, Depends(import_in_page)]


def _megabytes(frame: Shell, size: int) -> str:
    megabytes = Decimal(size) / Decimal(1_048_576)
    return f"{frame.i18n.number(megabytes.quantize(Decimal('0.1')).normalize())} MB"


def _limit_text(frame: Shell, settings: Settings) -> str:
    return _megabytes(frame, settings.import_max_bytes)


def _refusal(frame: Shell, settings: Settings, exc: AppError) -> str:
    """Why an upload was refused, in the reader's words."""
    t, number = frame.i18n.gettext, frame.i18n.number
    messages = {
        "unsupported_file_type": t("Upload a .csv or .xlsx file."),
        "payload_too_large": t("The file is too large: the limit is %(limit)s.")
        % {"limit": _limit_text(frame, settings)},
        "empty_file": t("The file is empty: it needs a header row and at least one lead."),
        "unreadable_file": t(
            "We could not read this file. Save it again as CSV (UTF-8) or XLSX and retry."
        ),
        "too_many_rows": t("The file has more than %(limit)s rows. Split it into smaller files.")
        % {"limit": number(settings.import_max_rows)},
        "too_many_columns": t("The file has more than %(limit)s columns.")
        % {"limit": number(settings.import_max_columns)},
        "cell_too_long": t(
            "A cell of the file has more than %(limit)s characters. Shorten it and retry."
        )
        % {"limit": number(settings.import_max_cell_chars)},
        "unpacked_too_large": t(
            "The spreadsheet is too large once unpacked (more than %(limit)s). "
            "Split it into smaller files or save it as CSV."
        )
        % {"limit": _megabytes(frame, settings.import_max_unpacked_bytes)},
    }
    return messages.get(exc.code, t(exc.detail))


def _upload_page(
    request: Request,
    frame: Shell,
    settings: Settings,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "leads/import_upload.html",
        status_code,
        **frame.context(ACTIVE),
        limit=_limit_text(frame, settings),
        error=error,
    )


@router.get("/leads/import", response_class=HTMLResponse)
async def import_page(request: Request, frame: Importer, settings: SettingsDep) -> Response:
    return _upload_page(request, frame, settings)


@router.post("/leads/import", response_class=HTMLResponse)
async def import_upload(
    request: Request,
    frame: Member,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    t = frame.i18n.gettext
    if file is None or not file.filename:
        return _upload_page(
            request, frame, settings, error=t("Choose a .csv or .xlsx file."), status_code=422
        )
    upload = file

    async def chunks() -> AsyncIterator[bytes]:
        while block := await upload.read(1 << 20):
            yield block

    try:
        analysis = await importing.analyse_upload(
            session, settings, frame.principal, file.filename, chunks()
        )
    except AppError as exc:
        if exc.status == 403:
            raise
        return _upload_page(
            request, frame, settings, error=_refusal(frame, settings, exc), status_code=exc.status
        )
    return _mapping_page(
        request,
        frame,
        upload_id=analysis.upload_id,
        file_name=analysis.file_name,
        headers=analysis.headers,
        mapping=analysis.suggested_mapping,
        targets=analysis.fields,
        preview=analysis.preview,
        total=analysis.total_rows,
        policy="skip",
    )


def _target_label(target: str, definitions: list[dict[str, Any]], t: Any) -> str:
    labels = {
        "full_name": t("Name"),
        "email": t("E-mail"),
        "phone": t("Phone"),
        "company": t("Company"),
        "job_title": t("Job title"),
        "source": t("Source"),
        "estimated_value": t("Estimated value"),
        "probability_percentage": t("Probability (0–100)"),
    }
    if target.startswith(importing.CUSTOM_PREFIX):
        key = target.removeprefix(importing.CUSTOM_PREFIX)
        label = next((d.get("label") for d in definitions if d["key"] == key), None)
        return f"{label or key} ({t('custom field')})"
    return str(labels.get(target, target))


def _mapping_page(
    request: Request,
    frame: Shell,
    *,
    upload_id: str,
    file_name: str,
    headers: list[str],
    mapping: dict[str, str | None],
    targets: list[str],
    preview: list[dict[str, Any]],
    total: int,
    policy: str,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    definitions = definitions_of(frame)
    t = frame.i18n.gettext
    return render(
        request,
        "leads/import_mapping.html",
        status_code,
        **frame.context(ACTIVE),
        upload_id=upload_id,
        file_name=file_name,
        headers=headers,
        mapping=mapping,
        targets=[(target, _target_label(target, definitions, t)) for target in targets],
        preview=preview,
        total=total,
        policy=policy,
        errors=errors or [],
    )


def _mapping_errors(exc: AppError, t: Any) -> list[str]:
    """The service's mapping refusals in the reader's words."""
    errors = []
    for err in exc.extra.get("errors", []):
        message = str(err.get("message", ""))
        if "full_name" in message and "must be mapped" in message:
            errors.append(t("Choose the column that holds the lead's name (Name)."))
        elif "mapped from" in message:
            errors.append(t("Each field can come from one column only."))
        else:
            errors.append(t("A column is mapped to a field that does not exist."))
    return errors or [t(exc.detail)]


@router.post("/leads/import/start", response_class=HTMLResponse)
async def import_start(
    request: Request,
    frame: Member,
    session: SessionDep,
    settings: SettingsDep,
    upload_id: Annotated[str, Form(max_length=64)],
    columns: Annotated[list[str] | None, Form()] = None,
    targets: Annotated[list[str] | None, Form()] = None,
    duplicate_policy: Annotated[str, Form(max_length=10)] = "skip",
) -> Response:
    t = frame.i18n.gettext
    columns, targets = columns or [], targets or []
    mapping: dict[str, str | None] = {
        column: (target if target and target != "ignore" else None)
        for column, target in zip(columns, targets, strict=False)
    }
    policy = duplicate_policy if duplicate_policy in ("skip", "update", "create") else "skip"
    try:
        job_id = await importing.start_import(
            session,
            settings,
            frame.principal,
            upload_id=upload_id,
            mapping=mapping,
            duplicate_policy=policy,  # type: ignore[arg-type]
        )
    except AppError as exc:
        if exc.status == 403:
            raise
        reloaded = await anyio.to_thread.run_sync(
            import_files.stored_upload, settings, frame.principal.org(), upload_id
        )
        if exc.status == 404 or reloaded is None:
            expired = t("The uploaded file expired. Upload it again.")
            return _upload_page(request, frame, settings, error=expired, status_code=404)
        if exc.code == "import_already_started":
            again = t("This file was already imported. Upload it again to import once more.")
            return _upload_page(request, frame, settings, error=again, status_code=409)
        file_name, headers = reloaded.file_name, reloaded.headers
        preview, total = reloaded.preview, reloaded.total_rows
        return _mapping_page(
            request,
            frame,
            upload_id=upload_id,
            file_name=file_name,
            headers=headers,
            mapping={h: mapping.get(h) for h in headers},
            targets=importing.mapping_targets(definitions_of(frame)),
            preview=preview,
            total=total,
            policy=policy,
            errors=_mapping_errors(exc, t),
            status_code=exc.status,
        )
    return RedirectResponse(f"/leads/import/{job_id}", status_code=303)


@router.get("/leads/import/{job_id}", response_class=HTMLResponse)
async def import_progress(request: Request, frame: Member, job: ImportInPage) -> Response:
    progress = importing.progress_of(job)
    running = job.status in ("pending", "running", "retrying")
    total = progress["total"] or 0
    percent = min(100, int((progress["processed"] or 0) * 100 / total)) if total else 0
    ctx = {
        **frame.context(ACTIVE),
        "job": job,
        "progress": progress,
        "running": running,
        "percent": percent,
        "file_name": (job.job_data or {}).get("file_name"),
        "errors_url": f"/api/v1/imports/{job.id}/errors.csv",
    }
    if is_htmx(request):
        return render(request, "leads/_import_progress.html", **ctx)
    return render(request, "leads/import_progress.html", **ctx)
