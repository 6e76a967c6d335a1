"""No request handler blocks the event loop.

The log-in and import flows run over HTTP with asyncio's debug mode and its slow-callback
detection at 100 ms (``loop.slow_callback_duration``); the ``Executing … took …`` warnings
of the ``asyncio`` logger are collected, and the test fails on any of them.

What is caught is real work done inline: password hashing, parsing an uploaded file. A
callback that merely waited for the CPU (a loaded machine preempting the process) is not
blocking anything, so each warning is kept only when the callback also used 100 ms of the
loop thread's own CPU time (``time.thread_time``, measured around every callback). The
workload is chosen so that inline work trips it by far: reading a 150,000-row CSV (16 MB)
or a 20,000-row XLSX takes several times the limit in CPU; in a worker thread they cost
the loop nothing.

First-use costs that are not requests' work (compiling templates, lazy imports, the
garbage collector walking the whole test session's heap) are kept out: the flow runs once
before the detection starts, and the objects alive before it are frozen out of the
collector's reach (``gc.freeze``).
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openpyxl
import pytest

from tests.factories import PASSWORD, signup, upload_import, web_login

LIMIT = 0.1  # seconds
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def cpu_per_callback(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The loop thread's CPU time of the callback that ran last (a one-item list)."""
    last = [0.0]
    real = asyncio.Handle._run

    def measured(self: asyncio.Handle) -> None:
        start = time.thread_time()
        try:
            real(self)
        finally:
            last[0] = time.thread_time() - start

    monkeypatch.setattr(asyncio.Handle, "_run", measured)
    yield last


class Watch:
    """``start()`` turns asyncio's slow-callback detection on; ``found``: the warnings of the
    callbacks that did at least ``LIMIT`` seconds of CPU work on the loop since."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.found: list[str] = []

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self.found.clear()
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = LIMIT


@pytest.fixture
async def watch(cpu_per_callback: list[float]) -> AsyncIterator[Watch]:
    loop = asyncio.get_running_loop()
    watching = Watch(loop)
    found = watching.found

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Executing ") and cpu_per_callback[0] >= LIMIT:
                found.append(f"{message} ({cpu_per_callback[0]:.3f} s of CPU)")

    logger = logging.getLogger("asyncio")
    handler = Collect(logging.WARNING)
    debug, slow, level = loop.get_debug(), loop.slow_callback_duration, logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield watching
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = slow
        gc.unfreeze()
        logger.removeHandler(handler)
        logger.setLevel(level)


def big_csv(rows: int) -> bytes:
    lines = ["Nome;E-mail;Celular;Empresa;Cargo;Origem"]
    lines += [
        f"Pessoa Número {i};pessoa{i}@example.com;(11) 9{i % 10_000:04d}-{i % 7_919:04d};"
        f"Empresa {i % 997} Ltda;Gerente de Compras;Feira {i % 13}"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def xlsx(rows: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["Nome", "Email", "Telefone", "Empresa"])
    for i in range(rows):
        sheet.append([f"Pessoa {i}", f"p{i}@example.com", 11900000000 + i, f"Empresa {i % 97}"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


class Files:
    """A CSV and an XLSX to import, made before the watching starts (the test's own work)."""

    def __init__(self, csv_rows: int, xlsx_rows: int) -> None:
        self.csv_rows, self.xlsx_rows = csv_rows, xlsx_rows
        self.csv, self.xlsx = big_csv(csv_rows), xlsx(xlsx_rows)


async def log_in_and_import(client: httpx.AsyncClient, files: Files) -> dict[str, Any]:
    """Sign up, log in (right and wrong passwords, API and form), then upload a CSV and an
    XLSX to import; the analyses are checked so a refused upload cannot pass for fast."""
    account = await signup(client)
    r = await client.post(
        "/api/v1/auth/login", json={"email": account["email"], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/auth/login", json={"email": account["email"], "password": "senha-errada-1"}
    )
    assert r.status_code == 401, r.text
    assert (await client.get("/login")).status_code == 200
    await web_login(client, account["email"])
    h = account["headers"]
    analysis = await upload_import(client, h, "contatos.csv", files.csv)
    assert analysis["total_rows"] == files.csv_rows
    analysis = await upload_import(client, h, "planilha.xlsx", files.xlsx, XLSX_MIME)
    assert analysis["total_rows"] == files.xlsx_rows
    return account


async def test_log_in_and_import_never_block_the_event_loop(
    client: httpx.AsyncClient, watch: Watch
) -> None:
    await log_in_and_import(client, Files(csv_rows=20, xlsx_rows=20))  # first-use costs
    files = Files(csv_rows=150_000, xlsx_rows=20_000)
    watch.start()
    await log_in_and_import(client, files)
    assert watch.found == [], "\n".join(watch.found)


async def test_the_detection_reports_cpu_work_on_the_loop(watch: Watch) -> None:
    """The detector itself: a callback busy for twice the limit is reported, once. (A
    callback that only waits, preempted or blocked in a system call, uses no CPU and is
    not: this test is about work done on the loop.)"""
    watch.start()
    await asyncio.sleep(0)
    deadline = time.thread_time() + 2 * LIMIT
    while time.thread_time() < deadline:
        pass
    await asyncio.sleep(0)
    assert len(watch.found) == 1, watch.found
    assert watch.found[0].startswith("Executing <Task")
