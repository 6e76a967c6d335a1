"""core.routing: a 405 names every method of the path in ``Allow``, and a path two routes
share in shape is answered as what it is."""

from __future__ import annotations

import httpx

from tests.factories import signup

PROBLEM = "application/problem+json"


async def test_a_method_the_path_lacks_is_405_listing_every_method(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    h = admin["headers"]
    for method, path, allow in (
        ("OPTIONS", "/api/v1/leads", "GET, POST"),
        ("PUT", "/api/v1/leads/6f1c1f9e-6d1a-4a53-9d1b-2a4f2b7c9e10", "GET, PATCH, DELETE"),
        ("OPTIONS", "/api/v1/templates", "GET, POST"),
        # Not a lead called "export.csv" (it was a 422 for an invalid lead id):
        ("PATCH", "/api/v1/leads/export.csv", "GET"),
        ("GET", "/api/v1/pipeline/stages/reorder", "POST"),
    ):
        r = await client.request(method, path, headers=h)
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allow, (method, path)
        assert r.headers["content-type"].startswith(PROBLEM)


async def test_an_id_that_is_not_a_uuid_is_still_a_422_where_no_other_route_fits(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client)
    r = await client.get("/api/v1/leads/not-a-uuid", headers=admin["headers"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lead_id"
    r = await client.get("/api/v1/leads/export.csv", headers=admin["headers"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
