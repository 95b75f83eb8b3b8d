"""users.email compared exactly on MySQL/MariaDB: VARBINARY of its UTF-8

Addresses are stored in lower case. Under the tables' default collation
(utf8mb4_general_ci) an address differing from a registered one only in an accent
(zoe@ and zoë@) was taken for it there: its owner could not register. SQLite told
them apart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:27:00
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.execute('ALTER TABLE users MODIFY email VARBINARY(1280) NOT NULL')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        # Fails on a duplicate key if two addresses are one under the collation.
        op.execute('ALTER TABLE users MODIFY email VARCHAR(320) NOT NULL')
