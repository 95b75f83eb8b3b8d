"""The event actor's side of the store: claim an event, load it, group-commit batches.

One ``InventoryStore`` serves one actor. A batch is one transaction:

1. load the bookings and orders the batch refers to that the actor does not hold in
   memory (so a command retried after a restart is recognised);
2. the actor applies the commands to its state machine (no awaits in between);
3. the event's counters are written first, fenced by the actor's epoch (a stale
   incarnation matches no row and is refused), then every row the batch created or
   changed; then COMMIT. Callers are answered only after that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reservation.domain.commands import BookingStatus, Code
from reservation.domain.ids import booking_id_for
from reservation.domain.inventory import Booking, Effects, Inventory, OrderMemo
from reservation.errors import error_for
from reservation.store.schema import attendees, bookings, events, idempotency_keys, orders


class Fenced(Exception):
    """A newer incarnation of the event's actor has claimed the event."""


class EventMissing(Exception):
    """The event does not exist in the store."""


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def to_ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.replace(tzinfo=UTC).timestamp()


@dataclass(slots=True)
class Claim:
    inventory: Inventory
    epoch: int


_BOOKING_COLUMNS = (
    bookings.c.id,
    bookings.c.order_id,
    bookings.c.account_id,
    bookings.c.quantity,
    bookings.c.unit_price_minor,
    bookings.c.status,
    bookings.c.created_at,
    bookings.c.expires_at,
)


def _booking_from_row(row: Any) -> Booking:
    return Booking(
        booking_id=row.id,
        order_id=row.order_id,
        account_id=row.account_id,
        quantity=row.quantity,
        unit_price_minor=row.unit_price_minor,
        status=BookingStatus(row.status),
        created_at=to_ts(row.created_at) or 0.0,
        expires_at=to_ts(row.expires_at),
    )


class InventoryStore:
    """Store operations of one event's actor."""

    def __init__(self, engine: AsyncEngine, event_id: str) -> None:
        self.engine = engine
        self.event_id = event_id

    async def claim(self) -> Claim:
        """Take ownership (a new epoch) and rebuild the inventory from the booking rows."""
        async with self.engine.begin() as conn:
            bumped = await conn.execute(
                update(events).where(events.c.id == self.event_id).values(epoch=events.c.epoch + 1)
            )
            if bumped.rowcount != 1:
                raise EventMissing(self.event_id)
            row = (
                await conn.execute(
                    select(
                        events.c.capacity,
                        events.c.oversell_capacity,
                        events.c.status,
                        events.c.price_minor,
                        events.c.currency,
                        events.c.epoch,
                    ).where(events.c.id == self.event_id)
                )
            ).one()
            sold = (
                await conn.execute(
                    select(func.coalesce(func.sum(bookings.c.quantity), 0)).where(
                        bookings.c.event_id == self.event_id,
                        bookings.c.status == BookingStatus.CONFIRMED.value,
                    )
                )
            ).scalar_one()
            held_rows = (
                await conn.execute(
                    select(*_BOOKING_COLUMNS).where(
                        bookings.c.event_id == self.event_id,
                        bookings.c.status == BookingStatus.HELD.value,
                    )
                )
            ).all()
        inventory = Inventory(
            self.event_id,
            capacity=row.capacity,
            oversell_capacity=row.oversell_capacity,
            on_sale=row.status == "on_sale",
            price_minor=row.price_minor,
            currency=row.currency,
            sold=int(sold),
            bookings=[_booking_from_row(r) for r in held_rows],
        )
        return Claim(inventory, int(row.epoch))

    @asynccontextmanager
    async def batch(self, epoch: int) -> AsyncIterator[BatchTransaction]:
        """One group-commit transaction; commits when the block exits cleanly."""
        async with self.engine.begin() as conn:
            yield BatchTransaction(conn, self.event_id, epoch)


