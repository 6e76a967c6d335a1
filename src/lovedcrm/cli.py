"""The ``lovedcrm`` command line: serve, worker, db upgrade/downgrade, demo, create-admin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from lovedcrm import wiring  # noqa: F401 - registers every job handler and event subscriber
from lovedcrm.config import Settings, get_settings


def _prepare(settings: Settings) -> str:
    """Migrate to head as the owner and (re)apply the app role and grants."""
    from lovedcrm.db.bootstrap import ensure_app_role
    from lovedcrm.db.engine import owner_url
    from lovedcrm.db.migrate import upgrade

    owner = owner_url(settings).render_as_string(hide_password=False)
    upgrade(owner)
    password = settings.db_app_password.get_secret_value() if settings.db_app_password else None
    ensure_app_role(owner, settings.db_app_role, password)
    return owner


@click.group()
def main() -> None:
    """Loved CRM."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-migrate", is_flag=True, help="Do not migrate the database at start.")
@click.option("--demo/--no-demo", default=False, help="Load the demo organization if missing.")
@click.option("--reload", is_flag=True, help="Reload on code changes (development).")
@click.option("--no-worker", is_flag=True, help="Do not run a job worker with the server.")
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes; more than one run under a supervisor process, beside one job "
    "worker process (unless --no-worker), and all end with it even when it is killed. "
    "One process runs its job worker inside.",
)
def serve(
    host: str,
    port: int,
    no_migrate: bool,
    demo: bool,
    reload: bool,
    no_worker: bool,
    workers: int,
) -> None:
    """Serve the web app and the API."""
    import os
    import signal
    import tempfile

    import uvicorn

    # SIGTERM or SIGINT: uvicorn shuts down gracefully, then raises the signal again. Its
    # default action would kill the process before the exit hooks run (the embedded
    # PostgreSQL would outlive the app); a clean exit runs them.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    # Links in mail and the demo banner point at where this server really listens.
    os.environ.setdefault("LOVEDCRM_BASE_URL", f"http://{host}:{port}")
    # Supervised server processes answer requests only; the jobs run in one worker process
    # beside them. Inside each server process, a batch of jobs held the event loop between
    # its awaits while requests waited: acknowledging inbound webhooks at 500/s, p95 fell
    # from 127 ms to 47 ms with the same CPU per message (benchmarks/bench_whatsapp.py).
    separate_worker = workers > 1 and not reload and not no_worker
    if no_worker or separate_worker:
        os.environ["LOVEDCRM_EMBEDDED_WORKER"] = "false"
    if workers > 1 and not reload:
        from lovedcrm.core.process import mark_supervisor

        mark_supervisor()
        # /metrics sums the workers' request figures (prometheus-client multiprocess mode).
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lovedcrm-metrics-")
        )
    get_settings.cache_clear()
    settings = get_settings()
    if not no_migrate:
        _prepare(settings)
    if demo:
        from lovedcrm.demo import load_demo

        asyncio.run(load_demo(settings))
    job_worker = (
        _start_worker(settings.embedded_worker_concurrency * workers) if separate_worker else None
    )
    try:
        uvicorn.run(
            "lovedcrm.app:create_app",
            factory=True,
            host=host,
            port=port,
            reload=reload,
            workers=None if reload else workers,
            proxy_headers=True,
            log_config=None,
        )
    finally:
        if job_worker is not None:
            _stop_worker(job_worker)


WORKER_STOP_SECONDS = 30


