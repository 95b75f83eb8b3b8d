"""The event actor's side of the store, without SQLAlchemy: same tables, same URLs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reservation.domain.commands import Attendee, attendees_json
from reservation.store.link import Target, UnsupportedURL, target_for
from reservation.store.rows import BOOKING_READ, BOOKINGS, ORDERS
from reservation.store.schema import attendees_from_json, bookings, orders, written_columns


def test_the_rows_the_actor_writes_are_the_schema_s_columns() -> None:
    assert ORDERS.columns == tuple(c.name for c in written_columns(orders))
    assert BOOKINGS.columns == tuple(c.name for c in written_columns(bookings))
    assert (ORDERS.name, BOOKINGS.name) == (orders.name, bookings.name)
    assert set(BOOKING_READ) <= set(bookings.columns.keys())


def test_a_booking_s_attendees_are_stored_as_a_json_list_of_names_and_emails() -> None:
    people = [Attendee("Ann \"A\" O'Neil", "ann@example.com"), Attendee("Bob")]
    text = attendees_json(people)
    assert text == '[{"name":"Ann \\"A\\" O\'Neil","email":"ann@example.com"},{"name":"Bob","email":null}]'
    assert attendees_from_json(text) == [{"name": a.name, "email": a.email} for a in people]
    assert attendees_json(iter(people)) == text == attendees_json(tuple(people))


def test_an_event_actor_process_does_not_import_sqlalchemy() -> None:
    """What a Ray worker imports to run an event actor: the module of its class."""
    code = "import sys, actors.event_actor; print(sorted(m for m in sys.modules if m.startswith('sqlalchemy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("sqlite+aiosqlite:////var/lib/r/reservation.db", Target("sqlite", path="/var/lib/r/reservation.db")),
        ("sqlite+aiosqlite:///var/reservation.db", Target("sqlite", path="var/reservation.db")),
        (
            "mysql+aiomysql://root@127.0.0.1:3306/reservation",
            Target(
                "mysql",
                options={"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "db": "reservation",
                         "connect_timeout": 5},
            ),
        ),
        (
            "mariadb+aiomysql://app:p%40ss%2Fw@db.internal/tickets?charset=utf8mb4&connect_timeout=2",
            Target(
                "mysql",
                options={"host": "db.internal", "user": "app", "password": "p@ss/w", "db": "tickets",
                         "charset": "utf8mb4", "connect_timeout": 2},
            ),
        ),
    ],
)  # fmt: skip
def test_urls_are_read_as_sqlalchemy_reads_them(url: str, target: Target) -> None:
    assert target_for(url) == target


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://localhost/r",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///r.db?timeout=3",
        "mysql+aiomysql://root@localhost/r?ssl_ca=/etc/ca.pem",
    ],
)
def test_urls_the_actors_cannot_use_are_refused(url: str) -> None:
    with pytest.raises(UnsupportedURL):
        target_for(url)
