"""Indexes for the fair dispatch of operations: urgent kinds first, each route's queue, what is in flight

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 08:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_operations_kind_due', 'operations', ['state', 'kind', 'available_at'], unique=False)
    op.create_index('ix_operations_route_queue', 'operations', ['route_id', 'state', 'id'], unique=False)
    op.create_index('ix_operations_dispatched', 'operations', ['state', 'dispatched_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_operations_dispatched', table_name='operations')
    op.drop_index('ix_operations_route_queue', table_name='operations')
    op.drop_index('ix_operations_kind_due', table_name='operations')
