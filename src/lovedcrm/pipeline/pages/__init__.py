"""HTML pages for the pipeline: the board (:mod:`.board`) and the stages settings page
(:mod:`.settings`). Thin: the board's rules live in ``pipeline.board``, the stage list with
totals and removal in ``pipeline.service``, the stage rows in ``leads.stages``.

Drag and drop and live updates talk to the JSON API (``/api/v1/leads/{id}/move``,
``/api/v1/pipeline/stages/reorder``, ``/api/v1/events/stream``) from ``static/board.js``,
``static/live.js`` and ``static/stages.js``; every action also works as a plain form.
"""

from __future__ import annotations

from lovedcrm.pipeline.pages.board import router as board_router
from lovedcrm.pipeline.pages.settings import router as settings_router
from lovedcrm.web.kit import page_router

router = page_router()
router.include_router(board_router)
router.include_router(settings_router)

__all__ = ["router"]
