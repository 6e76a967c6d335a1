"""Refresh-token families and an atomic log-in throttle.

- ``user_sessions.family_id`` (NOT NULL, indexed): every session opened by one log-in shares
  it; a refresh (or an organization switch) rotates the session into a new row of the same
  family. ``rotated_at`` marks a row replaced by rotation, so presenting its token again is
  a reuse (a stolen copy): the whole family is revoked. Existing rows become families of one.
- ``login_attempts`` (global, UNLOGGED, no organization: no row-level security, like
  ``rate_limit_counters``): one row per SHA-256 of (e-mail, client address) counting the
  password checks in a window that starts at the first one. It is incremented with one
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` *before* the password is checked, so
  parallel attempts can never check more passwords than the limit.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user_sessions", sa.Column("family_id", postgresql.UUID(), nullable=True))
    op.add_column(
        "user_sessions", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE user_sessions SET family_id = id")
    op.alter_column("user_sessions", "family_id", nullable=False)
    op.create_index("ix_user_sessions_family_id", "user_sessions", ["family_id"])
    op.create_table(
        "login_attempts",
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_login_attempts")),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_login_attempts_window_start", "login_attempts", ["window_start"])


def downgrade() -> None:
    op.drop_table("login_attempts")
    op.drop_index("ix_user_sessions_family_id", table_name="user_sessions")
    op.drop_column("user_sessions", "rotated_at")
    op.drop_column("user_sessions", "family_id")
