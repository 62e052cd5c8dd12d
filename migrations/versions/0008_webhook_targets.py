"""The records webhooks named, waiting for their route's targeted read

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'webhook_targets',
        sa.Column('id', Id, autoincrement=True, nullable=False),
        sa.Column('tenant_id', sa.String(length=64), nullable=False),
        sa.Column('route_id', Id, nullable=False),
        sa.Column('stream', sa.String(length=64), nullable=False),
        sa.Column('external_id', sa.String(length=100), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['route_id'], ['routes.id'], name=op.f('fk_webhook_targets_route_id_routes'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_targets')),
        sa.UniqueConstraint('route_id', 'stream', 'external_id',
                            name=op.f('uq_webhook_targets_route_id_stream_external_id')),
    )


def downgrade() -> None:
    op.drop_table('webhook_targets')
