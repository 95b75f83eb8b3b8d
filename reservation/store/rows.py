"""The rows an event actor writes, named without SQLAlchemy.

An event actor is a process of its own, started whenever an event is first booked (and
again after a failure or an idle stop); importing SQLAlchemy cost each one about 0.4 s
of CPU, a quarter of its start. So the actor's side of the store (``inventory``,
``link``) uses the drivers directly, and the tables it writes are spelled out here.
``schema.py`` stays the one definition of the tables; a test checks that these names
match it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowTable:
    """A table's name and the columns a writer fills, in order (all but ``seq``)."""

    name: str
    columns: tuple[str, ...]


ORDERS = RowTable(
    "orders",
    (
        "id", "account_id", "status", "request_hash", "idempotency_key", "total_minor", "currency",
        "problem_type", "problem_detail", "problem_event_id", "created_at", "updated_at",
    ),
)  # fmt: skip

BOOKINGS = RowTable(
    "bookings",
    (
        "id", "order_id", "event_id", "account_id", "quantity", "unit_price_minor", "currency", "status",
        "expires_at", "created_at", "updated_at", "attendees",
    ),
)  # fmt: skip

# What the actor reads of a booking, in this order (``inventory._booking_from_row``).
BOOKING_READ = ("id", "order_id", "account_id", "quantity", "unit_price_minor", "status", "created_at", "expires_at")
