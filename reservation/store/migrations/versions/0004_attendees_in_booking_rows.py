"""a booking's attendees as a JSON column of its row, not a table of their own

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:40:00
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

CHUNK = 1000

bookings = sa.table(
    'bookings',
    sa.column('id', sa.String(36)),
    sa.column('order_id', sa.String(36)),
    sa.column('event_id', sa.String(36)),
    sa.column('attendees', sa.Text()),
)


def _attendee_columns() -> list[Any]:
    """The ``attendees`` table as revision 0003 left it (read by the upgrade, made again
    by the downgrade)."""
    return [
        sa.Column('booking_id', sa.String(length=36), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('order_id', sa.String(length=36), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint('booking_id', 'position', name=op.f('pk_attendees')),
    ]


def _chunks(items: list[Any]) -> Any:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def upgrade() -> None:
    op.add_column('bookings', sa.Column('attendees', sa.Text(), nullable=True))
    conn = op.get_bind()
    attendees = sa.Table('attendees', sa.MetaData(), *_attendee_columns())
    people: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows = conn.execute(
        sa.select(attendees.c.booking_id, attendees.c.name, attendees.c.email).order_by(
            attendees.c.booking_id, attendees.c.position
        )
    )
    for booking_id, name, email in rows:
        people[booking_id].append({'name': name, 'email': email})
    update = (
        sa.update(bookings).where(bookings.c.id == sa.bindparam('b_id')).values(attendees=sa.bindparam('b_people'))
    )
    for chunk in _chunks(list(people.items())):
        conn.execute(update, [{'b_id': b, 'b_people': json.dumps(p, ensure_ascii=False)} for b, p in chunk])
    conn.execute(sa.update(bookings).where(bookings.c.attendees.is_(None)).values(attendees='[]'))
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.alter_column('attendees', existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table('attendees', schema=None) as batch_op:
        batch_op.drop_index('ix_attendees_order_id')
    op.drop_table('attendees')


def downgrade() -> None:
    attendees = op.create_table('attendees', *_attendee_columns())
    with op.batch_alter_table('attendees', schema=None) as batch_op:
        batch_op.create_index('ix_attendees_order_id', ['order_id'], unique=False)
    conn = op.get_bind()
    found = conn.execute(
        sa.select(bookings.c.id, bookings.c.order_id, bookings.c.event_id, bookings.c.attendees)
    ).all()
    rows = [
        {'booking_id': b_id, 'position': position, 'order_id': order_id, 'event_id': event_id,
         'name': person['name'], 'email': person.get('email')}
        for b_id, order_id, event_id, people in found
        for position, person in enumerate(json.loads(people or '[]'))
    ]
    for chunk in _chunks(rows):
        conn.execute(sa.insert(attendees), chunk)
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_column('attendees')
