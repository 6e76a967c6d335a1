"""The ``lovedcrm`` command line: serve, worker, db upgrade/downgrade, demo, create-admin."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

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
@click.option("--no-worker", is_flag=True, help="Do not run a job worker inside the server.")
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (each with its own in-process job worker unless --no-worker); "
    "more than one run under a supervisor process, and end with it even when it is killed.",
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

    import uvicorn

    # SIGTERM or SIGINT: uvicorn shuts down gracefully, then raises the signal again. Its
    # default action would kill the process before the exit hooks run (the embedded
    # PostgreSQL would outlive the app); a clean exit runs them.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    # Links in mail and the demo banner point at where this server really listens.
    os.environ.setdefault("LOVEDCRM_BASE_URL", f"http://{host}:{port}")
    if no_worker:
        os.environ["LOVEDCRM_EMBEDDED_WORKER"] = "false"
    if workers > 1 and not reload:
        from lovedcrm.core.process import mark_supervisor

        mark_supervisor()
    get_settings.cache_clear()
    settings = get_settings()
    if not no_migrate:
        _prepare(settings)
    if demo:
        from lovedcrm.demo import load_demo

        asyncio.run(load_demo(settings))
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
    from lovedcrm.db.engine import create_database
    from lovedcrm.jobs.engine import Worker

    configure_logging(settings.log_level, settings.log_json)
    database = create_database(settings)
    job_worker = Worker(database, settings, concurrency=concurrency, types=types)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, job_worker.stop)
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


if __name__ == "__main__":
    main()
