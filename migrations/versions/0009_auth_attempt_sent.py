"""When a recorded token call was actually sent (a detached renewal marks it right before sending)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_attempt_sent_at', sa.DateTime(), nullable=True))
    # An attempt in flight during the upgrade may have been sent: keep deciding it as before (maybe spent).
    op.execute("UPDATE connections SET auth_attempt_sent_at = auth_attempt_at WHERE auth_attempt_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('auth_attempt_sent_at')
