"""E-mail campaigns against a local SMTP server (aiosmtpd) capturing every message: consent,
suppression, throttled batches, RFC 8058 one-click unsubscribe, signed tracking links, a
hard bounce, results; preview, test send and scheduling."""

from __future__ import annotations

import re
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import httpx

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.marketing import campaigns
from tests.factories import web_login
from tests.marketing.conftest import SmtpSink, grant_consent, owner_rows, run_marketing

HTML = (
    "<p>Olá {{primeiro_nome}},</p>"
    '<p><a href="https://loja.example.com/oferta?x=1&amp;y=2">Ver oferta</a></p>'
)
TEXT = "Olá {{primeiro_nome}}, veja https://loja.example.com/oferta"


def _insert_leads(database: Database, org_id: Any, prefix: str, n: int, source: str) -> list[Any]:
    rows = owner_rows(
        database,
        "INSERT INTO leads (organization_id, full_name, email, stage_id, source, custom_fields)"
        " SELECT :org, 'Pessoa ' || g, :prefix || g || '@example.com',"
        " (SELECT id FROM pipeline_stages WHERE organization_id = :org"
        "  ORDER BY stage_order LIMIT 1),"
        " :source, '{}'::jsonb FROM generate_series(1, :n) AS g RETURNING id",
        org=org_id,
        prefix=prefix,
        n=n,
        source=source,
    )
    return [r.id for r in rows]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _html(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no HTML part")


async def _campaign(
    client: httpx.AsyncClient, headers: dict[str, str], **audience: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/marketing/campaigns",
        headers=headers,
        json={
            "name": "Black Friday",
            "subject": "Oferta para {{primeiro_nome}}",
            "html_body": HTML,
            "text_body": TEXT,
            "audience": audience,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_1000_recipient_campaign_counts_unsubscribes_a_bounce_and_clicks(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    smtp_sink: SmtpSink,
    smtp_settings: Settings,
    manual_clock: ManualClock,
) -> None:
    with_consent = _insert_leads(database, org["org_id"], "cliente", 1000, "newsletter")
    _insert_leads(database, org["org_id"], "semconsent", 20, "newsletter")
    _insert_leads(database, org["org_id"], "outro", 5, "indicacao")  # not in the audience
    grant_consent(database, org["org_id"], with_consent)
    smtp_sink.refuse.add("cliente7@example.com")  # a hard bounce
    campaign = await _campaign(client, org["headers"], source="newsletter")
    r = await client.post(
        "/api/v1/marketing/audience/count", headers=org["headers"], json={"source": "newsletter"}
    )
    assert r.json() == {"leads": 1020, "with_email": 1020, "sendable": 1000}

    r = await client.post(
        f"/api/v1/marketing/campaigns/{campaign['id']}/schedule", headers=org["headers"], json={}
    )
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    await run_marketing(database, smtp_settings, rounds=20)
    assert len(smtp_sink.messages) == 999
    batches = owner_rows(
        database,
        "SELECT count(*), min(priority) FROM background_jobs"
        " WHERE job_type = 'marketing.send_batch'"
        " AND organization_id = :o",
        o=org["org_id"],
    )[0]
    assert batches[0] == 6 and batches[1] < 0  # 5 batches of 200 + the one that finishes; bulk
    msgs = smtp_sink.parsed()
    first = next(m for m in msgs if m["To"] == "cliente1@example.com")
    assert first["Subject"] == "Oferta para Pessoa"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = first["List-Unsubscribe"].strip("<>")
    html = _html(first)
    assert 'href="https://loja.example.com' not in html  # every link goes through /m/c/
    click_url = re.search(r'href="([^"]*/m/c/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    pixel_url = re.search(r'<img src="([^"]*/m/o/[^"]+)"', html).group(1)  # type: ignore[union-attr]

    # Opens and clicks (a click counts as an open; two clicks of one recipient count once).
    assert (await client.get(_path(pixel_url))).headers["content-type"] == "image/gif"
    r = await client.get(_path(click_url.replace("&amp;", "&")))
    assert (
        r.status_code == 302 and r.headers["location"] == "https://loja.example.com/oferta?x=1&y=2"
    )
    assert (await client.get(_path(click_url.replace("&amp;", "&")))).status_code == 302
    for name in ("cliente2@example.com", "cliente3@example.com"):
        msg = next(m for m in msgs if m["To"] == name)
        link = re.search(r'href="([^"]*/m/c/[^"]+)"', _html(msg)).group(1)  # type: ignore[union-attr]
        assert (await client.get(_path(link))).status_code == 302

    # A forged or altered link → 404, and never a redirect elsewhere.
    token = _path(click_url).rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    assert (await client.get(f"/m/c/{body}.{mac[:-2]}xx")).status_code == 404
    forged = campaigns._b64(
        b'{"o":"%s","r":"x","k":"click","u":"https://evil.example"}' % str(org["org_id"]).encode()
    )
    assert (await client.get(f"/m/c/{forged}.{mac}")).status_code == 404
    assert (
        (await client.get(f"/m/c/{token}", params={"u": "https://evil.example"}))
        .headers["location"]
        .startswith("https://loja.example.com")
    )

    # RFC 8058 one-click unsubscribe (the mail client's POST), and two through the page.
    r = await client.post(
        _path(unsubscribe_url),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "data-unsubscribed" in r.text
    for name in ("cliente4@example.com", "cliente5@example.com"):
        msg = next(m for m in msgs if m["To"] == name)
        url = _path(msg["List-Unsubscribe"].strip("<>"))
        assert (await client.get(url)).status_code == 200
        assert (await client.post(url, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    owner_rows(
        database,
        "UPDATE leads SET status = 'converted', converted_at = now() + interval '1 hour'"
        " WHERE email = 'cliente9@example.com'",
    )

    r = await client.get(
        f"/api/v1/marketing/campaigns/{campaign['id']}/results", headers=org["headers"]
    )
    assert r.json() == {
        "recipients": 1000,
        "sent": 999,
        "delivered": 999,
        "opened": 3,
        "clicked": 3,
        "replied": 0,
        "unsubscribed": 3,
        "bounced": 1,
        "failed": 0,
        "converted": 1,
        "skipped_no_consent": 20,
        "skipped_suppressed": 0,
    }
    assert (
        await client.get(f"/api/v1/marketing/campaigns/{campaign['id']}", headers=org["headers"])
    ).json()["status"] == "sent"
    consent = owner_rows(
        database,
        "SELECT c.status, c.source FROM lead_consents c JOIN leads l ON l.id = c.lead_id"
        " WHERE l.email = 'cliente1@example.com'"
        " ORDER BY c.recorded_at DESC, c.created_at DESC LIMIT 1",
    )
    assert tuple(consent[0]) == ("withdrawn", "unsubscribe")
    reasons = dict(
        owner_rows(
            database,
            "SELECT email, reason FROM email_suppressions WHERE organization_id = :o",
            o=org["org_id"],
        )
    )
    assert reasons == {
        "cliente7@example.com": "bounce",
        "cliente1@example.com": "unsubscribed",
        "cliente4@example.com": "unsubscribed",
        "cliente5@example.com": "unsubscribed",
    }

    # The next campaign to the same audience: the unsubscribed have withdrawn their consent,
    # the bounced address is suppressed.
    smtp_sink.messages.clear()
    again = await _campaign(client, org["headers"], source="newsletter")
    await client.post(
        f"/api/v1/marketing/campaigns/{again['id']}/schedule", headers=org["headers"], json={}
    )
    await run_marketing(database, smtp_settings, rounds=20)
    assert len(smtp_sink.messages) == 996
    r = await client.get(
        f"/api/v1/marketing/campaigns/{again['id']}/results", headers=org["headers"]
    )
    assert (r.json()["skipped_no_consent"], r.json()["skipped_suppressed"]) == (23, 1)

    await web_login(client, org["email"])
    page = await client.get(f"/marketing/campaigns/{campaign['id']}")
    assert page.status_code == 200 and 'data-result="unsubscribed"' in page.text


async def test_preview_test_send_and_scheduling(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    smtp_sink: SmtpSink,
    smtp_settings: Settings,
    settings: Settings,
    manual_clock: ManualClock,
) -> None:
    ids = _insert_leads(database, org["org_id"], "agenda", 3, "site")
    grant_consent(database, org["org_id"], ids)
    campaign = await _campaign(client, org["headers"], source="site")
    r = await client.get(
        f"/api/v1/marketing/campaigns/{campaign['id']}/preview", headers=org["headers"]
    )
    assert r.json()["subject"] == "Oferta para Pessoa"
    assert "Olá Pessoa" in r.json()["html"]
    r = await client.post(
        f"/api/v1/marketing/campaigns/{campaign['id']}/test",
        headers=org["headers"],
        json={"to": "not-an-address"},
    )
    assert r.status_code == 422
    r = await client.post(
        f"/api/v1/marketing/campaigns/{campaign['id']}/test",
        headers=org["headers"],
        json={"to": "ana@example.com"},
    )
    assert r.status_code == 202
    # The test send goes through the configured mail backend (files in the test settings).
    eml = list((settings.data_dir / "mail" / "marketing").glob("test-*.eml"))
    assert eml and b"[TESTE] Oferta para Pessoa" in eml[-1].read_bytes()

    later = manual_clock.now().replace(microsecond=0) + __import__("datetime").timedelta(hours=2)
    r = await client.post(
        f"/api/v1/marketing/campaigns/{campaign['id']}/schedule",
        headers=org["headers"],
        json={"send_at": later.isoformat()},
    )
    assert r.status_code == 200 and r.json()["status"] == "scheduled"
    from lovedcrm.jobs.engine import run_until_idle

    await run_until_idle(database, smtp_settings, types=["marketing.campaign_start"], timeout=10)
    assert smtp_sink.messages == []  # not yet
    manual_clock.advance(hours=2, seconds=1)
    await run_marketing(database, smtp_settings)
    assert sorted(m["To"] for m in smtp_sink.parsed()) == [
        "agenda1@example.com",
        "agenda2@example.com",
        "agenda3@example.com",
    ]
    r = await client.patch(
        f"/api/v1/marketing/campaigns/{campaign['id']}", headers=org["headers"], json={"name": "x"}
    )
    assert r.status_code == 409


async def test_a_campaign_needs_settings_manage_and_stays_in_its_organization(
    client: httpx.AsyncClient, org: dict[str, Any]
) -> None:
    from tests.factories import join_and_login, signup

    campaign = await _campaign(client, org["headers"])
    sales = await join_and_login(client, org["headers"], "sales")
    r = await client.post(
        "/api/v1/marketing/campaigns",
        headers=sales,
        json={"name": "x", "subject": "x", "html_body": "x", "text_body": "x"},
    )
    assert r.status_code == 403
    other = await signup(client)
    r = await client.get(f"/api/v1/marketing/campaigns/{campaign['id']}", headers=other["headers"])
    assert r.status_code == 404


async def test_campaigns_sending_at_once_share_the_organizations_throttle(
    client: httpx.AsyncClient,
    org: dict[str, Any],
    database: Database,
    smtp_sink: SmtpSink,
    smtp_settings: Settings,
    manual_clock: ManualClock,
) -> None:
    """Two campaigns of one organization sending together: each paces its batches twice as
    far apart, so the organization stays within SEND_RATE_PER_HOUR; a lead whose erasure was
    asked for meanwhile is not mailed."""
    from lovedcrm.jobs.engine import run_until_idle
    from lovedcrm.marketing import sending

    ids = _insert_leads(database, org["org_id"], "junto", 450, "dupla")
    grant_consent(database, org["org_id"], ids)
    first = await _campaign(client, org["headers"], source="dupla")
    second = await _campaign(client, org["headers"], source="dupla")
    for c in (first, second):
        r = await client.post(
            f"/api/v1/marketing/campaigns/{c['id']}/schedule", headers=org["headers"], json={}
        )
        assert r.status_code == 200, r.text
    await run_until_idle(database, smtp_settings, types=["marketing.campaign_start"], timeout=30)
    # Each campaign's first recipient (in its first batch): an erasure is asked for.
    erased = {
        row.email
        for row in owner_rows(
            database,
            "UPDATE leads SET erased_at = now() WHERE id IN (SELECT DISTINCT ON (campaign_id)"
            " lead_id FROM campaign_recipients WHERE organization_id = :o"
            " ORDER BY campaign_id, id) RETURNING email",
            o=org["org_id"],
        )
    }
    assert erased
    # The first batch of each (due now); the next ones wait for the throttle.
    await run_until_idle(database, smtp_settings, types=["marketing.send_batch"], timeout=60)
    mailed = [m["To"] for m in smtp_sink.parsed()]
    assert not erased & set(mailed)
    skipped = owner_rows(
        database,
        "SELECT count(*) AS n FROM campaign_recipients WHERE organization_id = :o"
        " AND status = 'skipped'",
        o=org["org_id"],
    )[0].n
    assert skipped >= 2 and len(mailed) + skipped == 2 * 200
    waits = [
        row.wait
        for row in owner_rows(
            database,
            "SELECT extract(epoch FROM scheduled_for - :now) AS wait FROM background_jobs"
            " WHERE job_type = 'marketing.send_batch' AND organization_id = :o"
            " AND status = 'pending'",
            o=org["org_id"],
            now=manual_clock.now(),
        )
    ]
    interval = sending.batch_interval(200).total_seconds()
    assert len(waits) == 2
    # Each campaign alone would wait one interval (less the time its batch took).
    assert all(1.5 * interval < float(w) <= 2 * interval for w in waits), (waits, interval)
