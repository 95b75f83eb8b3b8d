"""Store-level checks shared by integration tests: read the database, not the API.

Most of it opens its own blocking engine on the store (``sync_url``) and reads in one
transaction, so what it sees is one consistent snapshot that no front-end cache or
actor memory can paper over; ``store_rows`` reads the same way through a running
front end's engine, for async tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, func, select

from reservation.domain.commands import BookingStatus
from reservation.store.db import sync_url
from reservation.store.schema import attendees_from_json, bookings, events, orders, users
from tests.conftest import Api

LIVE = (BookingStatus.HELD.value, BookingStatus.CONFIRMED.value)


@dataclass(frozen=True, slots=True)
class EventSnapshot:
    """One event's counters as stored, next to what its booking rows add up to."""

    event_id: str
    capacity: int
    oversell_capacity: int
    sold: int
    held: int
    confirmed_quantity: int
    held_quantity: int
    confirmed_rows: int
    held_rows: int

    @property
    def limit(self) -> int:
        return self.capacity + self.oversell_capacity


def _quantity_and_rows(conn: Connection, event_id: str, status: BookingStatus) -> tuple[int, int]:
    row = conn.execute(
        select(func.coalesce(func.sum(bookings.c.quantity), 0), func.count()).where(
            bookings.c.event_id == event_id, bookings.c.status == status.value
        )
    ).one()
    return int(row[0]), int(row[1])


def _snapshot(conn: Connection, event_id: str) -> EventSnapshot:
    row = conn.execute(
        select(events.c.capacity, events.c.oversell_capacity, events.c.sold, events.c.held).where(
            events.c.id == event_id
        )
    ).first()
    assert row is not None, f"event {event_id} is not in the store"
    confirmed_quantity, confirmed_rows = _quantity_and_rows(conn, event_id, BookingStatus.CONFIRMED)
    held_quantity, held_rows = _quantity_and_rows(conn, event_id, BookingStatus.HELD)
    return EventSnapshot(
        event_id=event_id,
        capacity=int(row.capacity),
        oversell_capacity=int(row.oversell_capacity),
        sold=int(row.sold),
        held=int(row.held),
        confirmed_quantity=confirmed_quantity,
        held_quantity=held_quantity,
        confirmed_rows=confirmed_rows,
        held_rows=held_rows,
    )


def _orphans(conn: Connection, event_id: str) -> dict[str, int]:
    """Rows of the event whose parent is missing (the booking rows carry no foreign keys)."""

    def without(rows: Table, of_event: Any, reference: Any, parent_id: Any) -> Any:
        """How many of the event's ``rows`` refer to a ``parent_id`` that is not there."""
        missing = ~select(parent_id).where(parent_id == reference).exists()
        return select(func.count()).select_from(rows).where(of_event, missing)

    counts = {
        "bookings without their order": without(
            bookings, bookings.c.event_id == event_id, bookings.c.order_id, orders.c.id
        ),
        "orders without their account": without(
            orders,
            orders.c.id.in_(select(bookings.c.order_id).where(bookings.c.event_id == event_id)),
            orders.c.account_id,
            users.c.id,
        ),
    }
    found = {name: int(conn.execute(query).scalar_one()) for name, query in counts.items()}
    # Not an orphan, but the same kind of reference: one attendee per seat booked.
    people = conn.execute(
        select(bookings.c.quantity, bookings.c.attendees).where(bookings.c.event_id == event_id)
    ).all()
    found["bookings whose attendees do not match their quantity"] = sum(
        len(attendees_from_json(text)) != quantity for quantity, text in people
    )
    return {name: n for name, n in found.items() if n}


@contextlib.contextmanager
def sync_engine(url: str) -> Iterator[Engine]:
    """A synchronous engine on the store at ``url`` (async URLs too), disposed after use."""
    engine = create_engine(sync_url(url))
    try:
        yield engine
    finally:
        engine.dispose()


def read_event(url: str, event_id: str) -> EventSnapshot:
    """The event's stored counters and booking sums, read in one transaction."""
    with sync_engine(url) as engine, engine.connect() as conn, conn.begin():
        return _snapshot(conn, event_id)


