"""orders.problem_event_id: the event a refused order was refused on

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('orders', sa.Column('problem_event_id', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('problem_event_id')
