"""The composition root's registry: every job handler and every event subscriber of the
product, registered by importing the modules that define them — here, and only here.

``create_app`` and the command line import this module; so do the tests. A job type or an
event subscriber that is not reachable from here does not exist for the worker.
"""

from __future__ import annotations

from types import ModuleType

from lovedcrm import models  # noqa: F401 - every table, so foreign keys resolve in any process
from lovedcrm.assistant import agent_events, agent_jobs, transcription_jobs
from lovedcrm.assistant import events as assistant_events
from lovedcrm.assistant import jobs as assistant_jobs
from lovedcrm.auth import events as auth_events
from lovedcrm.billing import events as billing_events
from lovedcrm.billing import jobs as billing_jobs
from lovedcrm.calendar import jobs as calendar_jobs
from lovedcrm.calls import events as calls_events
from lovedcrm.calls import jobs as calls_jobs
from lovedcrm.jobs import builtin as builtin_jobs
from lovedcrm.leads import events as leads_events
from lovedcrm.leads import jobs as leads_jobs
from lovedcrm.marketing import jobs as marketing_jobs
from lovedcrm.messaging import events as messaging_events
from lovedcrm.messaging import jobs as messaging_jobs
from lovedcrm.notifications import events as notifications_events
from lovedcrm.notifications import jobs as notifications_jobs
from lovedcrm.privacy import jobs as privacy_jobs
from lovedcrm.reports import events as reports_events
from lovedcrm.reports import jobs as reports_jobs
from lovedcrm.scoring import events as scoring_events
from lovedcrm.scoring import jobs as scoring_jobs
from lovedcrm.webhooks import events as webhooks_events
from lovedcrm.webhooks import jobs as webhooks_jobs

# Modules whose @job_handler functions (and periodic schedules) the workers run.
JOB_MODULES: tuple[ModuleType, ...] = (
    builtin_jobs,
    webhooks_jobs,
    leads_jobs,
    messaging_jobs,
    scoring_jobs,
    assistant_jobs,
    agent_jobs,
    reports_jobs,
    calendar_jobs,
    calls_jobs,
    transcription_jobs,
    notifications_jobs,
    billing_jobs,
    marketing_jobs,
    privacy_jobs,
)

# Modules whose @subscriber functions react to domain events, in this order within an event.
SUBSCRIBER_MODULES: tuple[ModuleType, ...] = (
    webhooks_events,
    reports_events,
    auth_events,
    leads_events,
    messaging_events,
    scoring_events,
    assistant_events,
    agent_events,
    calls_events,
    notifications_events,
    billing_events,
)
