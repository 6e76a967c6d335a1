"""Property-based checks of the public API against its own OpenAPI document.

Schemathesis generates requests for every GET, POST and PATCH operation under ``/api/v1``
(except the auth calls that would end the session) and checks that none answers 5xx and that
every documented response matches its schema. The app runs in schemathesis' own event loop
thread, so it gets its own database handle (created by the app's lifespan).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from lovedcrm.app import create_app
from lovedcrm.config import Settings
from tests.factories import PASSWORD, unique_email

# Would end the session, change the password, or log in as someone else.
EXCLUDED_PATHS = (
    r"^/api/v1/auth/(logout|refresh|password.*|switch-organization|login|signup|verify-email.*)$",
    r"^/api/v1/invitations/accept$",
    # A Server-Sent Events stream never ends (tests/core/test_live.py reads it from servers).
    r"^/api/v1/events/stream$",
)
CHECKS = [not_a_server_error, response_schema_conformance]


def _with_client_ip(app: Any) -> Any:
    """Schemathesis' ASGI client calls itself "testclient"; give the app a real address (the
    audit trail stores it in an ``inet`` column)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": ("203.0.113.77", 5555)}
        await app(scope, receive, send)

    return wrapped


@pytest.fixture(scope="module")
def api_schema(settings: Settings) -> Any:
    app = create_app(settings)  # its lifespan opens a database handle in schemathesis' loop
    return schemathesis.openapi.from_asgi("/openapi.json", _with_client_ip(app))


@pytest.fixture(scope="module")
def auth_headers(api_schema: Any) -> dict[str, str]:
    signup = api_schema["/api/v1/auth/signup"]["POST"]
    case = signup.Case(
        body={
            "email": unique_email("fuzz"),
            "password": PASSWORD,
            "full_name": "Fuzz Admin",
            "organization_name": f"Fuzz {uuid.uuid4().hex[:6]}",
        }
    )
    response = case.call()
    assert response.status_code == 201, response.text
    token = response.json()["tokens"]["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _post(api_schema: Any, path: str, headers: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    operation = api_schema[path]["POST"]
    response = operation.Case(headers=headers, **kwargs).call()
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def known_ids(api_schema: Any, auth_headers: dict[str, str]) -> dict[str, str]:
    """Real resources, so operations on ``/{id}`` paths get past the 404 too."""
    h = auth_headers
    lead = _post(api_schema, "/api/v1/leads", h, body={"full_name": "Fuzz Lead"})
    note = _post(
        api_schema,
        "/api/v1/leads/{lead_id}/notes",
        h,
        path_parameters={"lead_id": lead["id"]},
        body={"description": "fuzz"},
    )
    stage = _post(api_schema, "/api/v1/pipeline/stages", h, body={"name": "Fuzz"})
    template = _post(
        api_schema,
        "/api/v1/templates",
        h,
        body={"name": "Fuzz", "category": "fuzz", "content": "Oi {{lead_name}}"},
    )
    return {
        "lead_id": lead["id"],
        "activity_id": note["id"],
        "stage_id": stage["id"],
        "template_id": template["id"],
    }


def _operations(api_schema: Any) -> list[Any]:
    schema = api_schema.include(path_regex=r"^/api/v1/", method=["GET", "POST", "PATCH"])
    for pattern in EXCLUDED_PATHS:
        schema = schema.exclude(path_regex=pattern)
    return [result.ok() for result in schema.get_all_operations()]


def _run(
    operation: Any, headers: dict[str, str], path_parameters: dict[str, str] | None = None
) -> list[str]:
    failures: list[str] = []

    @hypothesis_settings(
        max_examples=15,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(path_parameters=path_parameters))
    def check(case: Any) -> None:
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # collected: one report for every failing operation
            failures.append(
                f"{operation.label}: {response.status_code} {response.text[:300]}\n{str(exc)[:600]}"
            )

    check()
    return failures[:1]


@pytest.mark.slow
def test_api_conforms_to_its_schema(
    api_schema: Any, auth_headers: dict[str, str], known_ids: dict[str, str]
) -> None:
    operations = _operations(api_schema)
    labels = {op.label for op in operations}
    assert "GET /api/v1/leads" in labels and "POST /api/v1/templates" in labels
    assert not any("DELETE" in label for label in labels)
    failures: list[str] = []
    for op in operations:
        failures += _run(op, auth_headers)
        names = set(re.findall(r"\{(\w+)\}", op.path))
        if names and names <= set(known_ids):
            failures += _run(op, auth_headers, {n: known_ids[n] for n in names})
    assert not failures, "\n\n".join(failures)


def test_openapi_document(api_schema: Any) -> None:
    raw = api_schema.raw_schema
    assert raw["openapi"].startswith("3.1")
    assert "HTTPBearer" in raw["components"]["securitySchemes"]
    for path, item in raw["paths"].items():
        if not path.startswith(("/api/v1/leads", "/api/v1/pipeline", "/api/v1/templates")):
            continue
        for method, op in item.items():
            # 202: accepted for later (a WhatsApp message is queued, then sent by a job).
            assert {"200", "201", "202", "204"} & set(op["responses"]), (method, path)
            assert "401" in op["responses"] and "403" in op["responses"], (method, path)
            body = op.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
                component = raw["components"]["schemas"][ref]
                assert component.get("examples"), (method, path, ref)
