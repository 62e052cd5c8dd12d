"""Each run's own counts: api_log, quarantine and operations rows name the run that made, refused or ran them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = (('api_log', 'ix_api_log_run'), ('quarantine', 'ix_quarantine_run'), ('operations', 'ix_operations_run'))


def upgrade() -> None:
    for table, index in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('run_id', Id, nullable=True))
        op.create_index(index, table, ['run_id'], unique=False)


def downgrade() -> None:
    for table, index in TABLES:
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('run_id')
