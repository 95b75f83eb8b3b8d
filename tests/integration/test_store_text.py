"""Text that SQL would misread reaches the store unchanged (both stores).

On MariaDB the actor sends each group commit as one multi-statement query, its updates
with the values inlined as escaped literals and its new rows loaded beside it; these
names and keys must come back byte for byte and must not end or add a statement.
"""

from __future__ import annotations

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


async def test_a_batch_larger_than_a_packet_is_sent_in_several(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """On MariaDB a group commit's new rows go in data packets of bounded size.

    With the bound lowered to a few kilobytes, one batch of 30 orders of 5 attendees
    takes many packets in one transaction; everything is stored once and the counters
    match the rows. (SQLite sends statements one by one and has no packets.)
    """
    from actors.event_actor import EventActor
    from reservation.domain.commands import Attendee, Code, Confirm, Hold, NewOrder
    from reservation.domain.ids import booking_id_for, order_id_for_key
    from reservation.store import link

    monkeypatch.setattr(link, "LOAD_PACKET_BYTES", 3_000)
    packets: list[int] = []
    write = aiomysql.Connection.write_packet

    def counted(self: aiomysql.Connection, payload: bytes) -> None:
        packets.append(len(payload))
        write(self, payload)

    monkeypatch.setattr(aiomysql.Connection, "write_packet", counted)
    host = await api.register("host")
    customer = await api.register("customer")
    account = customer["X-Account"]
    event = (await api.create_event(host, capacity=500))["id"]
    commands: list[Any] = []
    for n in range(30):
        order_id = order_id_for_key(account, f"split-{n}")
        booking_id = booking_id_for(order_id, event)
        people = tuple(Attendee(f"Guest {n}-{i} " + "x" * 100, f"g{n}.{i}@example.com") for i in range(5))
        commands.append(
            Hold(
                f"hold:{booking_id}",
                booking_id,
                order_id,
                account,
                people,
                600.0,
                NewOrder(order_id, account, f"hash-{n}", f"split-{n}"),
            )
        )
        commands.append(Confirm(f"confirm:{booking_id}", booking_id))
    actor = EventActor(event, api.runtime.settings.store_url)
    reply = await actor.submit(commands)
    await actor.close()
    assert [o.code for o in reply.outcomes] == [Code.OK] * 60
    assert reply.batch_sizes == [60], "not one batch"
    if api.runtime.settings.store_url.startswith("mysql"):
        # 30 x (order of ~150 bytes, booking with 5 attendees of ~150 each): ~10 packets.
        assert packets.count(3_000) >= 8, packets

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
