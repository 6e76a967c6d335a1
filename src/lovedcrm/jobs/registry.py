"""Every module that registers job handlers, imported once before enqueuing or working."""

from __future__ import annotations

import importlib
from functools import cache

HANDLER_MODULES = (
    "lovedcrm.jobs.builtin",
    "lovedcrm.webhooks.jobs",
    "lovedcrm.leads.importing",
    "lovedcrm.messaging.jobs",
)


@cache
def load_handlers() -> None:
    for module in HANDLER_MODULES:
        importlib.import_module(module)
