"""Who is acting: a person in an organization, or an API key acting for one.

A value object every service takes as its first argument after the session. It knows no web
framework and no domain: ``auth`` builds it from a credential (``auth.authentication``), jobs
build it for the member a job acts for (``auth.service.principal_for_member``), and services
only ask it questions (``can``, ``require``, ``org``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from lovedcrm.core.errors import Forbidden

Via = Literal["jwt", "web", "api_key", "job"]


@dataclass(frozen=True)
class Person:
    """The person behind a principal, as read when the request was authenticated: plain
    values, so pages can still show them after the transaction has ended."""

    id: uuid.UUID
    email: str
    full_name: str
    email_verified: bool | None = None


@dataclass(frozen=True)
class Principal:
    user: Person
    organization_id: uuid.UUID | None
    role: str | None
    permissions: frozenset[str]
    via: Via
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        if self.can(permission):
            return
        if self.via == "api_key":
            raise Forbidden(
                f"This API key lacks the '{permission}' scope.",
                code="insufficient_scope",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{permission}"'
                },
                extra={"scope": permission, "permission": permission},
            )
        raise Forbidden(
            f"You do not have the '{permission}' permission.",
            code="permission_denied",
            extra={"permission": permission},
        )

    def org(self) -> uuid.UUID:
        if self.organization_id is None:
            raise Forbidden(
                "You are not a member of any organization. Create one or accept an invitation.",
                code="no_organization",
            )
        return self.organization_id
