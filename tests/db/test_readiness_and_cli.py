"""/readyz against a database that is not at head, and the command line end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from lovedcrm.db.bootstrap import ensure_app_role
from lovedcrm.db.engine import create_database
from lovedcrm.db.migrate import head_revision, upgrade
from lovedcrm.demo import INBOUND as DEMO_INBOUND
from lovedcrm.demo import LEADS as DEMO_LEADS

LOVEDCRM = Path(sys.executable).parent / "lovedcrm"


async def test_readyz_is_503_when_migrations_are_behind(
    empty_database: Callable[[], str], settings: Settings
) -> None:
    url = empty_database()
    upgrade(url, "0001")
    ensure_app_role(url, "lovedcrm_app")
    s = settings.model_copy(update={"database_url": url})
    db = create_database(s, owner=make_url(url))
    try:
        app = create_app(s, database=db)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["migrations"] == {"current": "0001", "head": head_revision()}
    finally:
        await db.dispose()


def test_cli_upgrade_demo_and_create_admin(
    empty_database: Callable[[], str], tmp_path: Path
) -> None:
    url = empty_database()
    env = {
        **os.environ,
        "LOVEDCRM_DATABASE_URL": url,
        "LOVEDCRM_DATA_DIR": str(tmp_path),
        "LOVEDCRM_LOG_LEVEL": "WARNING",
    }

    def run(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LOVEDCRM), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            input=input_text,
        )

    r = run("db", "upgrade")
    assert r.returncode == 0, r.stderr
    r = run("db", "current")
    assert f'"current": "{head_revision()}"' in r.stdout
    first = run("demo")
    assert first.returncode == 0, first.stderr
    assert "demo@example.com" in first.stdout and "password:" in first.stdout
    again = run("demo")
    assert again.returncode == 0 and "password:" not in again.stdout  # printed only the first time
    r = run(
        "create-admin",
        "--email",
        "Boss@Example.com",
        "--name",
        "Boss",
        "--organization",
        "Boss Ltda",
        "--password",
        "boss-password-1",
    )
    assert r.returncode == 0, r.stderr
    assert "boss-ltda" in r.stdout
    r = run(
        "create-admin",
        "--email",
        "boss@example.com",
        "--name",
        "Boss",
        "--organization",
        "X",
        "--password",
        "boss-password-1",
    )
    assert r.returncode != 0 and "already exists" in r.stderr
    # The demo's WhatsApp is the sandbox; a customer's message can be typed in.
    r = run("whatsapp", "inject", "--organization", "loved-demo", "--from", "11 98888-7777", "Oi!")
    assert r.returncode == 0 and r.stdout.startswith("queued sandbox-in."), r.stderr
    r = run("whatsapp", "inject", "--organization", "boss-ltda", "--from", "11988887777", "x")
    assert r.returncode != 0 and "sandbox is not the active" in r.stderr
    r = run("whatsapp", "inject", "--organization", "nope", "--from", "11988887777", "x")
    assert r.returncode != 0 and "No organization" in r.stderr
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads")).scalar() == len(DEMO_LEADS)
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM whatsapp_configs"
                    " WHERE is_active AND provider_type = 'sandbox'"
                )
            ).scalar()
            == 1
        )
        # The demo's customers' messages and the injected one wait for the worker.
        assert (
            conn.execute(
                text("SELECT count(*) FROM background_jobs WHERE job_type = 'whatsapp.inbound'")
            ).scalar()
            == len(DEMO_INBOUND) + 1
        )
        assert conn.execute(
            text("SELECT email_verified FROM users WHERE email = 'boss@example.com'")
        ).scalar()
    engine.dispose()
    r = run("db", "downgrade", "base", "--yes")
    assert r.returncode == 0, r.stderr
