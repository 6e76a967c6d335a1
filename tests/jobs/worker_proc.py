"""A worker process for the tests: `python -m tests.jobs.worker_proc` with
LOVEDCRM_DATABASE_URL set; WORKER_LEASE / WORKER_GRACE / WORKER_CONCURRENCY tune it."""

from __future__ import annotations

import asyncio
import os
import signal

import tests.jobs.handlers  # noqa: F401 - registers the test handlers
from lovedcrm import wiring  # noqa: F401 - what `lovedcrm worker` registers
from lovedcrm.config import Settings
from lovedcrm.core.logging import configure_logging
from lovedcrm.db.engine import create_database
from lovedcrm.jobs.engine import Worker


async def main() -> None:
    settings = Settings(env="test", log_level="WARNING", embedded_worker=False)
    configure_logging(settings.log_level, json=True)  # to stderr: stdout is for the test
    database = create_database(settings)
    worker = Worker(
        database,
        settings,
        concurrency=int(os.environ.get("WORKER_CONCURRENCY", "8")),
        lease_seconds=int(os.environ.get("WORKER_LEASE", "60")),
        grace_seconds=float(os.environ.get("WORKER_GRACE", "20")),
        poll_seconds=0.5,
        run_periodic=False,
        # Only the tests' own job types: other tests leave real jobs (webhooks, imports) behind.
        types=os.environ.get("WORKER_TYPES", "test.record").split(","),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    print("ready", flush=True)
    await worker.run()
    await database.dispose()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
