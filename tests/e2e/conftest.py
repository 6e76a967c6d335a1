"""Browser tests: Playwright driving the system Chromium against a real `lovedcrm serve`.

Outside the workplace a machine may have no Chromium: these tests then skip with the reason.
Under CI (CI=true) a missing browser is a failure, never a skip. Screenshots go to
`artifacts/screenshots/` (not committed)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    candidates = [
        os.environ.get("LOVEDCRM_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ]
    for path in candidates:
        if path and Path(path).exists():
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is missing under CI (.ci/run installs the 'chromium' package)")
    pytest.skip("no Chromium on this machine: install the 'chromium' package to run browser tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The live server's ``LOVEDCRM_DATA_DIR``: its mail outbox is ``mail/*.eml``."""
    return tmp_path_factory.mktemp("e2e-data")


# What the running live server is (set by ``live_server``): read when a test fails, to say
# what its worker was doing.
_LIVE: dict[str, Any] = {}
_JOBS_NOW = """
    SELECT status, job_type, organization_id IS NULL AS system, count(*) AS n,
           min(scheduled_for) AS oldest, max(locked_by) AS worker
      FROM background_jobs
     WHERE status IN ('pending', 'retrying', 'running')
        OR completed_at > now() - interval '2 minutes'
     GROUP BY 1, 2, 3 ORDER BY 1, 2
"""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed browser test's report carries the jobs queued or running (or finished in the
    last two minutes) and the end of the live server's log."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or not _LIVE:
        return
    try:
        engine = sa.create_engine(_LIVE["owner_url"])
        with engine.connect() as conn:
            rows = conn.execute(sa.text(_JOBS_NOW)).all()
        engine.dispose()
        report.sections.append(("jobs at failure", "\n".join(str(tuple(r)) for r in rows)))
    except Exception as exc:  # the report must not fail
        report.sections.append(("jobs at failure", repr(exc)))
    log = Path(_LIVE["log"])
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-60:]
        report.sections.append(("live server log (end)", "\n".join(tail)))


@pytest.fixture(scope="module")
def live_server(owner_url: str, live_data_dir: Path) -> Iterator[str]:
    """`lovedcrm serve` (with its job worker) on a free port, on this run's test database.
    Module-scoped: its worker must not outlive the browser tests and take other tests' jobs.

    The jobs other tests left waiting in this database (deliveries to hosts that do not
    exist, rescores of their leads…, and any an earlier test's worker stopped in the middle
    of, whose lease would expire and hand them to this server) are set aside first: the
    browser tests' server works only on what they create, not on a backlog from the rest of
    the suite."""
    engine = sa.create_engine(owner_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE background_jobs SET status = 'failed', completed_at = now(),"
                " error_message = 'set aside before the browser tests'"
                " WHERE status IN ('pending', 'retrying', 'running')"
            )
        )
    engine.dispose()
    port = _free_port()
    data_dir = live_data_dir
    log = (ROOT / "artifacts").joinpath("e2e-server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": owner_url,
        "LOVEDCRM_DATA_DIR": str(data_dir),
        "LOVEDCRM_LOG_LEVEL": "WARNING",
        "LOVEDCRM_BASE_URL": f"http://127.0.0.1:{port}",
        # The fake providers listen on loopback (core.outbound refuses it unless allowed).
        "LOVEDCRM_OUTBOUND_ALLOW": "127.0.0.1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "lovedcrm"),
                "serve",
                "--no-migrate",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    _LIVE.update(owner_url=owner_url, log=str(log))
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"the server did not start; see {log}")
        yield base
    finally:
        _LIVE.clear()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser: Any, live_server: str) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport=DESKTOP, base_url=live_server, locale="pt-BR")
    pg = await context.new_page()
    yield pg
    await context.close()


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
