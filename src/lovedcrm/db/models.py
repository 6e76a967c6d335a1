"""Every model, imported so ``metadata`` (Alembic's target) knows every table."""

from __future__ import annotations

from lovedcrm.ai.models import AiConversation, AiTrainingData
from lovedcrm.analytics.models import AnalyticsEvent
from lovedcrm.audit.models import AuditLog
from lovedcrm.auth.models import ApiKey, User, UserSession, UserToken
from lovedcrm.billing.models import Subscription, UsageMetric
from lovedcrm.calendar.models import CalendarEvent, CalendarIntegration
from lovedcrm.core.models import IdempotencyKey, RateLimitCounter
from lovedcrm.db.base import Base
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.leads.models import Lead, LeadActivity
from lovedcrm.marketing.models import MarketingIntegration
from lovedcrm.messaging.models import (
    Message,
    MessageAttachment,
    MessageTemplate,
    ProviderMigration,
    TemplateUsageStat,
)
from lovedcrm.organizations.models import Invitation, Organization, OrganizationMember
from lovedcrm.pipeline.models import PipelineStage
from lovedcrm.scoring.models import LeadScoringModel
from lovedcrm.voip.models import CallLog, VoipConfig
from lovedcrm.webhooks.models import WebhookDelivery, WebhookSubscription

metadata = Base.metadata

TENANT_TABLES: tuple[str, ...] = tuple(
    sorted(t.name for t in metadata.sorted_tables if "organization_id" in t.c)
)

__all__ = [
    "TENANT_TABLES",
    "AiConversation",
    "AiTrainingData",
    "AnalyticsEvent",
    "ApiKey",
    "AuditLog",
    "BackgroundJob",
    "Base",
    "CalendarEvent",
    "CalendarIntegration",
    "CallLog",
    "IdempotencyKey",
    "Invitation",
    "Lead",
    "LeadActivity",
    "LeadScoringModel",
    "MarketingIntegration",
    "Message",
    "MessageAttachment",
    "MessageTemplate",
    "Organization",
    "OrganizationMember",
    "PipelineStage",
    "ProviderMigration",
    "RateLimitCounter",
    "Subscription",
    "TemplateUsageStat",
    "UsageMetric",
    "User",
    "UserSession",
    "UserToken",
    "VoipConfig",
    "WebhookDelivery",
    "WebhookSubscription",
    "metadata",
]
