"""Typed settings, read from the environment with the prefix ``LOVEDCRM_``."""

from __future__ import annotations

import ipaddress
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Placeholder secrets are accepted in development only; Settings refuses them elsewhere.
_DEV_SECRET = "dev-insecure-secret-change-me-0123456789abcdef"  # noqa: S105 - refused outside dev
_DEV_ENCRYPTION_KEY = "ZGV2LWluc2VjdXJlLWtleS1jaGFuZ2UtbWUtMDEyMzQ="  # 32 bytes, base64
_HOST_NAME = re.compile(r"(?i)[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?\.?")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOVEDCRM_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("var")

    # Unset: an embedded PostgreSQL is started under data_dir/postgres.
    database_url: str | None = None
    # The role the app connects as: no SUPERUSER, no BYPASSRLS. Created by the bootstrap.
    db_app_role: str = "lovedcrm_app"
    db_app_password: SecretStr | None = None
    # Optional full URL for the app role (otherwise derived from database_url).
    app_database_url: str | None = None
    # Connections kept per process. A request holds one for its whole transaction, so a
    # process answering N requests at once needs N: with 10 kept and 10 overflow, 32
    # concurrent clients on two processes opened and closed 6 connections per process all
    # the time (a PostgreSQL backend started for a request or two), and throughput fell
    # below that of 8 clients. 20 + 5 per process: two serving processes, their side pools
    # and a separate worker stay under PostgreSQL's default 100 connections.
    db_pool_size: int = 20
    db_max_overflow: int = 5
    db_side_pool_size: int = 4

    secret_key: SecretStr = SecretStr(_DEV_SECRET)
    # AES-256-GCM key for provider secrets, base64 of 32 bytes.
    encryption_key: SecretStr = SecretStr(_DEV_ENCRYPTION_KEY)

    access_token_minutes: int = 15
    refresh_token_days: int = 30
    web_session_days: int = 14
    email_token_hours: int = 48
    invitation_days: int = 7
    cookie_secure: bool = False
    login_max_failures: int = 10
    login_failure_window_minutes: int = 15

    # Mail: "console" logs, "file" writes .eml files under data_dir/mail, "smtp" sends.
    mail_backend: Literal["console", "file", "smtp"] = "file"
    mail_from: str = "Loved CRM <no-reply@lovedcrm.local>"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True

    # Every URL the server calls for someone (webhooks, WhatsApp providers, …) goes through
    # core.outbound: link-local and cloud-metadata addresses are always refused; loopback and
    # private ones only when listed here: host names, addresses or networks, comma-separated
    # (LOVEDCRM_OUTBOUND_ALLOW="waha.internal,10.0.0.0/8,127.0.0.1"). Empty: public only.
    outbound_allow: Annotated[tuple[str, ...], NoDecode] = ()

    # Outgoing webhooks. Private and loopback targets are refused (checked after DNS
    # resolution, at delivery time) unless listed in outbound_allow; true here allows every
    # loopback and private network for webhooks alone (link-local stays refused). Plain http
    # only where allowed.
    webhooks_allow_private_targets: bool = False
    webhooks_allow_http: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=20)
    webhook_disable_after_failures: int = Field(default=15, ge=1)

    # A server process runs a job worker inside unless this is false (or --no-worker).
    # `serve --workers N` (N > 1, the default) sets it false in its server processes and
    # starts one worker process of N x embedded_worker_concurrency slots beside them.
    embedded_worker: bool = True
    embedded_worker_concurrency: int = 4
    # Upper bound on jobs of one organization run in one transaction (handlers opt in).
    worker_max_batch: int = Field(default=50, ge=1, le=500)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # An organization's logo upload (kept under max_body_bytes, which bounds the whole form).
    logo_max_bytes: int = Field(default=1_000_000, ge=1024)
    # Lead import uploads (CSV/XLSX) get their own, larger limit.
    import_max_bytes: int = Field(default=20 * 1_048_576, ge=1024)
    # What an import file may hold, checked when it is uploaded (read off the event loop):
    # data rows, columns, characters in one cell (Excel's own limit), and for an XLSX the
    # size of its contents once unzipped (a 1 MB zip can unpack to gigabytes).
    import_max_rows: int = Field(default=200_000, ge=1)
    import_max_columns: int = Field(default=256, ge=1)
    import_max_cell_chars: int = Field(default=32_767, ge=1)
    import_max_unpacked_bytes: int = Field(default=128 * 1_048_576, ge=1024)
    # Requests per hour for a signed-in user (API keys carry their own limit); 0 = no limit.
    user_rate_limit_per_hour: int = Field(default=5000, ge=0)
    # How often each process writes API keys' last_used_at / total_requests.
    api_key_usage_flush_seconds: float = Field(default=5.0, gt=0)
    # WhatsApp media: downloaded attachments above this size, or of another type, are refused
    # (the message itself is kept and says why).
    whatsapp_media_max_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    whatsapp_media_types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "image/webp",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "video/mp4",
        "video/3gpp",
        "application/pdf",
        "text/plain",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/msword",
        "application/vnd.ms-excel",
    )
    # Where downloaded and uploaded files live: a local folder (data_dir/files) or an
    # S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, …).
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    # Timeout of one call to a WhatsApp provider.
    whatsapp_http_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    # Agenda (issue 17): video rooms and Google Calendar. The Google URLs are settings so a
    # test (or a proxy) can point them elsewhere; every call goes through core.outbound.
    jitsi_base_url: str = "https://meet.jit.si"
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    google_revoke_url: str = "https://oauth2.googleapis.com/revoke"
    google_calendar_api_url: str = "https://www.googleapis.com/calendar/v3"
    # Billing (issue 18). Off (self-hosted): every feature on, no limit enforced; an
    # organization's features_enabled["billing"] overrides it either way. "sandbox" is the
    # demo's offline checkout; "stripe" calls Stripe (keys below; the API URL is a setting
    # so a test or a proxy can point it elsewhere; every call goes through core.outbound).
    billing_enabled: bool = False
    billing_provider: Literal["sandbox", "stripe"] = "sandbox"
    billing_currency: Literal["BRL", "USD"] = "BRL"
    billing_trial_days: int = Field(default=14, ge=0, le=90)
    billing_grace_days: int = Field(default=7, ge=0, le=60)
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_url: str = "https://api.stripe.com"
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    # Monitoring (issue 20): /metrics needs "Authorization: Bearer <metrics_token>" when set,
    # else it answers loopback and private addresses only. OpenTelemetry traces go over
    # OTLP/HTTP to otlp_endpoint (e.g. http://collector:4318/v1/traces) when it is set.
    # Marketing e-mail: DKIM-signed when all three are set (a PEM private key file, the
    # selector and the signing domain of the DNS record).
    marketing_dkim_key_file: Path | None = None
    marketing_dkim_selector: str | None = None
    marketing_dkim_domain: str | None = None
    metrics_token: SecretStr | None = None
    otlp_endpoint: str | None = None
    otlp_service_name: str = "lovedcrm"
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _split_allow_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _check_allow_list(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(
                        f"LOVEDCRM_OUTBOUND_ALLOW: {entry!r} is neither a host name, an address "
                        "nor a network"
                    ) from None
        return tuple(entry.lower().rstrip(".") for entry in value)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "production":
            if self.secret_key.get_secret_value() == _DEV_SECRET:
                raise ValueError("LOVEDCRM_SECRET_KEY must be set in production")
            if self.encryption_key.get_secret_value() == _DEV_ENCRYPTION_KEY:
                raise ValueError("LOVEDCRM_ENCRYPTION_KEY must be set in production")
            if self.database_url is None:
                raise ValueError("LOVEDCRM_DATABASE_URL must be set in production")
            if self.billing_enabled and self.billing_provider == "sandbox":
                # The sandbox checkout "pays" with no money: enforcing plans with it would
                # give any admin any plan.
                raise ValueError(
                    "LOVEDCRM_BILLING_PROVIDER=stripe is needed when LOVEDCRM_BILLING_ENABLED"
                    " is true in production"
                )
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("LOVEDCRM_S3_BUCKET must be set when LOVEDCRM_STORAGE_BACKEND=s3")
        if len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("LOVEDCRM_SECRET_KEY must be at least 32 characters")
        return self

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_dir.resolve() / "postgres"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def generate_secret() -> str:
    return secrets.token_urlsafe(48)
