"""booking rows without foreign keys (orders, bookings, attendees)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# (table, constraint, columns, referred table, referred columns)
DROPPED = (
    ('attendees', 'fk_attendees_booking_id_bookings', ['booking_id'], 'bookings', ['id']),
    ('bookings', 'fk_bookings_event_id_events', ['event_id'], 'events', ['id']),
    ('bookings', 'fk_bookings_order_id_orders', ['order_id'], 'orders', ['id']),
    ('orders', 'fk_orders_account_id_users', ['account_id'], 'users', ['id']),
)


def upgrade() -> None:
    for table, name, _, _, _ in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_='foreignkey')


def downgrade() -> None:
    for table, name, columns, referred, referred_columns in reversed(DROPPED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(name, referred, columns, referred_columns)
