"""One unread "new WhatsApp message" notification per member and lead, kept by the database.

The ``message.received`` subscriber read the member's unread notifications before each insert
(one unread per lead at a time: a burst of messages is one notification until it is read).
That read, repeated per inbound message, cost the WhatsApp intake a fifth of its throughput.
A partial unique index now says the same thing, and the insert's ``ON CONFLICT DO NOTHING``
skips the second one (``notifications.service.notify``). Existing duplicates (there should be
none) are marked read first, keeping the newest unread.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_notifications_unread_message"


def upgrade() -> None:
    op.execute(
        """
        UPDATE notifications AS n SET read_at = now()
        WHERE n.notification_type = 'message_received' AND n.read_at IS NULL
          AND EXISTS (
            SELECT 1 FROM notifications AS newer
            WHERE newer.organization_id = n.organization_id AND newer.user_id = n.user_id
              AND newer.lead_id = n.lead_id AND newer.notification_type = 'message_received'
              AND newer.read_at IS NULL
              AND (newer.created_at, newer.id) > (n.created_at, n.id)
          )
        """
    )
    op.create_index(
        INDEX,
        "notifications",
        ["organization_id", "user_id", "lead_id"],
        unique=True,
        postgresql_where="notification_type = 'message_received' AND read_at IS NULL",
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notifications")
