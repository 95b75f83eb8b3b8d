"""Text that SQL would misread reaches the store unchanged (both stores).

On MariaDB the actor sends each group commit as one multi-statement query with the
values inlined as escaped literals (and a large batch's new rows loaded beside it:
``test_store_loads.py``); these names and keys must come back byte for byte and must
not end or add a statement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiomysql
import pytest
from sqlalchemy import func, select

from reservation.store.schema import attendees_from_json, bookings, events
from tests.conftest import Api, auth

NAMES = [
    "O'Brien",
    "back\\slash",
    "both \\' at once",
    "x'); DELETE FROM bookings; --",
    'double "quoted"',
    "two\nlines\r\tand a tab",
    "percent %s %% and ? marks",
    "名前 ✓ Ünïcödé 🎟",
    "trailing backslash \\",
]


async def test_names_and_keys_come_back_unchanged(api: Api) -> None:
    host = await api.register("host")
    customer = await api.register("customer")
    event = (await api.create_event(host, capacity=50))["id"]
    body = {"items": [{"event_id": event, "attendees": [{"name": n} for n in NAMES]}]}
    key = "key 'with' \\ quotes; and -- more"
    first = await api.client.post("/api/orders", json=body, headers={**auth(customer), "Idempotency-Key": key})
    assert first.status_code == 201, first.text
    order = first.json()
    assert [a["name"] for a in order["items"][0]["attendees"]] == [n.strip() for n in NAMES]

    again = await api.client.post("/api/orders", json=body, headers={**auth(customer), "Idempotency-Key": key})
    assert again.status_code == 201 and again.json() == order
    stored = await api.client.get(f"/api/orders/{order['id']}", headers=auth(customer))
    assert stored.status_code == 200 and stored.json() == order

    async with api.runtime.reader.connect() as conn:
        (stored,) = (await conn.execute(select(bookings.c.attendees).where(bookings.c.event_id == event))).scalars()
        names = [a["name"] for a in attendees_from_json(stored)]
        rows = (
            await conn.execute(select(func.count()).select_from(bookings).where(bookings.c.event_id == event))
        ).scalar_one()
    assert names == [n.strip() for n in NAMES]
    assert rows == 1, "the replay booked again"


async def test_a_batch_longer_than_one_query_is_sent_in_several(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """On MariaDB a group commit's statements are split into queries of bounded length.

    With the bound lowered to a few kilobytes and loads left for larger batches, one
    batch of 30 orders of 5 attendees, sent as INSERT literals, takes many queries in
    one transaction; everything is stored once and the counters match the rows.
    (SQLite sends statements one by one and ignores the bound.)
    """
    from actors.event_actor import EventActor
    from reservation.domain.commands import Attendee, Code, Confirm, one_event_order
    from reservation.domain.ids import order_id_for_key
    from reservation.store import inventory

    monkeypatch.setattr(inventory, "MAX_QUERY_CHARS", 3_000)
    monkeypatch.setattr(inventory, "LOAD_MIN_ROWS", 1_000)
    queries: list[int] = []
    execute = aiomysql.Cursor.execute

    async def counted(self: aiomysql.Cursor, query: str, args: Any = None) -> Any:
        queries.append(len(query))
        return await execute(self, query, args)

    monkeypatch.setattr(aiomysql.Cursor, "execute", counted)
    host = await api.register("host")
    customer = await api.register("customer")
    account = customer["X-Account"]
    event = (await api.create_event(host, capacity=500))["id"]
    commands: list[Any] = []
    for n in range(30):
        order_id = order_id_for_key(account, f"split-{n}")
        people = tuple(Attendee(f"Guest {n}-{i} " + "x" * 100, f"g{n}.{i}@example.com") for i in range(5))
        # Held, then confirmed by a command of its own: two commands an order.
        booked = one_event_order(order_id, account, event, people, 600.0, f"hash-{n}", f"split-{n}")
        hold = replace(booked, confirm=False)
        commands += [hold, Confirm(f"confirm:{hold.booking_id}", hold.booking_id)]
    actor = EventActor(event, api.runtime.settings.store_url)
    reply = await actor.submit(commands)
    await actor.close()
    assert [o.code for o in reply.outcomes] == [Code.OK] * 60
    assert reply.batch_sizes == [60], "not one batch"
    if api.runtime.settings.store_url.startswith("mysql"):
        # 30 x (order of ~200 characters, booking with 5 attendees of ~150 each): ~10 queries.
        assert len(queries) >= 10, queries
        assert max(queries) <= 3_000 + 1_000, "a query went past the bound by more than one row"

    async with api.runtime.reader.connect() as conn:
        booked = (
            await conn.execute(select(func.count(), func.sum(bookings.c.quantity)).where(bookings.c.event_id == event))
        ).one()
        people = (await conn.execute(select(bookings.c.attendees).where(bookings.c.event_id == event))).scalars()
        people_rows = sum(len(attendees_from_json(p)) for p in people)
        sold = (await conn.execute(select(events.c.sold).where(events.c.id == event))).scalar_one()
    assert tuple(booked) == (30, 150)
    assert people_rows == 150
    assert sold == 150
