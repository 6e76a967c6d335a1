"""Lead scoring through the API and the jobs, on the real database: the rules model while an
organization has too few outcomes (and how many more it needs), the score with its reasons
in the reader's words, who may see it, scores kept current by debounced jobs, leakage
prevention, and a real training (child process) with promotion, history, the integrity
check of the stored artifact and a failed training."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lovedcrm.config import Settings
from lovedcrm.core.clock import ManualClock
from lovedcrm.db.engine import Database
from lovedcrm.db.tenant import set_tenant
from lovedcrm.jobs.engine import ClaimedJob, Worker, run_until_idle
from lovedcrm.jobs.periodic import enqueue_due, schedule
from lovedcrm.scoring import features, retraining
from lovedcrm.scoring.jobs import NIGHTLY, RETRAIN_ALL
from lovedcrm.scoring.service import RESCORE_LEAD, RESCORE_ORGANIZATION, TRAIN
from tests.factories import create_lead, join_and_login, owner_sql, set_custom_fields, signup

SCORING_JOBS = [RESCORE_LEAD, RESCORE_ORGANIZATION, TRAIN]


async def _close(
    client: httpx.AsyncClient, headers: dict[str, str], lead_id: str, won: bool
) -> None:
    body: dict[str, Any] = (
        {"status": "converted"} if won else {"status": "lost", "lost_reason": "price"}
    )
    r = await client.patch(f"/api/v1/leads/{lead_id}", headers=headers, json=body)
    assert r.status_code == 200, r.text


def _stored(owner: sa.Engine, lead_id: str) -> Any:
    return owner_sql(
        owner,
        "SELECT lead_score, probability_percentage, score_last_calculated_at, version"
        " FROM leads WHERE id = :i",
        i=lead_id,
    )[0]


async def test_the_rules_score_a_lead_and_say_how_many_outcomes_are_missing(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(
        client, h, source="referral", company="Padaria Pão Quente", email="ana@padaria.com.br"
    )
    r = await client.get(
        f"/api/v1/leads/{lead['id']}/score", headers={**h, "Accept-Language": "pt-BR"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {
        "id": None,
        "model_type": "rules_based",
        "model_version": None,
        "calibrated": False,
    }
    assert body["probability"] is None  # the rules give points, not a probability
    # base 30 + referral 20 + activity today 15 + company 5 + corporate e-mail 5
    assert body["score"] == 75
    texts = [f["text"] for f in body["factors_up"]]
    assert "Origem: indicação" in texts
    assert body["outcomes"] == {"won": 0, "lost": 0, "won_needed": 30, "lost_needed": 30}
    r = await client.get(
        f"/api/v1/leads/{lead['id']}/score", headers={**h, "Accept-Language": "en"}
    )
    # The organization's language (pt-BR by default) wins over the caller's.
    assert "Origem: indicação" in [f["text"] for f in r.json()["factors_up"]]

    r = await client.post("/api/v1/scoring/retrain", headers=h)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "not_enough_outcomes"
    assert (problem["won_needed"], problem["lost_needed"]) == (30, 30)
    assert "30 more won and 30 more lost" in problem["detail"]

    r = await client.get("/api/v1/scoring/models", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["active_model_type"] == "rules_based"
    assert r.json()["outcomes"]["won_needed"] == 30


async def test_a_salesperson_sees_the_score_of_their_leads_only(client: httpx.AsyncClient) -> None:
    admin = await signup(client)
    h = admin["headers"]
    sales = await join_and_login(client, h, "sales")
    theirs = await create_lead(client, sales, full_name="Lead da Vera")
    others = await create_lead(client, h, full_name="Lead do admin", assigned_to=None)
    r = await client.get(f"/api/v1/leads/{theirs['id']}/score", headers=sales)
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/leads/{others['id']}/score", headers=sales)
    assert r.status_code == 404
    assert r.json()["code"] == "lead_not_found"
    # Another organization's lead does not exist for this one.
    stranger = await signup(client)
    r = await client.get(f"/api/v1/leads/{theirs['id']}/score", headers=stranger["headers"])
    assert r.status_code == 404
    # Retraining and the rules are the admins'.
    r = await client.post("/api/v1/scoring/retrain", headers=sales)
    assert r.status_code == 403
    r = await client.put("/api/v1/scoring/rules", headers=sales, json={"base": 10})
    assert r.status_code == 403


async def test_rules_are_edited_and_rescore_the_leads(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, source="Feira")
    r = await client.put(
        "/api/v1/scoring/rules",
        headers=h,
        json={
            "base": 10,
            "sources": [{"source": " FEIRA ", "points": 40}],
            "recency": [],
            "stale_points": 0,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["sources"] == [{"source": "feira", "points": 40}]
    r = await client.put("/api/v1/scoring/rules", headers=h, json={"base": 101})
    assert r.status_code == 422
    await run_until_idle(database, settings, types=[RESCORE_ORGANIZATION])
    assert _stored(owner, lead["id"]).lead_score == 50  # 10 + feira 40 (no recency rule now)
    r = await client.get("/api/v1/scoring/rules", headers=h)
    assert r.json()["base"] == 10


async def test_changes_rescore_the_lead_once_per_window(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    lead = await create_lead(client, h, full_name="Debounce")
    for value in ("100.00", "2000.00", "60000.00"):
        r = await client.patch(
            f"/api/v1/leads/{lead['id']}", headers=h, json={"estimated_value": value}
        )
        assert r.status_code == 200
    jobs = owner_sql(
        owner,
        "SELECT status FROM background_jobs WHERE job_type = :t AND job_data->>'lead_id' = :l",
        t=RESCORE_LEAD,
        l=lead["id"],
    )
    assert [j.status for j in jobs] == ["pending"]  # four changes, one job
    await run_until_idle(database, settings, types=[RESCORE_LEAD])  # others' jobs may run
    still = owner_sql(
        owner,
        "SELECT status FROM background_jobs WHERE job_type = :t AND job_data->>'lead_id' = :l",
        t=RESCORE_LEAD,
        l=lead["id"],
    )
    assert [j.status for j in still] == ["pending"]  # not yet due
    assert _stored(owner, lead["id"]).score_last_calculated_at is None
    manual_clock.advance(seconds=31)
    version = _stored(owner, lead["id"]).version
    await run_until_idle(database, settings, types=[RESCORE_LEAD])
    scored = _stored(owner, lead["id"])
    assert scored.score_last_calculated_at is not None
    assert scored.lead_score == 30 + 15 + 15  # base, activity today, value ≥ 50 000
    assert scored.probability_percentage == 0  # the rules write no probability
    assert scored.version == version  # a score is not an edit: open board cards stay valid


async def test_a_field_set_after_the_outcome_is_not_a_feature(
    client: httpx.AsyncClient, database: Database, owner: sa.Engine
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    await set_custom_fields(client, h, [{"key": "contract", "label": "Contrato", "type": "text"}])
    lead = await create_lead(client, h, full_name="Vazamento", source="site")
    r = await client.post(f"/api/v1/leads/{lead['id']}/notes", headers=h, json={"description": "1"})
    assert r.status_code == 201, r.text
    await _close(client, h, lead["id"], won=True)
    # After the outcome: a contract number, a value, another source, a call.
    r = await client.patch(
        f"/api/v1/leads/{lead['id']}",
        headers=h,
        json={
            "custom_fields": {"contract": "C-123"},
            "estimated_value": "9000.00",
            "source": "referral",
        },
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/leads/{lead['id']}/activities", headers=h, json={"type": "call", "title": "ok"}
    )
    assert r.status_code == 201, r.text
    org = uuid.UUID(admin["organization_id"])
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, org)
        found = await features.outcomes(session, org)
        assert [(o.lead_id, o.won) for o in found] == [(uuid.UUID(lead["id"]), True)]
        definitions = [{"key": "contract", "label": "Contrato", "type": "text"}]
        targets = [features.Target(o.lead_id, o.cutoff) for o in found]
        records = await features.records_for(session, org, targets, definitions, found[0].cutoff)
        at_outcome = records[uuid.UUID(lead["id"])]
        now = await features.records_for(
            session, org, [features.Target(uuid.UUID(lead["id"]))], definitions, found[0].cutoff
        )
    assert at_outcome["custom:contract"] is None
    assert at_outcome["value"] is None
    assert at_outcome["source"] == "site"
    assert at_outcome["activities:note"] == 1 and at_outcome["activities:call"] == 0
    # What is known now (an open lead would be described so) includes all of it.
    current = now[uuid.UUID(lead["id"])]
    assert current["custom:contract"] == "C-123" and current["activities:call"] == 1


async def _history(client: httpx.AsyncClient, h: dict[str, str], pairs: int) -> None:
    """Won and lost leads, closed alternately, with a pattern the rules do not know: leads
    from a fair mostly win, leads from billboards mostly lose."""
    for i in range(2 * pairs):
        is_won = i % 2 == 0
        strong = (i % 5 != 0) if is_won else (i % 5 == 0)
        lead = await create_lead(
            client,
            h,
            full_name=f"Histórico {i}",
            source="feira" if strong else "outdoor",
            allow_duplicate=True,
        )
        await _close(client, h, lead["id"], won=is_won)


@pytest.mark.slow
async def test_training_promotes_a_model_that_beats_the_rules_and_guards_its_artifact(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    await _history(client, h, pairs=36)
    open_lead = await create_lead(client, h, full_name="Aberto", source="feira")
    r = await client.post("/api/v1/scoring/retrain", headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    await run_until_idle(database, settings, types=[TRAIN], timeout=300)
    r = await client.get("/api/v1/scoring/models", headers=h)
    models = r.json()
    assert models["active_model_type"] == "ml_model", models
    active = next(m for m in models["items"] if m["is_active"])
    assert active["status"] == "trained" and active["model_type"] == "ml_model"
    assert active["roc_auc"] is not None and active["brier_score"] is not None
    assert active["calibration_error"] is not None and active["accuracy_score"] is not None
    assert active["comparison"]["against_type"] == "rules_based"
    assert active["comparison"]["promoted"] is True
    assert [m["model_type"] for m in models["items"]] == ["ml_model"]  # default rules: no row
    # The promotion rescored the organization: the open lead has a probability now.
    await run_until_idle(database, settings, types=[RESCORE_ORGANIZATION])
    assert _stored(owner, open_lead["id"]).probability_percentage > 0
    r = await client.get(f"/api/v1/leads/{open_lead['id']}/score", headers=h)
    score = r.json()
    assert score["model"]["model_type"] == "ml_model" and score["model"]["calibrated"]
    assert 0 < score["probability"] < 1
    assert score["factors_up"], score

    # The same data again: the new model is no better, so it is kept as history.
    r = await client.post("/api/v1/scoring/retrain", headers=h)
    if r.json()["status"] == "already_queued":  # within the same minute as the first
        owner_sql(
            owner, "UPDATE background_jobs SET dedupe_key = NULL WHERE job_type = :t", t=TRAIN
        )
        r = await client.post("/api/v1/scoring/retrain", headers=h)
    await run_until_idle(database, settings, types=[TRAIN], timeout=300)
    items = (await client.get("/api/v1/scoring/models", headers=h)).json()["items"]
    assert items[0]["is_active"] is False and items[0]["comparison"]["promoted"] is False
    assert items[1]["id"] == active["id"] and items[1]["is_active"] is True

    # A changed byte in the stored artifact: refused, the rules score instead.
    owner_sql(
        owner,
        "UPDATE lead_scoring_models SET artifact = overlay(artifact placing '\\x00'::bytea"
        " from 20 for 1) WHERE id = :i",
        i=active["id"],
    )
    models = (await client.get("/api/v1/scoring/models", headers=h)).json()
    assert models["active_model_type"] == "rules_based"
    assert "signature" in models["artifact_refused"]
    r = await client.get(f"/api/v1/leads/{open_lead['id']}/score", headers=h)
    assert r.json()["model"]["model_type"] == "rules_based"

    # Another organization's artifact, signature and all, copied in: refused as well.
    other = await signup(client)
    await _history(client, other["headers"], pairs=30)
    r = await client.post("/api/v1/scoring/retrain", headers=other["headers"])
    await run_until_idle(database, settings, types=[TRAIN], timeout=300)
    owner_sql(
        owner,
        "UPDATE lead_scoring_models AS mine SET artifact = theirs.artifact,"
        " artifact_signature = theirs.artifact_signature"
        " FROM lead_scoring_models AS theirs"
        " WHERE mine.id = :mine AND theirs.is_active AND theirs.model_type = 'ml_model'"
        " AND theirs.organization_id = :theirs",
        mine=active["id"],
        theirs=other["organization_id"],
    )
    models = (await client.get("/api/v1/scoring/models", headers=h)).json()
    assert models["active_model_type"] == "rules_based" and models["artifact_refused"]

    # A training that fails (here: a trainer that crashes) is recorded and changes nothing else.
    monkeypatch.setattr(retraining, "TRAINER", ("/bin/sh", "-c", "echo out of memory >&2; exit 3"))
    owner_sql(owner, "UPDATE background_jobs SET dedupe_key = NULL WHERE job_type = :t", t=TRAIN)
    r = await client.post("/api/v1/scoring/retrain", headers=h)
    assert r.status_code == 202
    await run_until_idle(database, settings, types=[TRAIN], timeout=60)
    items = (await client.get("/api/v1/scoring/models", headers=h)).json()["items"]
    assert items[0]["status"] == "failed" and items[0]["error"] == "out of memory"
    assert next(m for m in items if m["is_active"])["id"] == active["id"]


async def test_nightly_and_weekly_jobs_queue_one_job_per_organization(
    client: httpx.AsyncClient, database: Database, settings: Settings, owner: sa.Engine
) -> None:
    quiet = await signup(client)
    busy = await signup(client)
    await _history(client, busy["headers"], pairs=30)
    items = tuple(p for p in schedule() if p.job_type in (NIGHTLY, RETRAIN_ALL))
    assert len(items) == 2
    # A period of its own (in the past, so due now): a worker elsewhere in the suite may
    # have run today's already.
    period = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 7000)
    assert await enqueue_due(database, now=period, items=items) == 2
    await run_until_idle(database, settings, types=[NIGHTLY, RETRAIN_ALL])
    queued = owner_sql(
        owner,
        "SELECT organization_id, job_type FROM background_jobs"
        " WHERE organization_id IN (:a, :b) AND job_type IN (:r, :t)",
        a=quiet["organization_id"],
        b=busy["organization_id"],
        r=RESCORE_ORGANIZATION,
        t=TRAIN,
    )
    got = {(str(q.organization_id), q.job_type) for q in queued}
    assert got == {
        (quiet["organization_id"], RESCORE_ORGANIZATION),
        (busy["organization_id"], RESCORE_ORGANIZATION),
        (busy["organization_id"], TRAIN),  # only where there are enough outcomes
    }
    # Outside a system job the organizations' list is empty.
    async with database.sessionmaker() as session, session.begin():
        await set_tenant(session, uuid.UUID(quiet["organization_id"]))
        rows = await session.execute(sa.text("SELECT id FROM lovedcrm_scoring_organizations()"))
        assert rows.all() == []


async def test_a_batch_of_rescores_scores_each_of_its_leads(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    owner: sa.Engine,
    manual_clock: ManualClock,
) -> None:
    """The worker hands the debounced rescores of one organization to the handler together:
    every lead of the batch gets its own score, in one pass."""
    admin = await signup(client)
    h = admin["headers"]
    made = [
        await create_lead(client, h, full_name=f"Lote {n}", estimated_value=value)
        for n, value in enumerate(["10.00", "60000.00", "10.00", "60000.00"])
    ]
    manual_clock.advance(seconds=31)
    worker = Worker(database, settings, concurrency=8, types=[RESCORE_LEAD], run_periodic=False)
    mine: list[ClaimedJob] = []
    while claimed := await worker.claim(100):
        for job in claimed:
            if str(job.organization_id) == admin["organization_id"]:
                mine.append(job)
            else:
                await worker.execute(job)  # other tests' jobs, so nothing stays claimed
    assert len(mine) == 4
    for chunk in worker._chunks(mine):
        await worker.execute_chunk(chunk)
    scores = [_stored(owner, lead["id"]).lead_score for lead in made]
    assert scores == [30 + 15, 30 + 15 + 15, 30 + 15, 30 + 15 + 15]  # each its own value
    results = owner_sql(
        owner,
        "SELECT status, result_data FROM background_jobs WHERE job_type = :t"
        " AND organization_id = :o",
        t=RESCORE_LEAD,
        o=admin["organization_id"],
    )
    assert [r.status for r in results] == ["completed"] * 4
    assert max(r.result_data["together"] for r in results) > 1  # some ran together