def _start_worker(concurrency: int) -> Any:
    """``lovedcrm worker`` as a child of this supervisor (it dies with it if killed)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lovedcrm.cli", "worker", "--concurrency", str(concurrency)]
    return subprocess.Popen(command)  # noqa: S603 - this interpreter and a fixed command


def _stop_worker(process: Any) -> None:
    """SIGTERM: the worker finishes its running jobs (or releases them), then exits."""
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@main.command()
@click.option("--concurrency", default=8, show_default=True, type=int, help="Jobs run at once.")
@click.option("--type", "types", multiple=True, help="Only these job types (repeatable).")
def worker(concurrency: int, types: tuple[str, ...]) -> None:
    """Run a background-job worker until SIGTERM/SIGINT (then finish or release its jobs)."""
    asyncio.run(_run_worker(get_settings(), concurrency, types or None))


async def _run_worker(settings: Settings, concurrency: int, types: tuple[str, ...] | None) -> None:
    import signal

    from lovedcrm.core.logging import configure_logging
    from lovedcrm.core.process import die_with_supervisor, settle_heap
    from lovedcrm.db.engine import create_database
    from lovedcrm.jobs.engine import Worker

    configure_logging(settings.log_level, settings.log_json)
    die_with_supervisor()  # started by `serve --workers N`: ends with its supervisor
    database = create_database(settings)
    job_worker = Worker(database, settings, concurrency=concurrency, types=types)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, job_worker.stop)
    settle_heap()
    try:
        await job_worker.run()
    finally:
        await database.dispose()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate up (default: to head) and apply the app role's grants."""
    settings = get_settings()
    if revision == "head":
        _prepare(settings)
    else:
        from lovedcrm.db.engine import owner_url
        from lovedcrm.db.migrate import upgrade

        upgrade(owner_url(settings).render_as_string(hide_password=False), revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@click.confirmation_option(prompt="Downgrading can drop data. Continue?")
def db_downgrade(revision: str) -> None:
    """Migrate down to REVISION (for example 'base' or '-1')."""
    from lovedcrm.db.engine import owner_url
    from lovedcrm.db.migrate import downgrade

    downgrade(owner_url(get_settings()).render_as_string(hide_password=False), revision)
    click.echo(f"database at {revision}")


@db.command("current")
def db_current() -> None:
    """Print the current and head revisions."""
    from lovedcrm.db.engine import owner_url
    from lovedcrm.db.migrate import current_revision, head_revision

    url = owner_url(get_settings()).render_as_string(hide_password=False)
    click.echo(json.dumps({"current": current_revision(url), "head": head_revision()}))


@main.command()
def demo() -> None:
    """Load the demo organization (once) and print its login."""
    from lovedcrm.demo import load_demo

    settings = get_settings()
    _prepare(settings)
    asyncio.run(load_demo(settings, announce=True))


@main.command("create-admin")
@click.option("--email", required=True)
@click.option("--name", "full_name", required=True)
@click.option("--organization", "organization_name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(email: str, full_name: str, organization_name: str, password: str) -> None:
    """Create a user who is the admin of a new organization."""
    from lovedcrm.demo import create_admin_account

    settings = get_settings()
    _prepare(settings)
    try:
        org_slug = asyncio.run(
            create_admin_account(settings, email, full_name, organization_name, password)
        )
    except Exception as exc:
        detail = getattr(exc, "detail", str(exc))
        raise click.ClickException(str(detail)) from exc
    click.echo(f"admin {email} created for organization {org_slug}")


@main.group()
def whatsapp() -> None:
    """WhatsApp tools."""


@whatsapp.command("inject")
@click.option("--organization", required=True, help="The organization's slug or id.")
@click.option("--from", "from_number", required=True, help="The customer's phone, any format.")
@click.option("--name", "contact_name", default=None, help="The customer's WhatsApp name.")
@click.argument("text")
def whatsapp_inject(
    organization: str, from_number: str, contact_name: str | None, text: str
) -> None:
    """Type a customer's message into the sandbox provider (processed like a webhook)."""
    from lovedcrm.messaging.sandbox import inject_for

    try:
        message_id = asyncio.run(
            inject_for(get_settings(), organization, from_number, text, contact_name)
        )
    except Exception as exc:
        raise click.ClickException(str(getattr(exc, "detail", exc))) from exc
    click.echo(f"queued {message_id}")


@main.command("data-dir")
def data_dir() -> None:
    """Print the data directory."""
    click.echo(Path(get_settings().data_dir).resolve())


@main.group()
def scoring() -> None:
    """Lead scoring tools."""


@scoring.command("evaluate")
@click.option(
    "--csv", "csv_path", required=True, type=click.Path(path_type=Path), help="The table."
)
@click.option("--target", required=True, help="The column that says whether a row was won.")
@click.option("--positive", default=None, help="The target's winning value (default: 1/yes/…).")
@click.option("--drop", multiple=True, help="A column to leave out (repeatable).")
@click.option("--time-column", default=None, help="Split by this column's time, not by folds.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1))
def scoring_evaluate(
    csv_path: Path,
    target: str,
    positive: str | None,
    drop: tuple[str, ...],
    time_column: str | None,
    threshold: float,
) -> None:
    """Train and judge the product's scoring pipeline on a CSV (each row a lead, its columns
    custom fields); print the metrics as JSON."""
    from lovedcrm.scoring.evaluation import EvaluationError, evaluate, read_csv

    try:
        result = evaluate(
            read_csv(csv_path),
            target,
            positive=positive,
            drop=drop,
            time_column=time_column,
            threshold=threshold,
        )
    except EvaluationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@main.group()
def forecast() -> None:
    """Revenue forecast tools."""


@forecast.command("backtest")
@click.option(
    "--csv", "csv_path", required=True, type=click.Path(path_type=Path), help="The deals."
)
@click.option("--cutoff", "cutoffs", multiple=True, help="A cut-off day YYYY-MM-DD (repeatable).")
@click.option("--cutoffs", "cutoff_range", default=None, help="monthly:START:END (first days).")
@click.option("--opened-column", default="opened", show_default=True)
@click.option("--closed-column", default="closed", show_default=True)
@click.option("--outcome-column", default="outcome", show_default=True, help="Stage or outcome.")
@click.option("--value-column", default="value", show_default=True)
@click.option("--won-value", default="Won", show_default=True)
@click.option("--lost-value", default="Lost", show_default=True)
@click.option("--months", default=3, show_default=True, type=click.IntRange(1, 12))
@click.option("--draws", default=10_000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--seed", default=0, show_default=True, type=int)
def forecast_backtest(
    csv_path: Path,
    cutoffs: tuple[str, ...],
    cutoff_range: str | None,
    opened_column: str,
    closed_column: str,
    outcome_column: str,
    value_column: str,
    won_value: str,
    lost_value: str,
    months: int,
    draws: int,
    seed: int,
) -> None:
    """Replay a CSV of deals up to each cut-off, forecast the following months' won revenue
    and print JSON: the forecast, the actual, whether it fell inside the intervals, and over
    several cut-offs the coverage and the MAPE against last quarter's mean."""
    from datetime import date

    from lovedcrm.reports import forecast as fc

    try:
        days: list[date] = []
        for raw in cutoffs:
            try:
                days.append(date.fromisoformat(raw))
            except ValueError as exc:
                raise fc.BacktestError(f"--cutoff {raw!r}: expected YYYY-MM-DD") from exc
        if cutoff_range:
            days.extend(fc.monthly_cutoffs(cutoff_range))
        if not days:
            raise fc.BacktestError("give --cutoff DATE (repeatable) or --cutoffs monthly:START:END")
        columns = fc.Columns(
            opened_column, closed_column, outcome_column, value_column, won_value, lost_value
        )
        rows, skipped = fc.read_rows(csv_path, columns)
        result = fc.backtest(rows, days, months=months, draws=draws, seed=seed)
    except fc.BacktestError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
    result["rows"] = {"used": len(rows), "without_opening_date": skipped}
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@main.group()
def sentiment() -> None:
    """Sentiment of customer messages (issue 15)."""


@sentiment.command("evaluate")
@click.option(
    "--csv", "csv_path", required=True, type=click.Path(path_type=Path), help="The table."
)
@click.option("--text-column", required=True, help="The column with the message text.")
@click.option("--label-column", required=True, help="-1/0/1 or negative/neutral/positive.")
@click.option("--split-column", default=None, help="A column that says train/test.")
@click.option("--split", default=None, help="Judge only the rows of this split (e.g. test).")
@click.option(
    "--learning-curve",
    "curve",
    default=None,
    help="Sizes, e.g. 100,500,2000: train the per-organization model on that many rows of the "
    "other splits and test it on --split (an experiment: nothing is stored).",
)
def sentiment_evaluate(
    csv_path: Path,
    text_column: str,
    label_column: str,
    split_column: str | None,
    split: str | None,
    curve: str | None,
) -> None:
    """Judge the offline analyser on a labelled CSV, with LeIA alone beside it; print JSON."""
    from lovedcrm.assistant import evaluation as ev

    try:
        rows = ev.read_rows(
            csv_path, text_column, label_column, split_column=split_column, split=split
        )
        result = ev.evaluate(rows, split=split)
        if curve:
            if split is None:
                raise ev.EvaluationError("--learning-curve needs --split-column and --split")
            try:
                sizes = [int(v) for v in curve.split(",") if v.strip()]
            except ValueError as exc:
                raise ev.EvaluationError(f"--learning-curve {curve!r}: sizes like 100,500") from exc
            result["learning_curve"] = ev.learning_curve(rows, sizes, test_split=split)
    except ev.EvaluationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@main.group()
def org() -> None:
    """Operator tools for an organization's plan and flags (every change is audited)."""


def _org_run(call: Coroutine[Any, Any, Any]) -> None:
    from lovedcrm.core.errors import AppError

    try:
        result = asyncio.run(call)
    except AppError as exc:
        extra = f" {json.dumps(exc.extra, default=str)}" if exc.extra else ""
        raise click.ClickException(f"{exc.detail}{extra}") from exc
    click.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))


@org.command("set-plan")
@click.argument("organization")
@click.argument("plan", type=click.Choice(["starter", "pro", "enterprise"]))
@click.option("--force", is_flag=True, help="Even below the organization's current usage.")
def org_set_plan(organization: str, plan: str, force: bool) -> None:
    """Put ORGANIZATION (slug or id) on PLAN."""
    from lovedcrm.billing import operator

    _org_run(operator.set_plan(get_settings(), organization, plan, force))


@org.command("set-flag")
@click.argument("organization")
@click.argument("name")
@click.argument("value")
def org_set_flag(organization: str, name: str, value: str) -> None:
    """A feature (ai_agent, calls, …) or billing: on/off/default; limit.<name>: a number,
    unlimited or default."""
    from lovedcrm.billing import operator

    _org_run(operator.set_flag(get_settings(), organization, name, value))


@org.command("show")
@click.argument("organization")
def org_show(organization: str) -> None:
    """The organization's plan, flags, subscription and usage, as JSON."""
    from lovedcrm.billing import operator

    _org_run(operator.show(get_settings(), organization))


if __name__ == "__main__":
    main()
