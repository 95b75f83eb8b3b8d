"""Migrations: a store made by them is the schema the code uses, and upgrades keep rows.

Both stores. An older store (migrated to the first revision, holding orders) is
brought to the newest revision with its rows intact; the result has exactly the
tables, columns and indexes of ``reservation.store.schema`` (alembic's own
comparison finds no difference), and the newest revision goes back down cleanly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from reservation.store.db import migrate, migrate_down
from reservation.store.schema import attendees_from_json, metadata
from tests.conftest import empty_mysql_database
from tests.integration.checks import sync_engine

FIRST = "0001"
# An Idempotency-Key that MariaDB's default collation would take for others.
KEY = "Ключ-É 1"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: a new SQLite file, or a new MariaDB database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"
        return
    with empty_mysql_database(request.config, "reservation_migrations_") as url:
        yield url


def _differences(url: str) -> list[object]:
    with sync_engine(url) as engine, engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _columns(url: str, table: str) -> set[str]:
    with sync_engine(url) as engine:
        return {c["name"] for c in inspect(engine).get_columns(table)}


def _tables(url: str) -> set[str]:
    with sync_engine(url) as engine:
        return set(inspect(engine).get_table_names())


def _foreign_keys(url: str, table: str) -> set[str]:
    with sync_engine(url) as engine:
        return {fk["referred_table"] for fk in inspect(engine).get_foreign_keys(table)}


def _orders_of_key(engine: Engine, key: str) -> list[str]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT order_id FROM idempotency_keys WHERE idem_key = :k"), {"k": key})
        return list(found.scalars())


def test_newest_revision_is_the_schema_the_code_uses(blank_url: str) -> None:
    migrate(blank_url)
    assert _differences(blank_url) == []
    migrate(blank_url)  # again: nothing left to do, nothing breaks
    assert _differences(blank_url) == []


def test_upgrade_keeps_orders_and_downgrade_goes_back(blank_url: str) -> None:
    migrate(blank_url, FIRST)
    assert "problem_event_id" not in _columns(blank_url, "orders")
    assert _foreign_keys(blank_url, "bookings") == {"orders", "events"}
    with sync_engine(blank_url) as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, name, email, password_hash, role, created_at, updated_at) "
                    "VALUES ('u1', 'Ada', 'ada@example.com', '-', 'customer', :t, :t)"
                ),
                {"t": "2026-11-25 12:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO orders (id, account_id, status, total_minor, currency, problem_type, "
                    "problem_detail, created_at, updated_at) "
                    "VALUES ('o1', 'u1', 'rejected', 0, 'EUR', 'sold_out', 'no seats left', :t, :t)"
                ),
                {"t": "2026-11-25 12:00:00"},
            )
            # A confirmed booking with two attendees, in their own table at the first revision.
            conn.execute(
                text(
                    "INSERT INTO events (id, host_id, title, description, venue, starts_at, ends_at, capacity, "
                    "oversell_capacity, price_minor, currency, status, sold, created_at, updated_at) "
                    "VALUES ('e1', 'u1', 'Jazz', '', 'Hall', :t, :t, 10, 0, 100, 'EUR', 'on_sale', 2, :t, :t)"
                ),
                {"t": "2026-11-25 12:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO orders (id, account_id, status, total_minor, currency, created_at, updated_at) "
                    "VALUES ('o2', 'u1', 'confirmed', 200, 'EUR', :t, :t)"
                ),
                {"t": "2026-11-25 12:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO bookings (id, order_id, event_id, account_id, quantity, unit_price_minor, currency, "
                    "status, created_at, updated_at) "
                    "VALUES ('b1', 'o2', 'e1', 'u1', 2, 100, 'EUR', 'confirmed', :t, :t)"
                ),
                {"t": "2026-11-25 12:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO attendees (booking_id, position, order_id, event_id, name, email) "
                    "VALUES ('b1', :p, 'o2', 'e1', :n, :e)"
                ),
                [{"p": 1, "n": "Bo", "e": None}, {"p": 0, "n": "Ada 'Quote' \\ \"Ó\"", "e": "ada@example.com"}],
            )
            conn.execute(
                text(
                    "INSERT INTO idempotency_keys (account_id, idem_key, request_hash, order_id, status_code, "
                    "created_at) VALUES ('u1', :k, 'h', 'o2', 201, :t)"
                ),
                {"k": KEY, "t": "2026-11-25 12:00:00"},
            )
        people = [{"name": "Ada 'Quote' \\ \"Ó\"", "email": "ada@example.com"}, {"name": "Bo", "email": None}]
        migrate(blank_url)
        assert "problem_event_id" in _columns(blank_url, "orders")
        # The rows a booking writes carry no foreign keys; the colder tables keep theirs.
        assert [_foreign_keys(blank_url, t) for t in ("orders", "bookings")] == [set(), set()]
        assert _foreign_keys(blank_url, "events") == {"users"}
        # Attendees moved into their booking's row, in order; their table is gone.
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT status, problem_type, problem_detail, problem_event_id FROM orders WHERE id = 'o1'")
            ).one()
            stored = conn.execute(text("SELECT attendees FROM bookings WHERE id = 'b1'")).scalar_one()
        assert tuple(row) == ("rejected", "sold_out", "no seats left", None)
        assert attendees_from_json(stored) == people
        assert "attendees" not in _tables(blank_url)
        # The key and the address kept their bytes, and only those bytes find them now.
        assert _orders_of_key(engine, KEY) == ["o2"]
        assert _orders_of_key(engine, KEY.lower()) == []
        with engine.connect() as conn:
            for email, found in (("ada@example.com", ["u1"]), ("adá@example.com", [])):
                users = conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email})
                assert list(users.scalars()) == found, email

        migrate_down(blank_url, FIRST)
        assert "problem_event_id" not in _columns(blank_url, "orders")
        assert "attendees" not in _columns(blank_url, "bookings")
        assert _foreign_keys(blank_url, "bookings") == {"orders", "events"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 2
            back = conn.execute(
                text("SELECT name, email FROM attendees WHERE booking_id = 'b1' ORDER BY position")
            ).all()
        assert [{"name": n, "email": e} for n, e in back] == people

