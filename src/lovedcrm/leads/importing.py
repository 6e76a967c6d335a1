"""Importing leads from CSV and XLSX files.

Two steps, then a background job:

1. ``analyse_upload`` stores the file under ``data_dir/imports/<org>/<upload_id>.<ext>`` and
   reads it: encoding (UTF-8, UTF-8 with BOM, else Windows-1252/Latin-1), delimiter (``,``
   ``;`` or tab), headers, a suggested mapping (pt-BR and English names), the first rows.
   The reading runs in a worker thread (a large file takes seconds of CPU, which on the event
   loop would stall every organization's requests) and stops at the first limit passed:
   ``import_max_rows``, ``import_max_columns``, ``import_max_cell_chars`` and, for an XLSX,
   ``import_max_unpacked_bytes`` (checked from the zip's directory before anything is
   unpacked).
2. ``start_import`` checks a mapping ``{column: field}`` and a duplicate policy and queues a
   ``leads.import`` job. There is no imports table: the job row is the import (its id is the
   import id; ``job_data`` holds the file, mapping, policy and who started it;
   ``result_data`` holds the progress).
3. The job (``leads.jobs``) reads the file in chunks of ``CHUNK_SIZE`` rows, each chunk in
   its own short transaction that also writes the progress, so progress is visible while it
   runs and a retried job resumes after the last committed chunk. Each row is validated with
   the same rules as ``POST /api/v1/leads`` (``LeadIn`` for e-mails and lengths, the lead
   service's cleaning for phones in E.164 and custom fields); bad rows are written, by line
   number, to an errors file per chunk, and the good rows are imported. Duplicates (the one
   rule of ``leads.dedup``, against the organization and earlier rows of the file) are
   skipped, updated or created again as the policy says.

Deliberate limits: imported leads emit no per-row domain events (a 100,000-row file would
flood webhooks and live pages) and get no per-row audit row; one ``leads_import`` audit row
summarises the import. The uploads directory must be shared by the API and the workers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.config import Settings
from lovedcrm.core.errors import AppError, Conflict, NotFound, ValidationFailed
from lovedcrm.core.middleware import describe_bytes
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import fold
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.jobs.queue import enqueue
from lovedcrm.leads import service
from lovedcrm.leads.import_files import (
    ReadLimits,
    RowError,
    imports_dir,
    read_upload,
    upload_path,
)
from lovedcrm.leads.schemas import LeadIn
from lovedcrm.organizations import custom_fields, plans
from lovedcrm.organizations.models import Organization
from lovedcrm.web.problems import field_message, translate_text

JOB_TYPE = "leads.import"
FORMATS = ("csv", "xlsx")
DuplicatePolicy = Literal["skip", "update", "create"]

# Lead fields a column can be mapped to (custom fields are ``custom:<key>``).
FIELDS = (
    "full_name",
    "email",
    "phone",
    "company",
    "job_title",
    "source",
    "estimated_value",
    "probability_percentage",
)
CUSTOM_PREFIX = "custom:"

# Column names (folded: lower case, no accents, words separated by one space) per field.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "full_name": (
        "nome",
        "nome completo",
        "name",
        "full name",
        "full_name",
        "contato",
        "contact",
        "cliente",
        "lead",
    ),
    "email": ("email", "e mail", "mail", "endereco de email", "email address"),
    "phone": (
        "telefone",
        "celular",
        "phone",
        "whatsapp",
        "whats",
        "fone",
        "tel",
        "mobile",
        "phone number",
        "numero",
        "telefone celular",
    ),
    "company": ("empresa", "company", "organizacao", "organization", "razao social", "negocio"),
    "job_title": ("cargo", "job title", "job_title", "title", "funcao", "position"),
    "source": ("origem", "source", "fonte", "canal"),
    "estimated_value": (
        "valor",
        "value",
        "valor estimado",
        "estimated value",
        "estimated_value",
        "deal value",
    ),
    "probability_percentage": ("probabilidade", "probability", "probability_percentage"),
}


# --- mapping ------------------------------------------------------------------------------


def mapping_targets(definitions: list[dict[str, Any]]) -> list[str]:
    return [*FIELDS, *(f"{CUSTOM_PREFIX}{d['key']}" for d in definitions)]


def suggest_mapping(headers: list[str], definitions: list[dict[str, Any]]) -> dict[str, str | None]:
    """Each header → a lead field (or None); every field is suggested at most once."""
    lookup: dict[str, str] = {}
    for target, names in SYNONYMS.items():
        for name in names:
            lookup.setdefault(fold(name), target)
    for d in definitions:
        custom = f"{CUSTOM_PREFIX}{d['key']}"
        for candidate in (d["key"], d.get("label"), custom):
            if isinstance(candidate, str) and fold(candidate):
                lookup.setdefault(fold(candidate), custom)
    used: set[str] = set()
    suggested: dict[str, str | None] = {}
    for header in headers:
        found = lookup.get(fold(header))
        if found and found not in used:
            used.add(found)
            suggested[header] = found
        else:
            suggested[header] = None
    return suggested


def check_mapping(
    mapping: dict[str, str | None], headers: list[str], definitions: list[dict[str, Any]]
) -> dict[str, str]:
    """The mapping without ignored columns, or 422 naming what is wrong."""
    targets = set(mapping_targets(definitions))
    errors: list[dict[str, str]] = []
    kept: dict[str, str] = {}
    for column, target in mapping.items():
        if not target:
            continue
        if column not in headers:
            errors.append({"field": f"mapping.{column}", "message": "no such column in the file"})
        elif target not in targets:
            errors.append({"field": f"mapping.{column}", "message": f"unknown field {target!r}"})
        else:
            kept[column] = target
    counts: dict[str, int] = {}
    for target in kept.values():
        counts[target] = counts.get(target, 0) + 1
    for target, n in counts.items():
        if n > 1:
            errors.append({"field": "mapping", "message": f"{target} is mapped from {n} columns"})
    if "full_name" not in kept.values():
        errors.append({"field": "mapping", "message": "a column must be mapped to full_name"})
    if errors:
        raise ValidationFailed(
            "The mapping is not valid: " + "; ".join(e["message"] for e in errors),
            code="invalid_mapping",
            extra={"errors": errors},
        )
    return kept


# --- converting a row ---------------------------------------------------------------------


def parse_decimal(raw: str) -> Decimal:
    """``1500``, ``1500.50``, ``1.500,50``, ``R$ 1.500``, ``1,500.50`` → Decimal. A single dot
    followed by exactly three digits is a thousands separator (pt-BR ``1.500``)."""
    s = re.sub(r"[^\d,.\-]", "", raw)
    if not re.search(r"\d", s):
        raise InvalidOperation(raw)
    if "," in s and "." in s:
        if s.rfind(",") > s.rfind("."):
            s = s.replace(".", "").replace(",", ".")
        else:
            s = s.replace(",", "")
    elif "," in s:
        s = s.replace(".", "").replace(",", ".") if s.count(",") == 1 else s.replace(",", "")
    elif s.count(".") > 1 or re.fullmatch(r"-?\d{1,3}\.\d{3}", s):
        s = s.replace(".", "")
    return Decimal(s)


_TRUE = {"true", "sim", "s", "yes", "y", "1", "x", "verdadeiro"}
_FALSE = {"false", "nao", "n", "no", "0", "falso"}


def custom_value(definition: dict[str, Any], raw: str) -> Any:
    """Text from a cell → the type the custom field holds (left as text when it does not
    parse, so validation reports it)."""
    kind = definition.get("type", "text")
    if kind == "number":
        with contextlib.suppress(InvalidOperation, ValueError):
            number = parse_decimal(raw)
            return int(number) if number == number.to_integral_value() else float(number)
    elif kind == "checkbox":
        folded = fold(raw)
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    elif kind == "date":
        match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", raw)
        if match:  # dd/mm/yyyy
            with contextlib.suppress(ValueError):
                d, m, y = (int(g) for g in match.groups())
                return date(y, m, d).isoformat()
        return raw[:10] if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", raw) else raw
    elif kind == "select":
        options = [str(o) for o in definition.get("options") or []]
        for option in options:
            if fold(option) == fold(raw):
                return option
    return raw


def _pydantic_message(err: Any, gettext: Callable[[str], str]) -> str:
    if err.get("type") == "missing":
        return gettext("is required")
    context = {"type": err.get("type"), "ctx": err.get("ctx") or {}}
    return field_message(gettext, str(err.get("msg", "is not valid")), context)


def _same(message: str) -> str:
    return message


async def convert_row(
    session: AsyncSession,
    principal: Principal,
    line: int,
    cells: dict[str, str],
    mapping: dict[str, str],
    definitions: dict[str, dict[str, Any]],
    gettext: Callable[[str], str] = _same,
) -> tuple[dict[str, Any] | None, list[RowError]]:
    """A row → cleaned lead data (as ``create_lead`` would store it), or its errors (their
    messages through ``gettext``: the import writes them in the organization's language)."""
    column_of: dict[str, str] = {target: column for column, target in mapping.items()}
    errors: list[RowError] = []
    data: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for column, target in mapping.items():
        raw = cells.get(column, "").strip()
        if not raw:
            continue
        if target.startswith(CUSTOM_PREFIX):
            key = target.removeprefix(CUSTOM_PREFIX)
            custom[key] = custom_value(definitions.get(key, {}), raw)
        elif target == "estimated_value":
            try:
                data[target] = parse_decimal(raw)
            except (InvalidOperation, ValueError):
                errors.append(RowError(line, column, raw, gettext("is not a number")))
        elif target == "probability_percentage":
            try:
                data[target] = int(parse_decimal(raw.rstrip("%")))
            except (InvalidOperation, ValueError):
                errors.append(RowError(line, column, raw, gettext("is not a whole number")))
        else:
            data[target] = raw
    if errors:
        return None, errors

    def column_for(name: str) -> str:
        if name.startswith("custom_fields."):
            key = name.removeprefix("custom_fields.")
            return column_of.get(f"{CUSTOM_PREFIX}{key}", f"{CUSTOM_PREFIX}{key}")
        return column_of.get(name, name)

    try:
        checked = LeadIn.model_validate({**data, "custom_fields": custom})
    except PydanticValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ())) or "row"
            column = column_for(name)
            errors.append(
                RowError(line, column, cells.get(column, ""), _pydantic_message(dict(err), gettext))
            )
        return None, errors
    values = checked.model_dump(exclude_unset=True, exclude={"allow_duplicate"})
    values.setdefault("custom_fields", {})
    try:
        cleaned = await service._clean(session, principal, values)
    except ValidationFailed as exc:
        for err in exc.extra.get("errors", []):
            column = column_for(err["field"])
            message = translate_text(gettext, str(err["message"]))
            errors.append(RowError(line, column, cells.get(column, ""), message))
        return None, errors
    return cleaned, []


