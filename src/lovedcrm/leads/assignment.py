"""Automatic assignment of new leads: round-robin among the organization's sales members.

``organizations.settings["assignment"]`` says who gets a new lead that names no assignee:
``"manual"`` (the default: nobody, someone assigns it by hand) or ``"round_robin"`` (the next
active member with the ``sales`` role). ``leads.service.create_lead`` calls
:func:`automatic_assignee` when the caller gives no ``assigned_to``; other ways in (the
import, incoming WhatsApp messages) call it the same way, in the transaction that inserts
the lead.

Fair rotation: the member whose last automatic lead is the oldest goes next; a member who
never got one goes first; ties in joined order (then membership id). Only active members
(active membership and active account) with the role ``sales`` take part; with none, the
lead stays unassigned (no fallback to managers or admins).

Rotation state, without a migration: ``organizations.settings["assignment_cursor"]`` =
``{"seq": <automatic picks so far>, "last": {"<user id>": <seq of their last pick>}}``.
Not derived from the leads: a lead does not record whether it was assigned automatically
(a hand-made assignment must not move the rotation), and ``created_at`` is the start time of
the transaction, so it cannot order several picks made in one transaction (an import chunk);
a counter can.

Concurrency: a pick takes ``pg_advisory_xact_lock`` on a key of the organization before it
reads the cursor and holds it until the transaction ends. Concurrent picks in one
organization therefore run one after the other, and each reads the cursor the previous one
committed (READ COMMITTED: every statement sees a fresh snapshot). A transaction that rolls
back leaves the cursor as it was, as if it never picked. Other organizations never wait.
The cursor is written with ``jsonb_set`` on its own key only, and
``organizations.service.update_organization`` re-reads the settings under a row lock before
it changes them, so a settings change saved meanwhile and the cursor never overwrite each
other. ``assignment_cursor`` is not a setting the API accepts (nor shows), so only picks
write it. Lock order: the advisory lock, then the organization row (the cursor's UPDATE);
settings changes take the row lock only.

Cost: in ``manual`` mode nothing is read or locked. In ``round_robin`` mode the lead
creations of one organization are serialized from the pick to the commit (requests are
short; an import holds the lock for one chunk).

Calling :func:`automatic_assignee` records the pick: call it only for a lead that is then
assigned to the answer in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from lovedcrm.auth.models import OrganizationMember, User
from lovedcrm.organizations.models import Organization
from lovedcrm.organizations.service import CURSOR_KEY, ROUND_ROBIN
from lovedcrm.organizations.service import mode_of as mode_of  # the mode: organizations'

ROTATION_ROLE = "sales"


async def rotation_members(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """``(user id, name)`` of the members taking part in the rotation, in joined order."""
    rows = await session.execute(
        select(OrganizationMember.user_id, User.full_name)
        .join(User, User.id == OrganizationMember.user_id)
        .where(
            OrganizationMember.organization_id == organization_id,
            OrganizationMember.role == ROTATION_ROLE,
            OrganizationMember.is_active.is_(True),
            User.is_active.is_(True),
        )
        .order_by(OrganizationMember.joined_at.asc().nulls_last(), OrganizationMember.id)
    )
    return [(user_id, name) for user_id, name in rows.all()]


def _parse_cursor(raw: Any) -> tuple[int, dict[str, int]]:
    """``(seq, last pick by user id)`` from the stored cursor (anything malformed is reset)."""
    if not isinstance(raw, dict):
        return 0, {}
    seq = raw.get("seq")
    last = raw.get("last")
    picks = {
        str(k): v
        for k, v in (last.items() if isinstance(last, dict) else [])
        if isinstance(v, int) and not isinstance(v, bool)
    }
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = 0
    return max([seq, *picks.values()]), picks


def _next_in_line(
    members: Sequence[tuple[uuid.UUID, str]], last: Mapping[str, int]
) -> list[tuple[uuid.UUID, str]]:
    """The members in the order they get the next leads (never picked first, then the
    longest waiting; joined order breaks ties, ``members`` being in joined order)."""
    ranked = sorted(enumerate(members), key=lambda im: (last.get(str(im[1][0]), 0), im[0]))
    return [member for _, member in ranked]


async def _cursor(session: AsyncSession, organization_id: uuid.UUID) -> tuple[int, dict[str, int]]:
    raw = (
        await session.execute(
            select(Organization.settings[CURSOR_KEY]).where(Organization.id == organization_id)
        )
    ).scalar_one_or_none()
    return _parse_cursor(raw)


async def rotation_order(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """Who gets the next automatic leads, first in line first (for the settings page: a
    read without the lock, so it may be one pick behind a creation in progress)."""
    members = await rotation_members(session, organization_id)
    _, last = await _cursor(session, organization_id)
    return _next_in_line(members, last)


async def _lock(session: AsyncSession, organization_id: uuid.UUID) -> None:
    # One lock per organization, held until commit or rollback (re-entrant in a session).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"lovedcrm.assignment:{organization_id}"},
    )


async def automatic_assignees(
    session: AsyncSession, organization_id: uuid.UUID, org_settings: Mapping[str, Any], count: int
) -> list[uuid.UUID | None]:
    """The assignees of ``count`` new leads, in order, and the rotation moved past them
    (all None in ``manual`` mode or when nobody takes part in the rotation)."""
    if count <= 0:
        return []
    if mode_of(org_settings) != ROUND_ROBIN:
        return [None] * count
    await _lock(session, organization_id)
    members = await rotation_members(session, organization_id)
    if not members:
        return [None] * count
    seq, last = await _cursor(session, organization_id)
    eligible = {str(user_id) for user_id, _ in members}
    last = {k: v for k, v in last.items() if k in eligible}  # keeps the cursor small
    picked: list[uuid.UUID | None] = []
    for _ in range(count):
        user_id = _next_in_line(members, last)[0][0]
        seq += 1
        last[str(user_id)] = seq
        picked.append(user_id)
    cursor = {"seq": seq, "last": last}
    await session.execute(
        text(
            "UPDATE organizations SET settings = jsonb_set(coalesce(settings, CAST('{}' AS jsonb)),"
            " '{assignment_cursor}', CAST(:cursor AS jsonb)) WHERE id = :id"
        ),
        {"cursor": json.dumps(cursor), "id": organization_id},
    )
    # An Organization already loaded in this session keeps showing the current cursor,
    # without being marked as changed (a flush must not write its older settings back).
    loaded = session.identity_map.get(session.identity_key(Organization, organization_id))
    if isinstance(loaded, Organization):
        set_committed_value(loaded, "settings", {**(loaded.settings or {}), CURSOR_KEY: cursor})
    return picked


async def automatic_assignee(
    session: AsyncSession, organization_id: uuid.UUID, org_settings: Mapping[str, Any]
) -> uuid.UUID | None:
    """The assignee of one new lead under the organization's setting: the next sales member
    in the rotation for ``round_robin``, None for ``manual`` or when no sales member is
    active. Records the pick (see the module's notes); ``org_settings`` is the
    organization's ``settings`` (only its ``assignment`` mode is read from it)."""
    return (await automatic_assignees(session, organization_id, org_settings, 1))[0]
