"""``lovedcrm org set-plan|set-flag|show``: an operator's changes, audited, effective in
the running application without a restart."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from lovedcrm import cli
from lovedcrm.billing import operator
from lovedcrm.config import Settings
from lovedcrm.core.errors import AppError
from lovedcrm.organizations import plans
from tests.factories import owner_sql


async def test_set_plan_and_flags_are_audited_and_take_effect(
    client: httpx.AsyncClient, org: dict[str, Any], settings: Settings, owner: sa.Engine
) -> None:
    slug = org["organization_slug"]
    await operator.set_flag(settings, slug, "billing", "on")
    await operator.set_plan(settings, slug, "starter", False)
    plans.invalidate()  # another process: in the server the cache lasts CACHE_SECONDS
    r = await client.get("/api/v1/calls", headers=org["headers"])
    assert r.json()["code"] == "feature_not_in_plan"
    await operator.set_flag(settings, slug, "calls", "on")
    await operator.set_flag(settings, slug, "limit.leads", "unlimited")
    plans.invalidate()
    assert (await client.get("/api/v1/calls", headers=org["headers"])).status_code == 200
    shown = await operator.show(settings, str(org["org_id"]))
    assert shown["plan"] == "starter" and shown["enforced"] is True
    assert "calls" in shown["features"]
    assert shown["overrides"]["limits"] == {"leads": None}
    actions = [
        r.action
        for r in owner_sql(
            owner,
            "SELECT action FROM audit_logs WHERE organization_id = :o AND action LIKE 'plan.%'"
            " ORDER BY created_at",
            o=org["org_id"],
        )
    ]
    assert actions.count("plan.flag_set_by_operator") == 3
    assert actions.count("plan.set_by_operator") == 1


async def test_bad_input_is_refused(org: dict[str, Any], settings: Settings) -> None:
    with pytest.raises(AppError):
        await operator.set_flag(settings, org["organization_slug"], "teleport", "on")
    with pytest.raises(AppError):
        await operator.set_flag(settings, org["organization_slug"], "limit.leads", "many")
    with pytest.raises(AppError):
        await operator.show(settings, "no-such-org")


def test_cli_group_lists_the_commands() -> None:
    result = CliRunner().invoke(cli.main, ["org", "--help"])
    assert result.exit_code == 0
    for name in ("set-plan", "set-flag", "show"):
        assert name in result.output
