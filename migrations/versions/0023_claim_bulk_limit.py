"""Job claims take at most ``p_bulk_limit`` bulk jobs, so a worker keeps a slot for
interactive work.

0015 put interactive jobs before bulk ones in each claim, but priority only orders a claim:
with nothing interactive ready, a worker filled every free slot with bulk jobs (a nightly
rescore fan-out, a marketing send), and a webhook delivery or a WhatsApp send queued a moment
later waited until one of them ended. The claim now takes a sixth argument, the most bulk jobs
it may return (NULL: no cap); the worker passes what its slots allow after keeping one for
interactive work (``jobs.engine.Worker``). The tiers are 0015's, unchanged.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SIGNATURE = "lovedcrm_claim_jobs(text, int, int, text[], timestamptz)"
SIGNATURE = "lovedcrm_claim_jobs(text, int, int, text[], timestamptz, int)"


def _tiers() -> ModuleType:
    path = Path(__file__).with_name("0015_claim_interactive_first.py")
    spec = importlib.util.spec_from_file_location("claim_interactive_first_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _claim() -> str:
    tiers = _tiers()
    old: str = tiers.CLAIM
    head = "p_now timestamptz DEFAULT NULL)"
    bulk = tiers.TIER.format(ready=tiers.READY, tier="priority < 0")
    assert old.count(head) == 1 and old.count(bulk) == 1
    capped = (
        "\n            -- Bulk jobs: no more than the caller's cap (it keeps a slot for"
        "\n            -- interactive work).\n"
        "            v_left := LEAST(v_left, COALESCE(p_bulk_limit, v_left));\n" + bulk
    )
    return old.replace(
        head, "p_now timestamptz DEFAULT NULL, p_bulk_limit int DEFAULT NULL)"
    ).replace(bulk, capped)


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(_claim())
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(_tiers().CLAIM)
    op.execute(f"REVOKE ALL ON FUNCTION {OLD_SIGNATURE} FROM PUBLIC")
