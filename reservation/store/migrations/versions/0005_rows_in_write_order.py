"""orders and bookings stored in write order: a numbered primary key, ids unique beside it

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ('orders', 'bookings')


def upgrade() -> None:
    _rekey(numbered=True)


def downgrade() -> None:
    _rekey(numbered=False)


def _rekey(*, numbered: bool) -> None:
    """Make ``seq`` the primary key with ``id`` unique (numbered), or ``id`` the key again."""
    for table in TABLES:
        if op.get_bind().dialect.name == 'sqlite':
            _rebuild_sqlite(table, numbered=numbered)
        elif numbered:
            # One statement: MySQL takes an AUTO_INCREMENT column only together with its key.
            op.execute(
                f'ALTER TABLE {table} DROP PRIMARY KEY, '
                'ADD COLUMN seq BIGINT NOT NULL AUTO_INCREMENT FIRST, '
                f'ADD CONSTRAINT pk_{table} PRIMARY KEY (seq), '
                f'ADD CONSTRAINT uq_{table}_id UNIQUE (id)'
            )
        else:
            op.execute(
                f'ALTER TABLE {table} DROP INDEX uq_{table}_id, DROP PRIMARY KEY, DROP COLUMN seq, '
                f'ADD CONSTRAINT pk_{table} PRIMARY KEY (id)'
            )


def _rebuild_sqlite(table: str, *, numbered: bool) -> None:
    """SQLite changes a primary key only by copying the table: the same columns, with
    ``seq`` first and ``id`` unique (numbered), or ``id`` the key again; rows keep their
    order of writing, indexes are made again."""
    conn = op.get_bind()
    old = sa.Table(table, sa.MetaData(), autoload_with=conn)
    kept = [c for c in old.columns if c.name != 'seq']
    indexes = [(ix.name, [c.name for c in ix.columns]) for ix in old.indexes if not ix.unique]
    columns = [sa.Column('seq', sa.Integer(), primary_key=True, autoincrement=True)] if numbered else []
    columns += [
        sa.Column(c.name, c.type, nullable=False if c.name == 'id' else c.nullable, server_default=c.server_default)
        for c in kept
    ]
    key: sa.Constraint
    if numbered:
        key = sa.UniqueConstraint('id', name=f'uq_{table}_id')
    else:
        key = sa.PrimaryKeyConstraint('id', name=f'pk_{table}')
    copy = sa.Table(f'_{table}_copy', sa.MetaData(), *columns, key)
    copy.create(conn)
    names = ', '.join(c.name for c in kept)
    order = 'seq' if not numbered else 'created_at, id'
    op.execute(f'INSERT INTO _{table}_copy ({names}) SELECT {names} FROM {table} ORDER BY {order}')
    op.drop_table(table)
    op.rename_table(f'_{table}_copy', table)
    for name, on in indexes:
        op.create_index(name, table, on)
