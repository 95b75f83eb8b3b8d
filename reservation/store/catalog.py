"""Events and their policies, as hosts create them and customers browse them.

Inventory columns (capacity, oversell, sold, held, sale status, price) are written
here only when an event is created; afterwards only the event's actor writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reservation.store.schema import event_policies, events

_COLUMNS = (*events.c, *(c for c in event_policies.c if c.name not in ("event_id", "updated_at")))


async def create_event(engine: AsyncEngine, event: dict[str, Any], policy: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(events.insert(), event)
        await conn.execute(event_policies.insert(), policy)


def _joined() -> Any:
    return select(*_COLUMNS).select_from(
        events.join(event_policies, event_policies.c.event_id == events.c.id)
    )


async def get_event(engine: AsyncEngine, event_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_joined().where(events.c.id == event_id))).first()
    return None if row is None else dict(row._mapping)


async def event_exists(engine: AsyncEngine, event_id: str) -> bool:
    async with engine.connect() as conn:
        row = (await conn.execute(select(events.c.id).where(events.c.id == event_id))).first()
    return row is not None


async def list_events(
    engine: AsyncEngine,
    *,
    text: str | None,
    starts_from: datetime | None,
    starts_to: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Events by start time then id (keyset pagination: stable under inserts)."""
    query = _joined()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                events.c.title.like(pattern, escape="\\"),
                events.c.description.like(pattern, escape="\\"),
                events.c.venue.like(pattern, escape="\\"),
            )
        )
    if starts_from is not None:
        query = query.where(events.c.starts_at >= starts_from)
    if starts_to is not None:
        query = query.where(events.c.starts_at < starts_to)
    if after is not None:
        at, last_id = after
        query = query.where(
            or_(events.c.starts_at > at, and_(events.c.starts_at == at, events.c.id > last_id))
        )
    query = query.order_by(events.c.starts_at, events.c.id).limit(limit)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [dict(r._mapping) for r in rows]


async def update_details(
    engine: AsyncEngine, event_id: str, fields: dict[str, Any], policy: dict[str, Any] | None, now: datetime
) -> None:
    """Change descriptive fields and the policy (never the inventory columns)."""
    async with engine.begin() as conn:
        if fields:
            await conn.execute(update(events).where(events.c.id == event_id).values(**fields, updated_at=now))
        if policy:
            await conn.execute(
                update(event_policies)
                .where(event_policies.c.event_id == event_id)
                .values(**policy, updated_at=now)
            )
