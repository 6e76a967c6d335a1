"""Lead import files: reading CSV (UTF-8, UTF-8 with BOM, else Windows-1252; ``,`` ``;`` or
tab) and XLSX rows, and where uploads and per-chunk error files are kept
(``data_dir/imports/<org>/``). No database: ``leads.importing`` and ``leads.jobs`` use it.

Everything here is blocking (disk, CPU): callers on the event loop run it in a worker thread.
An upload is read once under :class:`ReadLimits` (``read_upload``): rows, columns and cell
length are capped, and an XLSX is refused from its zip directory alone when its contents
would unpack past the limit, before a byte of it is inflated.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from lovedcrm.config import Settings
from lovedcrm.core.errors import AppError, ValidationFailed
from lovedcrm.core.text import safe_cell

PREVIEW_ROWS = 10
# Excel's own row limit: a sheet naming a later row is not a spreadsheet anyone saved.
XLSX_MAX_LINE = 1_048_576


# --- reading files ------------------------------------------------------------------------


class UnreadableFile(ValidationFailed):
    code = "unreadable_file"


class TooManyRows(ValidationFailed):
    code = "too_many_rows"


class TooManyColumns(ValidationFailed):
    code = "too_many_columns"


class CellTooLong(ValidationFailed):
    code = "cell_too_long"


class UnpacksTooLarge(AppError):
    status, code, title = 413, "unpacked_too_large", "Content too large"


@dataclass(frozen=True)
class ReadLimits:
    """What an upload may hold (``Settings.import_max_*``)."""

    rows: int  # data rows, the header not counted
    columns: int
    cell_chars: int
    unpacked_bytes: int  # an XLSX's contents once unzipped

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        return cls(
            rows=settings.import_max_rows,
            columns=settings.import_max_columns,
            cell_chars=settings.import_max_cell_chars,
            unpacked_bytes=settings.import_max_unpacked_bytes,
        )


def check_xlsx_size(path: Path, limit: int) -> None:
    """Refuse an XLSX whose members would unpack past ``limit`` bytes, reading only the zip's
    directory. The sizes it declares are binding: Python's zip reader stops at a member's
    declared size (and fails its checksum), so a file cannot unpack to more than it says."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFile(f"The file is not a readable XLSX spreadsheet ({exc}).") from exc
    if unpacked > limit:
        raise UnpacksTooLarge(
            f"The spreadsheet unpacks to {unpacked} bytes, more than the import limit of "
            f"{limit} bytes. Split it into smaller files, or save it as CSV.",
            extra={"limit_bytes": limit, "unpacked_bytes": unpacked},
        )


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


def _xlsx_rows(path: Path, limits: ReadLimits | None) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # imported here: only imports of spreadsheets need it

    if limits is not None:
        check_xlsx_size(path, limits.unpacked_bytes)
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
            if limits is not None:
                # Checked before the cells are touched: a row's width is its last cell's
                # column, and openpyxl makes up the empty rows a sheet skips over.
                _check_width(line, len(row), limits)
                if line > XLSX_MAX_LINE:
                    raise UnreadableFile(
                        f"The spreadsheet names a row after {XLSX_MAX_LINE}, Excel's last."
                    )
            yield line, [cell_text(v) for v in row]
    finally:
        workbook.close()


def _check_width(line: int, width: int, limits: ReadLimits) -> None:
    if width > limits.columns:
        raise TooManyColumns(
            f"Line {line} has {width} columns; an import may have at most {limits.columns}.",
            extra={"line": line, "limit": limits.columns},
        )


def _check_cells(line: int, cells: list[str], limits: ReadLimits) -> None:
    _check_width(line, len(cells), limits)
    for column, cell in enumerate(cells, start=1):
        if len(cell) > limits.cell_chars:
            raise CellTooLong(
                f"The cell in line {line}, column {column} has {len(cell)} characters; "
                f"a cell may have at most {limits.cell_chars}.",
                extra={"line": line, "column": column, "limit": limits.cell_chars},
            )


def iter_rows(
    path: Path, fmt: FileFormat, limits: ReadLimits | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` for every non-blank row, the header included. With
    ``limits``, a file over any of them is refused as soon as the reading gets there."""
    rows = _xlsx_rows(path, limits) if fmt.format == "xlsx" else _csv_rows(path, fmt)
    seen = 0
    try:
        for line, cells in rows:
            if not any(cells):
                continue
            if limits is not None:
                _check_cells(line, cells, limits)
                seen += 1
                if seen > limits.rows + 1:  # the header and the data rows
                    raise TooManyRows(
                        f"The file has more than {limits.rows} rows, the import limit. "
                        "Split it into smaller files.",
                        extra={"limit": limits.rows},
                    )
            yield line, cells
    except (csv.Error, UnicodeDecodeError) as exc:
        if limits is not None and "field larger than field limit" in str(exc):
            raise CellTooLong(
                f"A cell has more than {limits.cell_chars} characters, the import limit.",
                extra={"limit": limits.cell_chars},
            ) from exc
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


def open_rows(path: Path, fmt: FileFormat, limits: ReadLimits | None = None) -> DataRows:
    """The header and an iterator over the data rows."""
    rows = iter_rows(path, fmt, limits)
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
        # The file's own words come back in a file people open in a spreadsheet.
        writer.writerow([e.line, safe_cell(e.column), safe_cell(e.value), safe_cell(e.message)])
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


def _preview_row(headers: list[str], line: int, cells: list[str]) -> dict[str, Any]:
    values = {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(headers)}
    return {"line": line, "values": values}


def preview_rows(data: DataRows, limit: int = PREVIEW_ROWS) -> list[dict[str, Any]]:
    """The first rows, each as ``{line, values: {header: cell}}``."""
    preview: list[dict[str, Any]] = []
    for line, cells in data.rows:
        if len(preview) >= limit:
            break
        preview.append(_preview_row(data.headers, line, cells))
    return preview


@dataclass(frozen=True)
class UploadRead:
    format: FileFormat
    headers: list[str]
    preview: list[dict[str, Any]]
    total_rows: int


def read_upload(path: Path, kind: Literal["csv", "xlsx"], limits: ReadLimits) -> UploadRead:
    """Read a whole upload once, under ``limits``: its format, header, first rows and number
    of data rows. Blocking (seconds for a large file): run it in a worker thread."""
    fmt = detect_format(path, kind)
    data = open_rows(path, fmt, limits)
    preview: list[dict[str, Any]] = []
    total = 0
    for line, cells in data.rows:
        total += 1
        if len(preview) < PREVIEW_ROWS:
            preview.append(_preview_row(data.headers, line, cells))
    return UploadRead(fmt, data.headers, preview, total)


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
