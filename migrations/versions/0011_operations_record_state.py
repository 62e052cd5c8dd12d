"""The operations index by record also holds the state

Superseding the queued writes of a page's records (``hub.sync.ingest.coalesce``) asks for a route's pending
operations of a few hundred records. With the index on (route_id, canonical_id) alone, SQLite preferred the
(route_id, state) index and read every pending operation of the route on every page: an update of a 100,000-product
catalog slowed as its own queue grew. With the state in the index, each record is one probe.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_operations_record', table_name='operations')
    op.create_index('ix_operations_record', 'operations', ['route_id', 'canonical_id', 'state'])


def downgrade() -> None:
    op.drop_index('ix_operations_record', table_name='operations')
    op.create_index('ix_operations_record', 'operations', ['route_id', 'canonical_id'])
