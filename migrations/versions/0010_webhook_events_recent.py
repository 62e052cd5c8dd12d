"""Webhook events keep the record they name, indexed by it and by event and arrival

A wait for a remote change ends when an event naming the awaited record arrived after the wait began, even if it
landed before the operation recorded the remote id; a plugin asks whether a kind of event arrives lately.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_id', sa.String(length=100), nullable=True))
    op.create_index('ix_webhook_events_recent', 'webhook_events', ['connection_id', 'event', 'received_at'])
    op.create_index('ix_webhook_events_named', 'webhook_events', ['connection_id', 'external_id', 'received_at'])


def downgrade() -> None:
    op.drop_index('ix_webhook_events_named', table_name='webhook_events')
    op.drop_index('ix_webhook_events_recent', table_name='webhook_events')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('external_id')
