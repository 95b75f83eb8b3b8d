"""idempotency_keys.idem_key compared exactly on MySQL/MariaDB: VARBINARY of its UTF-8

Under the tables' default collation (utf8mb4_general_ci) keys differing only in letter
case, accents or trailing spaces were one key there (and the second request was
answered with the first one's order), while SQLite told them apart.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:20:00
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        # The bytes stay as they were (the column's UTF-8), only comparison changes.
        op.execute('ALTER TABLE idempotency_keys MODIFY idem_key VARBINARY(1020) NOT NULL')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        # Fails on a duplicate key if the store holds two keys that the collation
        # takes for one: they cannot both be kept under the old column.
        op.execute('ALTER TABLE idempotency_keys MODIFY idem_key VARCHAR(255) NOT NULL')
