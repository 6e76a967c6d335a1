"""The append-only audit trail (organization_id NULL for system-level events)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import INET, UUID
from sqlalchemy.orm import Mapped, mapped_column

from lovedcrm.db.base import Base, created_at_col, jsonb_object, org_id_unique, uuid_pk


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        org_id_unique("audit_logs"),
        CheckConstraint("risk_score >= 0 AND risk_score <= 100", name="risk_score"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="SET NULL")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[uuid.UUID | None] = mapped_column()
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[uuid.UUID | None] = mapped_column()
    changes: Mapped[dict[str, Any] | None] = jsonb_object()
    success: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"), default=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    risk_score: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime | None] = created_at_col()


Index("ix_audit_logs_org_id", AuditLog.organization_id)
Index("ix_audit_logs_user_id", AuditLog.user_id)
Index("ix_audit_logs_action", AuditLog.action)
Index("ix_audit_logs_resource", AuditLog.resource_type, AuditLog.resource_id)
Index("ix_audit_logs_created_at", AuditLog.created_at.desc())
Index(
    "ix_audit_logs_org_action_created",
    AuditLog.organization_id,
    AuditLog.action,
    AuditLog.created_at.desc(),
)
Index(
    "ix_audit_logs_security_risk",
    AuditLog.organization_id,
    AuditLog.risk_score.desc(),
    postgresql_where=text("risk_score > 50"),
)
# Not in the spec; created by migration 0002 for the login throttle (lovedcrm_login_failures).
Index(
    "ix_audit_logs_login_failures",
    AuditLog.changes["email"].astext,
    AuditLog.created_at,
    postgresql_where=text("action = 'login' AND success = false"),
)