class BatchTransaction:
    def __init__(self, conn: AsyncConnection, event_id: str, epoch: int) -> None:
        self.conn = conn
        self.event_id = event_id
        self.epoch = epoch

    async def load_bookings(self, ids: Iterable[str]) -> list[Booking]:
        wanted = list(ids)
        if not wanted:
            return []
        rows = await self.conn.execute(
            select(*_BOOKING_COLUMNS).where(
                bookings.c.id.in_(wanted), bookings.c.event_id == self.event_id
            )
        )
        return [_booking_from_row(r) for r in rows]

    async def load_orders(self, ids: Iterable[str]) -> list[OrderMemo]:
        """Orders that already exist under these ids (idempotent replays)."""
        wanted = list(ids)
        if not wanted:
            return []
        rows = await self.conn.execute(
            select(
                orders.c.id,
                orders.c.request_hash,
                orders.c.status,
                orders.c.problem_type,
                orders.c.problem_detail,
            ).where(orders.c.id.in_(wanted))
        )
        memos = []
        for r in rows:
            rejected = r.status == "rejected"
            memos.append(
                OrderMemo(
                    order_id=r.id,
                    request_hash=r.request_hash or "",
                    code=Code(r.problem_type) if rejected and r.problem_type else Code.OK,
                    booking_id=None if rejected else booking_id_for(r.id, self.event_id),
                    detail=r.problem_detail or "",
                )
            )
        return memos

    async def _insert(self, table: Table, rows: list[tuple[Any, ...]]) -> None:
        """Bulk-insert rows (tuples in the table's column order) straight through the driver.

        The hot path of every booking: it skips SQLAlchemy's per-row parameter processing,
        which costs more than the database work at large batches.
        """
        if not rows:
            return
        dialect = self.conn.dialect
        key = (dialect.name, table.name)
        sql = _INSERTS.get(key)
        if sql is None:
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            quote = dialect.identifier_preparer.quote
            names = ", ".join(quote(c.name) for c in table.columns)
            sql = _INSERTS[key] = (
                f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join([mark] * len(table.columns))})"
            )
        await self.conn.exec_driver_sql(sql, rows)

    async def write(self, inventory: Inventory, effects: Effects, now: float) -> None:
        """Write the batch's effects; raise Fenced if another incarnation owns the event."""
        ts = to_dt(now)
        fenced = await self.conn.execute(
            update(events)
            .where(events.c.id == self.event_id, events.c.epoch == self.epoch)
            .values(
                sold=inventory.sold,
                held=inventory.held,
                capacity=inventory.capacity,
                oversell_capacity=inventory.oversell_capacity,
                status="on_sale" if inventory.on_sale else "paused",
                price_minor=inventory.price_minor,
                version=events.c.version + 1,
                updated_at=ts,
            )
        )
        if fenced.rowcount != 1:
            raise Fenced(self.event_id)
        currency = inventory.currency
        stamp = _sql_time(ts)
        if effects.orders:
            by_id = {b.booking_id: b for b in effects.created}
            order_rows = []
            key_rows = []
            for eff in effects.orders:
                booking = by_id.get(eff.booking_id) if eff.booking_id else None
                if eff.code is not Code.OK or booking is None:
                    status, total = "rejected", 0
                else:
                    status = _order_status(booking.status)
                    total = booking.quantity * booking.unit_price_minor
                new = eff.order
                order_rows.append(
                    (
                        new.order_id, new.account_id, status, new.request_hash, new.idempotency_key, total,
                        currency, None if eff.code is Code.OK else eff.code.value, eff.detail[:500] or None,
                        stamp, stamp,
                    )
                )
                if new.idempotency_key is not None:
                    code = 201 if status != "rejected" else error_for(eff.code, "").status
                    key_rows.append(
                        (new.account_id, new.idempotency_key, new.request_hash, new.order_id, code, None, stamp)
                    )
            await self._insert(orders, order_rows)
            if key_rows:
                await self._insert(idempotency_keys, key_rows)
        if effects.created:
            event_id = self.event_id
            await self._insert(
                bookings,
                [
                    (
                        b.booking_id, b.order_id, event_id, b.account_id, b.quantity, b.unit_price_minor, currency,
                        b.status.value, None if b.expires_at is None else _sql_time(to_dt(b.expires_at)),
                        _sql_time(to_dt(b.created_at)), stamp,
                    )
                    for b in effects.created
                ],
            )
            await self._insert(
                attendees,
                [
                    (b.booking_id, position, b.order_id, event_id, a.name, a.email)
                    for b in effects.created
                    for position, a in enumerate(b.attendees)
                ],
            )
        if effects.updated:
            # One statement per target status, not one per booking.
            by_status: dict[BookingStatus, list[str]] = defaultdict(list)
            held_again = []
            for b in effects.updated:
                if b.status is BookingStatus.HELD and b.expires_at is not None:
                    held_again.append({"b_id": b.booking_id, "b_expires": to_dt(b.expires_at)})
                else:
                    by_status[b.status].append(b.booking_id)
            if held_again:
                await self.conn.execute(
                    update(bookings)
                    .where(bookings.c.id == bindparam("b_id"))
                    .values(status=BookingStatus.HELD.value, expires_at=bindparam("b_expires"), updated_at=ts),
                    held_again,
                )
            for status, ids in by_status.items():
                await self.conn.execute(
                    update(bookings)
                    .where(bookings.c.id.in_(bindparam("ids", expanding=True)))
                    .values(status=status.value, expires_at=None, updated_at=ts),
                    {"ids": ids},
                )


def _order_status(status: BookingStatus) -> str:
    return {
        BookingStatus.HELD: "pending",
        BookingStatus.CONFIRMED: "confirmed",
        BookingStatus.CANCELLED: "cancelled",
    }.get(status, "rejected")


_INSERTS: dict[tuple[str, str], str] = {}


def _sql_time(dt: datetime) -> str:
    """A naive UTC time as both stores take it (and as SQLAlchemy writes SQLite's)."""
    return dt.isoformat(sep=" ", timespec="microseconds")


def is_integrity_error(exc: BaseException) -> bool:
    return isinstance(exc, IntegrityError)


def is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, (DBAPIError, OSError, TimeoutError))
