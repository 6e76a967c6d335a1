"""Importing leads from CSV and XLSX files.

Two steps, then a background job:

1. ``analyse_upload`` stores the file under ``data_dir/imports/<org>/<upload_id>.<ext>`` and
   reads it: encoding (UTF-8, UTF-8 with BOM, else Windows-1252/Latin-1), delimiter (``,``
   ``;`` or tab), headers, a suggested mapping (pt-BR and English names), the first rows.
2. ``start_import`` checks a mapping ``{column: field}`` and a duplicate policy and queues a
   ``leads.import`` job. There is no imports table: the job row is the import (its id is the
   import id; ``job_data`` holds the file, mapping, policy and who started it;
   ``result_data`` holds the progress).
3. The job reads the file in chunks of ``CHUNK_SIZE`` rows, each chunk in its own short
   transaction that also writes the progress, so progress is visible while it runs and a
   retried job resumes after the last committed chunk. Each row is validated with the same
   rules as ``POST /api/v1/leads`` (``LeadIn`` for e-mails and lengths, ``service._clean`` for
   phones in E.164 and custom fields); bad rows are written, by line number, to an errors file
   per chunk, and the good rows are imported. Duplicates (same e-mail or phone, or a similar
   name at the same company, in the organization or earlier in the file) are skipped,
   updated or created again as the policy says.

Deliberate limits: imported leads emit no per-row domain events (a 100,000-row file would
flood webhooks and live pages) and get no per-row audit row; one ``leads_import`` audit row
summarises the import. The uploads directory must be shared by the API and the workers.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lovedcrm.audit import service as audit
from lovedcrm.auth import authentication
from lovedcrm.config import Settings
from lovedcrm.core.errors import AppError, Conflict, NotFound, ValidationFailed
from lovedcrm.core.middleware import describe_bytes
from lovedcrm.core.principal import Principal
from lovedcrm.core.text import fold
from lovedcrm.db.tenant import after_commit, tenant_transaction
from lovedcrm.jobs.engine import LeaseLost
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.jobs.queue import JobContext, PermanentFailure, enqueue, job_handler
from lovedcrm.leads import assignment, service
from lovedcrm.leads.access import organization_settings, region_of
from lovedcrm.leads.dedup import Contact, DuplicateIndex
from lovedcrm.leads.models import Lead
from lovedcrm.leads.schemas import LeadIn
from lovedcrm.organizations import custom_fields
from lovedcrm.organizations.models import Organization

JOB_TYPE = "leads.import"
CHUNK_SIZE = 500
PREVIEW_ROWS = 10
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


# --- reading files ------------------------------------------------------------------------


class UnreadableFile(ValidationFailed):
    code = "unreadable_file"


@dataclass(frozen=True)
class FileFormat:
    format: Literal["csv", "xlsx"]
    encoding: str | None = None
    delimiter: str | None = None


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` (BOM), ``utf-8``, ``cp1252`` or, for bytes cp1252 leaves undefined,
    ``latin-1`` (which decodes anything)."""
    with path.open("rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def sniff_delimiter(sample: str) -> str:
    """``,``, ``;`` or tab, whichever splits the sample's lines most consistently."""
    with contextlib.suppress(csv.Error, ValueError, TypeError):
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def detect_format(path: Path, kind: Literal["csv", "xlsx"]) -> FileFormat:
    if kind == "xlsx":
        return FileFormat("xlsx")
    encoding = detect_encoding(path)
    with path.open(encoding=encoding, newline="") as f:
        sample = f.read(64 * 1024)
    return FileFormat("csv", encoding, sniff_delimiter(sample))


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a person would type."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, datetime):
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _csv_rows(path: Path, fmt: FileFormat) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding=fmt.encoding or "utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=fmt.delimiter or ",")
        line = 1
        for row in reader:
            yield line, [c.strip() for c in row]
            line = reader.line_num + 1


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # imported here: only imports of spreadsheets need it

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zip, XML or openpyxl errors: all mean "not a readable file"
        raise UnreadableFile(f"The file is not a readable XLSX spreadsheet ({exc}).") from exc
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            return
        with contextlib.suppress(AttributeError):
            sheet.reset_dimensions()  # some writers store wrong dimensions
        for line, row in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
            yield line, [cell_text(v) for v in row]
    finally:
        workbook.close()


def iter_rows(path: Path, fmt: FileFormat) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` for every non-blank row, the header included."""
    rows = _xlsx_rows(path) if fmt.format == "xlsx" else _csv_rows(path, fmt)
    try:
        for line, cells in rows:
            if any(cells):
                yield line, cells
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"The file could not be read as CSV ({exc}).") from exc


def unique_headers(cells: list[str]) -> list[str]:
    """Header names made unique and non-empty (``column 3``, ``Telefone (2)``)."""
    seen: dict[str, int] = {}
    out = []
    for i, raw in enumerate(cells, start=1):
        name = raw.strip() or f"column {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        out.append(name)
    return out


@dataclass
class DataRows:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]


def open_rows(path: Path, fmt: FileFormat) -> DataRows:
    """The header and an iterator over the data rows."""
    rows = iter_rows(path, fmt)
    first = next(rows, None)
    if first is None:
        raise ValidationFailed("The file is empty: no header row.", code="empty_file")
    return DataRows(unique_headers(first[1]), rows)


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


@dataclass
class RowError:
    line: int
    column: str
    value: str
    message: str


def _pydantic_message(err: Any) -> str:
    if err.get("type") == "missing":
        return "is required"
    return str(err.get("msg", "is not valid"))


async def convert_row(
    session: AsyncSession,
    principal: Principal,
    line: int,
    cells: dict[str, str],
    mapping: dict[str, str],
    definitions: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any] | None, list[RowError]]:
    """A row → cleaned lead data (as ``create_lead`` would store it), or its errors."""
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
                errors.append(RowError(line, column, raw, "is not a number"))
        elif target == "probability_percentage":
            try:
                data[target] = int(parse_decimal(raw.rstrip("%")))
            except (InvalidOperation, ValueError):
                errors.append(RowError(line, column, raw, "is not a whole number"))
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
                RowError(line, column, cells.get(column, ""), _pydantic_message(dict(err)))
            )
        return None, errors
    values = checked.model_dump(exclude_unset=True, exclude={"allow_duplicate"})
    values.setdefault("custom_fields", {})
    try:
        cleaned = await service._clean(session, principal, values)
    except ValidationFailed as exc:
        for err in exc.extra.get("errors", []):
            column = column_for(err["field"])
            errors.append(RowError(line, column, cells.get(column, ""), err["message"]))
        return None, errors
    return cleaned, []


# --- storage ------------------------------------------------------------------------------


def imports_dir(settings: Settings, organization_id: uuid.UUID) -> Path:
    return settings.data_dir.resolve() / "imports" / str(organization_id)


def upload_path(settings: Settings, organization_id: uuid.UUID, upload_id: str, ext: str) -> Path:
    return imports_dir(settings, organization_id) / f"{upload_id}.{ext}"


def errors_dir(settings: Settings, organization_id: uuid.UUID, job_id: uuid.UUID) -> Path:
    return imports_dir(settings, organization_id) / f"{job_id}.errors"


ERRORS_HEADER = ("line", "column", "value", "message")


def write_chunk_errors(directory: Path, first_row: int, errors: list[RowError]) -> None:
    """One file per chunk, named by its first row: a retried chunk overwrites its own."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{first_row:09d}.csv"
    if not errors:
        target.unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for e in errors:
        writer.writerow([e.line, e.column, e.value, e.message])
    tmp = target.with_suffix(".tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    tmp.replace(target)


def iter_errors_csv(directory: Path) -> Iterator[bytes]:
    """The errors file: UTF-8 with BOM, header ``line,column,value,message``."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(ERRORS_HEADER)
    yield codecs.BOM_UTF8 + buffer.getvalue().encode()
    if not directory.is_dir():
        return
    for part in sorted(directory.glob("*.csv")):
        with part.open("rb") as f:
            while block := f.read(1 << 16):
                yield block


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
                out.write(chunk)
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
        fmt = detect_format(path, kind)
        data = open_rows(path, fmt)
        preview: list[dict[str, Any]] = []
        total = 0
        for line, cells in data.rows:
            total += 1
            if len(preview) < PREVIEW_ROWS:
                values = {
                    h: (cells[i] if i < len(cells) else "") for i, h in enumerate(data.headers)
                }
                preview.append({"line": line, "values": values})
    except BaseException:
        path.unlink(missing_ok=True)
        raise
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
        "headers": data.headers,
        "total_rows": total,
        "uploaded_by": str(principal.user_id),
        "uploaded_at": datetime.now().astimezone().isoformat(),
    }
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return UploadAnalysis(
        upload_id=upload_id,
        file_name=clean_name,
        format=fmt.format,
        encoding=fmt.encoding,
        delimiter=fmt.delimiter,
        headers=data.headers,
        suggested_mapping=suggest_mapping(data.headers, definitions),
        fields=mapping_targets(definitions),
        preview=preview,
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


def progress_of(job: BackgroundJob) -> dict[str, int | None]:
    result = job.result_data or {}
    total = result.get("total", (job.job_data or {}).get("total_rows"))
    return {
        "processed": int(result.get("processed", 0)),
        "total": None if total is None else int(total),
        "created": int(result.get("created", 0)),
        "updated": int(result.get("updated", 0)),
        "skipped": int(result.get("skipped", 0)),
        "errors": int(result.get("errors", 0)),
    }


# --- step 3: the job ----------------------------------------------------------------------


@dataclass
class Progress:
    processed: int = 0
    total: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_PROGRESS = text(
    """
    UPDATE background_jobs SET result_data = CAST(:progress AS jsonb), updated_at = now()
     WHERE id = :id AND status = 'running' AND attempts = :attempt
    """
)


async def _save_progress(session: AsyncSession, ctx: JobContext, progress: Progress) -> None:
    """In the chunk's transaction, guarded by the attempt: if another worker has taken the job
    (our lease expired), this chunk rolls back."""
    done = await session.execute(
        _PROGRESS,
        {"progress": json.dumps(progress.as_dict()), "id": ctx.job_id, "attempt": ctx.attempt},
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(str(ctx.job_id))


async def _job_principal(
    session: AsyncSession, organization_id: uuid.UUID, payload: ImportPayload
) -> Principal:
    principal = await authentication.principal_for_member(
        session, organization_id, payload.created_by, limit_to=payload.permissions
    )
    if principal is None:
        raise PermanentFailure("the member who started the import is no longer active")
    if not principal.can("leads:import"):
        raise PermanentFailure("the member who started the import may no longer import leads")
    return principal


@dataclass
class _Chunk:
    first_row: int  # index of its first data row (0-based), names its errors file
    rows: list[tuple[int, list[str]]]


def _chunks(data: DataRows, start: int, size: int) -> Iterator[_Chunk]:
    index = 0
    current: list[tuple[int, list[str]]] = []
    first = start
    for line, cells in data.rows:
        if index < start:
            index += 1
            continue
        if not current:
            first = index
        current.append((line, cells))
        index += 1
        if len(current) >= size:
            yield _Chunk(first, current)
            current = []
    if current:
        yield _Chunk(first, current)


def _apply_update(lead: Lead, data: dict[str, Any]) -> None:
    """The row's non-empty values onto an existing lead (custom fields merged)."""
    for key, value in data.items():
        if key == "custom_fields":
            if value:
                lead.custom_fields = {**(lead.custom_fields or {}), **value}
        elif value not in (None, ""):
            setattr(lead, key, value)
    lead.updated_at = func.now()


async def _run_chunk(
    ctx: JobContext,
    principal: Principal,
    payload: ImportPayload,
    headers: list[str],
    chunk: _Chunk,
    progress: Progress,
) -> Progress:
    org_id = principal.org()
    out = Progress(**progress.as_dict())
    errors: list[RowError] = []
    async with tenant_transaction(ctx.database.sessionmaker, org_id, principal.user_id) as s:
        org_settings = await organization_settings(s, org_id)
        definitions = {d["key"]: d for d in custom_fields.definitions_in(org_settings)}
        stage_id = (await service.first_stage(s, org_id)).id
        cleaned: list[tuple[int, dict[str, Any]]] = []
        for line, cells in chunk.rows:
            by_header = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers)}
            data, row_errors = await convert_row(
                s, principal, line, by_header, payload.mapping, definitions
            )
            if data is None:
                errors += row_errors
            else:
                cleaned.append((line, data))
        region = region_of(org_settings)
        contacts = {line: Contact.from_values(data, region) for line, data in cleaned}
        known = await DuplicateIndex.load(s, org_id, list(contacts.values()))
        for line, data in cleaned:
            existing = known.match(contacts[line]) if payload.duplicate_policy != "create" else None
            if existing is not None and payload.duplicate_policy == "skip":
                out.skipped += 1
                continue
            if existing is not None:  # update
                if not (
                    principal.can("leads:write_all") or existing.assigned_to == principal.user_id
                ):
                    errors.append(
                        RowError(line, "", "", "duplicate of a lead you may not edit: not updated")
                    )
                    continue
                _apply_update(existing, data)
                out.updated += 1
                continue
            if not principal.can("leads:write_all"):
                data["assigned_to"] = principal.user_id
            elif "assigned_to" not in data:  # as create_lead: the assignment setting decides
                data["assigned_to"] = await assignment.automatic_assignee(s, org_id, org_settings)
            lead = Lead(id=uuid.uuid4(), organization_id=org_id, stage_id=stage_id, **data)
            s.add(lead)
            known.add(lead)
            out.created += 1
        await s.flush()
        out.errors += len(errors)
        out.processed += len(chunk.rows)
        write_chunk_errors(errors_dir(ctx.settings, org_id, ctx.job_id), chunk.first_row, errors)
        await _save_progress(s, ctx, out)
    return out


@job_handler(JOB_TYPE, ImportPayload, max_attempts=3, timeout_seconds=3600)
async def run_import(ctx: JobContext, payload: ImportPayload) -> dict[str, Any] | None:
    """One job per import; each chunk commits on its own (with the progress), so a 100,000-row
    file holds one worker slot, never a long transaction, and a retry resumes where the last
    attempt stopped. Other organizations' jobs keep running on the other slots."""
    org_id = ctx.organization_id
    if org_id is None:
        raise PermanentFailure("an import belongs to an organization")
    path = ctx.settings.data_dir.resolve() / payload.path
    if not path.is_file():
        raise PermanentFailure(f"the uploaded file {payload.file_name!r} is gone")
    async with tenant_transaction(ctx.database.sessionmaker, org_id, payload.created_by) as s:
        principal = await _job_principal(s, org_id, payload)
    fmt = FileFormat(payload.format, payload.encoding, payload.delimiter)
    try:
        data = open_rows(path, fmt)
    except ValidationFailed as exc:
        raise PermanentFailure(exc.detail) from exc
    previous = (
        await ctx.session.execute(
            select(BackgroundJob.result_data).where(BackgroundJob.id == ctx.job_id)
        )
    ).scalar_one_or_none() or {}
    progress = Progress(
        **{k: int(previous.get(k, 0)) for k in ("processed", "created", "updated", "skipped")},
        errors=int(previous.get("errors", 0)),
        total=payload.total_rows or 0,
    )
    for chunk in _chunks(data, progress.processed, CHUNK_SIZE):
        progress = await _run_chunk(ctx, principal, payload, data.headers, chunk, progress)
    progress.total = progress.processed
    await audit.record(
        ctx.session,
        action="leads_import",
        resource_type="import",
        resource_id=ctx.job_id,
        organization_id=org_id,
        user_id=payload.created_by,
        changes={
            "file_name": payload.file_name,
            "format": payload.format,
            "mapping": payload.mapping,
            "duplicate_policy": payload.duplicate_policy,
            **progress.as_dict(),
        },
    )

    async def _drop_upload() -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    after_commit(ctx.session, _drop_upload)
    return progress.as_dict()