def assert_store_consistent(
    url: str,
    event_id: str,
    *,
    expected_sold: int | None = None,
    expected_held: int | None = None,
    confirmed_ids: Iterable[str] = (),
) -> EventSnapshot:
    """Assert the store keeps the inventory invariants for one event; return what it read.

    Checked in this order (the first broken one raises AssertionError):

    * ``sold + held <= capacity + oversell_capacity`` (message starts with "oversold");
    * the ``events`` counters equal SUM(quantity) of the event's bookings by status ("drift");
    * ``expected_sold`` / ``expected_held``, when given;
    * every id in ``confirmed_ids`` (bookings answered as confirmed) is a CONFIRMED
      booking of this event in the store ("lost");

    and, before all of these, that every booking of the event has its order and one
    attendee per seat, and every such order its account ("orphans").
    """
    wanted = sorted(set(confirmed_ids))
    with sync_engine(url) as engine, engine.connect() as conn, conn.begin():
        snap = _snapshot(conn, event_id)
        found: dict[str, tuple[str, str]] = {}
        # Chunked: SQLite limits the number of bound parameters per statement.
        for start in range(0, len(wanted), 500):
            rows = conn.execute(
                select(bookings.c.id, bookings.c.event_id, bookings.c.status).where(
                    bookings.c.id.in_(wanted[start : start + 500])
                )
            )
            found.update({r.id: (r.event_id, r.status) for r in rows})
        orphans = _orphans(conn, event_id)
    assert not orphans, f"orphans: rows of event {event_id} whose parent row is missing: {orphans}"
    assert 0 <= snap.sold and 0 <= snap.held, f"negative counters: {snap}"
    assert snap.sold + snap.held <= snap.limit, (
        f"oversold: sold {snap.sold} + held {snap.held} > capacity {snap.capacity} "
        f"+ oversell {snap.oversell_capacity} ({snap})"
    )
    assert (snap.sold, snap.held) == (snap.confirmed_quantity, snap.held_quantity), (
        f"drift: counters sold={snap.sold} held={snap.held} but booking rows add up to "
        f"confirmed={snap.confirmed_quantity} held={snap.held_quantity}"
    )
    if expected_sold is not None:
        assert snap.sold == expected_sold, f"sold {snap.sold}, expected {expected_sold}"
    if expected_held is not None:
        assert snap.held == expected_held, f"held {snap.held}, expected {expected_held}"
    missing = [i for i in wanted if found.get(i) != (event_id, BookingStatus.CONFIRMED.value)]
    assert not missing, (
        f"lost: {len(missing)} booking(s) answered as confirmed are not confirmed in the store, "
        f"e.g. {[(i, found.get(i)) for i in missing[:5]]}"
    )
    return snap


def stored_orders(url: str, order_ids: list[str]) -> int:
    """How many of these orders have a row in the store."""
    with sync_engine(url) as engine, engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(orders.c.id.in_(order_ids))).scalar_one())


def live_bookings_of_order(url: str, order_id: str) -> list[tuple[str, str, str]]:
    """(booking id, event id, status) of the order's HELD or CONFIRMED bookings in the store."""
    with sync_engine(url) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(bookings.c.id, bookings.c.event_id, bookings.c.status).where(
                bookings.c.order_id == order_id, bookings.c.status.in_(LIVE)
            )
        )
        return [(r.id, r.event_id, r.status) for r in rows]


# ------------------------------------------------ through the front end's own engine


async def store_rows(api: Api, event_id: str) -> dict[str, Any]:
    """The event's counters and booking rows, read straight from the store."""
    async with api.runtime.reader.connect() as conn:
        event = (
            await conn.execute(
                select(events.c.sold, events.c.held, events.c.capacity, events.c.epoch).where(events.c.id == event_id)
            )
        ).one()
        rows = (
            await conn.execute(
                select(
                    bookings.c.id, bookings.c.order_id, bookings.c.status, bookings.c.quantity, bookings.c.attendees
                ).where(bookings.c.event_id == event_id)
            )
        ).all()
    # Attendees per booking, as stored.
    people = {r.id: len(attendees_from_json(r.attendees)) for r in rows}
    return {"event": event, "bookings": rows, "attendees": people}


def assert_counters_match_rows(snapshot: dict[str, Any]) -> None:
    """Invariants 1 and 3 in the store: counters are the sums of the rows and within the limit."""
    rows = snapshot["bookings"]
    event = snapshot["event"]
    sold = sum(r.quantity for r in rows if r.status == BookingStatus.CONFIRMED.value)
    held = sum(r.quantity for r in rows if r.status == BookingStatus.HELD.value)
    assert (event.sold, event.held) == (sold, held)
    assert event.sold + event.held <= event.capacity


def actor_alive(event_id: str, namespace: str) -> bool:
    """Whether the event's actor holds its name in Ray (running, or pending for room)."""
    import ray

    from actors.gateway import actor_name

    try:
        ray.get_actor(actor_name(event_id), namespace=namespace)
    except ValueError:
        return False
    return True
