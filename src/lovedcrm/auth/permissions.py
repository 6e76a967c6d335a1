"""Roles and permissions: the one table in code (mirrored in docs/permissions.md).

A member's effective permissions are their role's set, adjusted by per-member overrides
stored in ``organization_members.permissions`` as ``{"<permission>": true|false}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    SALES = "sales"
    VIEWER = "viewer"


ROLE_NAMES = frozenset(r.value for r in Role)

# Each permission with what it allows (used in docs and error messages).
PERMISSIONS: dict[str, str] = {
    "leads:read": "see leads (only those assigned to you without leads:read_all)",
    "leads:read_all": "see every lead of the organization, not only your own",
    "leads:write": "create and edit leads (only your own without leads:write_all)",
    "leads:write_all": "edit and reassign any lead of the organization",
    "leads:delete": "delete leads",
    "leads:export": "export leads",
    "leads:import": "import leads",
    "pipeline:manage": "add, rename, reorder and remove pipeline stages",
    "messages:read": "read conversations of the leads you can see",
    "messages:write": "send messages to the leads you can edit",
    "templates:manage": "create and edit message templates",
    "members:read": "see the organization's members",
    "members:manage": "invite members, change roles, remove members",
    "settings:manage": "change the organization's settings and integrations",
    "billing:manage": "manage the subscription and invoices",
    "api_keys:manage": "create and revoke API keys",
    "webhooks:manage": "manage webhook subscriptions",
    "audit:read": "read the audit trail",
    "jobs:manage": "see and retry background jobs",
    "reports:read": "see reports and dashboards",
}

# What a permission means as an API key's scope, where it differs from a member's: a key acts
# for the whole organization (auth.api_keys.key_permissions), so "your own leads" does not
# apply; the scopes a key's scope implies are named.
SCOPE_DESCRIPTIONS: dict[str, str] = {
    "leads:read": "list and read every lead of the organization",
    "leads:write": "create and edit every lead of the organization (implies leads:read)",
    "leads:delete": "delete leads (implies leads:read)",
    "leads:export": "export every lead of the organization (implies leads:read)",
    "leads:import": "import leads (implies leads:read)",
    "messages:read": "read the conversations of every lead (implies leads:read)",
    "messages:write": "send messages to any lead (implies messages:read)",
    "templates:manage": "create and edit message templates (implies messages:read)",
}

_ALL = frozenset(PERMISSIONS)

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: _ALL,
    Role.MANAGER: frozenset(
        {
            "leads:read",
            "leads:read_all",
            "leads:write",
            "leads:write_all",
            "leads:delete",
            "leads:export",
            "leads:import",
            "pipeline:manage",
            "messages:read",
            "messages:write",
            "templates:manage",
            "members:read",
            "audit:read",
            "reports:read",
        }
    ),
    Role.SALES: frozenset(
        {
            "leads:read",
            "leads:write",
            "messages:read",
            "messages:write",
            "members:read",
            "reports:read",
        }
    ),
    Role.VIEWER: frozenset(
        {"leads:read", "leads:read_all", "messages:read", "members:read", "reports:read"}
    ),
}


def effective_permissions(role: str, overrides: Mapping[str, Any] | None) -> frozenset[str]:
    """The role's permissions with per-member grants (true) and revocations (false) applied.
    Unknown names in overrides are ignored, so a typo never grants anything."""
    base = set(ROLE_PERMISSIONS[Role(role)]) if role in ROLE_NAMES else set()
    for name, allowed in (overrides or {}).items():
        if name not in PERMISSIONS:
            continue
        if allowed is True:
            base.add(name)
        elif allowed is False:
            base.discard(name)
    return frozenset(base)


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, bool]:
    unknown = sorted(k for k in overrides if k not in PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permissions: {', '.join(unknown)}")
    bad = sorted(k for k, v in overrides.items() if not isinstance(v, bool))
    if bad:
        raise ValueError(f"permission overrides must be true or false: {', '.join(bad)}")
    return {k: bool(v) for k, v in overrides.items()}
