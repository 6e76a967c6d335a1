"""The agent's scripted-conversation harness (benchmarks/bench_agent_harness.py) in CI:
every persona passes with the sandbox agent and with the fake OpenAI-compatible server, and
the JSON it writes carries the figures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from lovedcrm.config import Settings
from lovedcrm.db.engine import Database
from lovedcrm.jobs.engine import run_until_idle
from tests.factories import WA_JOBS

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_agent_harness.py"


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("bench_agent_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_every_persona_passes_with_both_providers(
    client: httpx.AsyncClient, database: Database, settings: Settings, tmp_path: Path
) -> None:
    harness = _harness()
    types = [*WA_JOBS, "assistant.agent_turn"]
    report = await harness.run_harness(
        client, lambda: run_until_idle(database, settings, types=types, timeout=30)
    )
    failed = [
        (p["provider"], p["persona"], {k: v for k, v in p["checks"].items() if not v})
        for p in report["personas"]
        if not p["passed"]
    ]
    assert failed == []
    assert report["total"] == 12 and report["passed"] == 12
    assert {f["name"] for f in report["figures"]} == {
        "Agent harness (sandbox): personas passed",
        "Agent harness (openai_fake): personas passed",
    }
    assert all(f["value"] == f["goal"] == 6 for f in report["figures"])
    (tmp_path / "agent_harness.json").write_text(json.dumps(report, default=str))