# --- step 1: upload -----------------------------------------------------------------------


@dataclass
class UploadAnalysis:
    upload_id: str
    file_name: str
    format: Literal["csv", "xlsx"]
    encoding: str | None
    delimiter: str | None
    headers: list[str]
    suggested_mapping: dict[str, str | None]
    fields: list[str]
    preview: list[dict[str, Any]]
    total_rows: int


class FileTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Content too large"


def file_kind(file_name: str) -> Literal["csv", "xlsx"]:
    suffix = Path(file_name).suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix == ".xlsx":
        return "xlsx"
    raise ValidationFailed(
        "Upload a .csv or .xlsx file.",
        code="unsupported_file_type",
        extra={"errors": [{"field": "file", "message": "must be a .csv or .xlsx file"}]},
    )


async def store_upload(
    settings: Settings,
    principal: Principal,
    file_name: str,
    chunks: Any,  # an async iterator of bytes
) -> tuple[str, Path]:
    """Write the upload to the organization's imports directory, refusing it (413, the limit
    named) once it passes ``import_max_bytes``."""
    kind = file_kind(file_name)
    upload_id = uuid.uuid4().hex
    path = upload_path(settings, principal.org(), upload_id, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    limit = settings.import_max_bytes
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(
                        f"The file is larger than the import limit of {describe_bytes(limit)}.",
                        extra={"limit_bytes": limit},
                    )
                await anyio.to_thread.run_sync(out.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return upload_id, path


async def analyse_upload(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    file_name: str,
    chunks: Any,
) -> UploadAnalysis:
    principal.require("leads:import")
    upload_id, path = await store_upload(settings, principal, file_name, chunks)
    kind: Literal["csv", "xlsx"] = "xlsx" if path.suffix == ".xlsx" else "csv"
    try:
        read = await anyio.to_thread.run_sync(
            functools.partial(read_upload, path, kind, ReadLimits.of(settings))
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    fmt, headers, total = read.format, read.headers, read.total_rows
    definitions = custom_fields.custom_field_definitions(
        await session.get(Organization, principal.org())
    )
    clean_name = Path(file_name).name[:255]
    meta = {
        "upload_id": upload_id,
        "file_name": clean_name,
        "format": fmt.format,
        "encoding": fmt.encoding,
        "delimiter": fmt.delimiter,
        "headers": headers,
        "total_rows": total,
        "uploaded_by": str(principal.user_id),
        "uploaded_at": datetime.now().astimezone().isoformat(),
    }
    await anyio.to_thread.run_sync(
        functools.partial(path.with_suffix(".json").write_text, json.dumps(meta), encoding="utf-8")
    )
    return UploadAnalysis(
        upload_id=upload_id,
        file_name=clean_name,
        format=fmt.format,
        encoding=fmt.encoding,
        delimiter=fmt.delimiter,
        headers=headers,
        suggested_mapping=suggest_mapping(headers, definitions),
        fields=mapping_targets(definitions),
        preview=read.preview,
        total_rows=total,
    )


# --- step 2: start ------------------------------------------------------------------------


class ImportPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_id: str
    path: str  # relative to data_dir
    file_name: str
    format: Literal["csv", "xlsx"]
    encoding: str | None = None
    delimiter: str | None = None
    mapping: dict[str, str]
    duplicate_policy: DuplicatePolicy
    created_by: uuid.UUID
    # What the starter could do then (an API key's scopes may be narrower than its creator's
    # role); the job uses what is left of it with the member's permissions when it runs.
    permissions: list[str]
    total_rows: int | None = None


def _load_meta(settings: Settings, organization_id: uuid.UUID, upload_id: str) -> dict[str, Any]:
    meta_path = imports_dir(settings, organization_id) / f"{upload_id}.json"
    if not re.fullmatch(r"[0-9a-f]{32}", upload_id) or not meta_path.is_file():
        raise NotFound("No upload with that id.", code="upload_not_found")
    meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
    return meta


async def start_import(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    upload_id: str,
    mapping: dict[str, str | None],
    duplicate_policy: DuplicatePolicy,
) -> uuid.UUID:
    principal.require("leads:import")
    org_id = principal.org()
    meta = _load_meta(settings, org_id, upload_id)
    definitions = custom_fields.custom_field_definitions(await session.get(Organization, org_id))
    kept = check_mapping(mapping, list(meta["headers"]), definitions)
    path = upload_path(settings, org_id, upload_id, meta["format"])
    if not path.is_file():
        raise NotFound("No upload with that id.", code="upload_not_found")
    rows = meta.get("total_rows")
    await plans.check_limit(
        session,
        org_id,
        "leads",
        lambda: service.count_leads(session, org_id),
        adding=rows if isinstance(rows, int) and rows > 0 else 1,
        settings=settings,
    )
    payload = ImportPayload(
        upload_id=upload_id,
        path=str(path.relative_to(settings.data_dir.resolve())),
        file_name=meta["file_name"],
        format=meta["format"],
        encoding=meta.get("encoding"),
        delimiter=meta.get("delimiter"),
        mapping=kept,
        duplicate_policy=duplicate_policy,
        created_by=principal.user_id,
        permissions=sorted(principal.permissions),
        total_rows=meta.get("total_rows"),
    )
    job_id = await enqueue(
        session,
        JOB_TYPE,
        payload,
        organization_id=org_id,
        dedupe_key=f"leads.import:{upload_id}",
    )
    if job_id is None:
        raise Conflict("This upload was already imported.", code="import_already_started")
    return job_id


# --- reading an import's state ------------------------------------------------------------


async def get_import(
    session: AsyncSession, principal: Principal, job_id: uuid.UUID
) -> BackgroundJob:
    principal.require("leads:import")
    job = (
        await session.execute(
            select(BackgroundJob).where(
                BackgroundJob.id == job_id,
                BackgroundJob.organization_id == principal.org(),
                BackgroundJob.job_type == JOB_TYPE,
            )
        )
    ).scalar_one_or_none()
    if job is None:
        raise NotFound("No import with that id.", code="import_not_found")
    return job


def progress_of(job: BackgroundJob) -> dict[str, Any]:
    """The counts so far and, for the first skipped or failed rows, why (``rows``: line,
    ``outcome`` skipped/error, and the matched lead or the column, value and message)."""
    result = job.result_data or {}
    total = result.get("total", (job.job_data or {}).get("total_rows"))
    rows = [r for r in result.get("rows") or [] if isinstance(r, dict)]
    return {
        "processed": int(result.get("processed", 0)),
        "total": None if total is None else int(total),
        "created": int(result.get("created", 0)),
        "updated": int(result.get("updated", 0)),
        "skipped": int(result.get("skipped", 0)),
        "errors": int(result.get("errors", 0)),
        "rows": sorted(rows, key=lambda r: int(r.get("line") or 0)),
    }
