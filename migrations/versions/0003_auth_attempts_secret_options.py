"""Token rotations in flight, token lifetime, encrypted secret options, failed-run backoff for routes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_issued_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('auth_attempt_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('auth_attempt_token', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('secret_options', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('routes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_failures', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('routes', schema=None) as batch_op:
        batch_op.drop_column('sync_failures')
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('secret_options')
        batch_op.drop_column('auth_attempt_token')
        batch_op.drop_column('auth_attempt_at')
        batch_op.drop_column('token_issued_at')
