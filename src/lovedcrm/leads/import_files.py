"""Lead import files: reading CSV (UTF-8, UTF-8 with BOM, else Windows-1252; ``,`` ``;`` or
tab) and XLSX rows, and where uploads and per-chunk error files are kept
(``data_dir/imports/<org>/``). No database: ``leads.importing`` and ``leads.jobs`` use it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from lovedcrm.config import Settings
from lovedcrm.core.errors import AppError, ValidationFailed

PREVIEW_ROWS = 10


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


@dataclass
class RowError:
    line: int
    column: str
    value: str
    message: str


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


def preview_rows(data: DataRows, limit: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    """The first rows, each as ``{line, values: {header: cell}}``."""
    preview: list[dict[str, Any]] = []
    for line, cells in data.rows:
        if len(preview) >= limit:
            break
        values = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(data.headers)}
        preview.append({"line": line, "values": values})
    return preview


@dataclass(frozen=True)
class StoredUpload:
    file_name: str
    headers: list[str]
    preview: list[dict[str, Any]]
    total_rows: int


def stored_upload(
    settings: Settings, organization_id: uuid.UUID, upload_id: str
) -> StoredUpload | None:
    """The name, headers and first rows of an upload kept for the mapping step, or None when
    it is gone (or the id is not one)."""
    if not upload_id.isalnum() or len(upload_id) != 32:
        return None
    meta_path = imports_dir(settings, organization_id) / f"{upload_id}.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    path = upload_path(settings, organization_id, upload_id, meta["format"])
    if not path.is_file():
        return None
    fmt = FileFormat(meta["format"], meta.get("encoding"), meta.get("delimiter"))
    preview: list[dict[str, Any]] = []
    with contextlib.suppress(AppError):
        preview = preview_rows(open_rows(path, fmt))
    return StoredUpload(
        meta["file_name"], list(meta["headers"]), preview, int(meta.get("total_rows") or 0)
    )
