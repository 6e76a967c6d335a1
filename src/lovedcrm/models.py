"""Every model, imported so ``metadata`` (Alembic's target) knows every table."""

from __future__ import annotations

from lovedcrm.assistant.models import AiConversation, AiSentimentModel, AiTrainingData
from lovedcrm.audit.models import AuditLog
from lovedcrm.auth.models import (
    ApiKey,
    Invitation,
    OrganizationMember,
    User,
    UserSession,
    UserToken,
)
from lovedcrm.billing.models import Subscription, UsageMetric
from lovedcrm.calendar.models import CalendarEvent, CalendarFeed, CalendarIntegration
from lovedcrm.calls.models import CallEvent, CallLog, VoipConfig
from lovedcrm.core.models import IdempotencyKey, RateLimitCounter
from lovedcrm.db.base import Base
from lovedcrm.jobs.models import BackgroundJob
from lovedcrm.leads.consent import LeadConsent
from lovedcrm.leads.models import Lead, LeadActivity, PipelineStage
from lovedcrm.marketing.models import (
    AdFormMapping,
    AdLeadReceipt,
    AdSpend,
    CampaignRecipient,
    EmailCampaign,
    EmailSuppression,
    EmailTrackingEvent,
    MarketingIntegration,
)
from lovedcrm.messaging.models import (
    Message,
    MessageAttachment,
    MessageTemplate,
    ProviderMigration,
    TemplateUsageStat,
)
from lovedcrm.notifications.models import Notification, NotificationPreference
from lovedcrm.organizations.models import Organization
from lovedcrm.privacy.models import PrivacyRequest
from lovedcrm.reports.models import (
    AnalyticsEvent,
    ReportActivityCount,
    ReportLeadFact,
    ReportStageSpan,
)
from lovedcrm.scoring.models import LeadScoringModel
from lovedcrm.webhooks.models import WebhookDelivery, WebhookSubscription

metadata = Base.metadata

TENANT_TABLES: tuple[str, ...] = tuple(
    sorted(t.name for t in metadata.sorted_tables if "organization_id" in t.c)
)

__all__ = [
    "TENANT_TABLES",
    "AdFormMapping",
    "AdLeadReceipt",
    "AdSpend",
    "AiConversation",
    "AiSentimentModel",
    "AiTrainingData",
    "AnalyticsEvent",
    "ApiKey",
    "AuditLog",
    "BackgroundJob",
    "Base",
    "CalendarEvent",
    "CalendarFeed",
    "CalendarIntegration",
    "CallEvent",
    "CallLog",
    "CampaignRecipient",
    "EmailCampaign",
    "EmailSuppression",
    "EmailTrackingEvent",
    "IdempotencyKey",
    "Invitation",
    "Lead",
    "LeadActivity",
    "LeadConsent",
    "LeadScoringModel",
    "MarketingIntegration",
    "Message",
    "MessageAttachment",
    "MessageTemplate",
    "Notification",
    "NotificationPreference",
    "Organization",
    "OrganizationMember",
    "PipelineStage",
    "PrivacyRequest",
    "ProviderMigration",
    "RateLimitCounter",
    "ReportActivityCount",
    "ReportLeadFact",
    "ReportStageSpan",
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
