"""HTML pages for leads: the list (sort, filters, keyset pages, bulk actions:
:mod:`.listing`), the create form with the duplicate warning (:mod:`.create`), the import
wizard (upload → mapping → progress: :mod:`.importing`), the lead page (edit in place, stage,
won/lost/reopen, custom fields: :mod:`.detail`), its timeline, notes and tasks
(:mod:`.timeline`), merge and delete (:mod:`.merge`), and Settings → assignment of new leads
(:mod:`.assignment`). What they share is in ``._common``.

Thin: every rule (scope, permissions, validation, duplicates) lives in ``leads.service``,
``leads.activities``, ``leads.dedup`` and ``leads.importing``; these pages translate forms
into their calls and their errors into words under the fields.
"""

from __future__ import annotations

from lovedcrm.leads.pages._common import LeadInPage
from lovedcrm.leads.pages.assignment import router as assignment_router
from lovedcrm.leads.pages.create import router as create_router
from lovedcrm.leads.pages.detail import router as detail_router
from lovedcrm.leads.pages.importing import router as importing_router
from lovedcrm.leads.pages.listing import router as listing_router
from lovedcrm.leads.pages.merge import router as merge_router
from lovedcrm.leads.pages.timeline import router as timeline_router
from lovedcrm.web.kit import page_router

router = page_router()
# In matching order: /leads/new and /leads/import/... before /leads/{lead_id}/...
for screen in (
    listing_router,
    create_router,
    importing_router,
    detail_router,
    timeline_router,
    merge_router,
    assignment_router,
):
    router.include_router(screen)

__all__ = ["LeadInPage", "router"]
