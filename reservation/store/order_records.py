"""Orders as the front end reads them, and the rows of multi-event orders.

A one-event order is written entirely by its event's actor: its order row, whose id is
derived from (account, Idempotency-Key), is also the key's record. An order over
several events starts here: its order row and idempotency record (which tracks the
request in flight) are written first (the actors' booking rows refer to the order),
and finished here once every actor answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from reservation.domain.commands import Code
from reservation.errors import error_for
from reservation.store.schema import attendees_from_json, bookings, idempotency_keys, orders


@dataclass(frozen=True, slots=True)
class KeyRecord:
    request_hash: str
    order_id: str
    status_code: int | None
    locked_until: datetime | None


async def start_order(
    engine: AsyncEngine, order: dict[str, Any], key: dict[str, Any] | None
) -> KeyRecord | None:
    """Insert a pending order (and its key record); if the key exists, return its record.

    The key may have been used for a one-event order first: its actor wrote only the
    order row (whose id, derived from account and key, is this order's id), and that
    row then stands for the key's record.
    """
    try:
        async with engine.begin() as conn:
            if key is not None:
                await conn.execute(idempotency_keys.insert(), key)
            await conn.execute(orders.insert(), order)
    except IntegrityError:
        if key is None:
            raise
        record = await get_key(engine, key["account_id"], key["idem_key"])
        if record is None:
            record = await _order_as_key(engine, order["id"], key["account_id"])
        if record is None:
            raise
        return record
    return None


async def _order_as_key(engine: AsyncEngine, order_id: str, account_id: str) -> KeyRecord | None:
    """The key record a one-event order's row stands for (it is settled when written)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(orders.c.request_hash, orders.c.status, orders.c.problem_type).where(
                    orders.c.id == order_id, orders.c.account_id == account_id
                )
            )
        ).first()
    if row is None or row.request_hash is None:
        return None
    status_code = 201
    if row.status == "rejected":
        status_code = error_for(Code(row.problem_type) if row.problem_type else Code.CONFLICT, "").status
    return KeyRecord(row.request_hash, order_id, status_code, None)


async def get_key(engine: AsyncEngine, account_id: str, idem_key: str) -> KeyRecord | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.order_id,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.locked_until,
                ).where(
                    idempotency_keys.c.account_id == account_id,
                    idempotency_keys.c.idem_key == idem_key,
                )
            )
        ).first()
    return None if row is None else KeyRecord(*row)


async def take_over_key(
    engine: AsyncEngine, account_id: str, idem_key: str, now: datetime, until: datetime
) -> bool:
    """Claim an in-flight record whose owner stopped (its lock ran out)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.account_id == account_id,
                idempotency_keys.c.idem_key == idem_key,
                idempotency_keys.c.status_code.is_(None),
                idempotency_keys.c.locked_until < now,
            )
            .values(locked_until=until)
        )
    return result.rowcount == 1


async def release_key(engine: AsyncEngine, account_id: str, idem_key: str, now: datetime) -> None:
    """Give up an in-flight record without an answer, so a retry may run at once."""
    async with engine.begin() as conn:
        await conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.account_id == account_id,
                idempotency_keys.c.idem_key == idem_key,
                idempotency_keys.c.status_code.is_(None),
            )
            .values(locked_until=now)
        )


async def finish_order(
    engine: AsyncEngine,
    order_id: str,
    *,
    status: str,
    total_minor: int,
    problem: tuple[str, str, str | None] | None,
    key: tuple[str, str] | None,
    status_code: int,
    now: datetime,
    currency: str | None = None,
) -> None:
    values: dict[str, Any] = {"currency": currency} if currency else {}
    async with engine.begin() as conn:
        await conn.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(
                **values,
                status=status,
                total_minor=total_minor,
                problem_type=problem[0] if problem else None,
                problem_detail=problem[1][:500] if problem else None,
                problem_event_id=problem[2] if problem else None,
                updated_at=now,
            )
        )
        if key is not None:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.account_id == key[0], idempotency_keys.c.idem_key == key[1])
                .values(status_code=status_code, locked_until=None)
            )


async def set_order_status(engine: AsyncEngine, order_id: str, status: str, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(orders).where(orders.c.id == order_id).values(status=status, updated_at=now)
        )


async def get_order(engine: AsyncEngine, order_id: str, account_id: str) -> dict[str, Any] | None:
    """The order with its bookings and attendees, if it belongs to ``account_id``."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(orders).where(orders.c.id == order_id, orders.c.account_id == account_id)
            )
        ).first()
        if row is None:
            return None
        order = dict(row._mapping)
        await _attach_items(conn, [order])
    return order


async def list_orders(
    engine: AsyncEngine, account_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """The account's orders, newest first (rejected attempts left out)."""
    query = select(orders).where(orders.c.account_id == account_id, orders.c.status != "rejected")
    if before is not None:
        at, last_id = before
        query = query.where(
            or_(orders.c.created_at < at, and_(orders.c.created_at == at, orders.c.id < last_id))
        )
    query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        found = [dict(r._mapping) for r in (await conn.execute(query)).all()]
        await _attach_items(conn, found)
    return found


async def _attach_items(conn: Any, found: list[dict[str, Any]]) -> None:
    if not found:
        return
    ids = [o["id"] for o in found]
    booking_rows = (
        await conn.execute(
            select(bookings).where(bookings.c.order_id.in_(ids)).order_by(bookings.c.created_at, bookings.c.id)
        )
    ).all()
    items: dict[str, list[dict[str, Any]]] = {}
    for b in booking_rows:
        item = dict(b._mapping)
        item["attendees"] = attendees_from_json(item["attendees"])
        items.setdefault(b.order_id, []).append(item)
    for order in found:
        order["items"] = items.get(order["id"], [])
