"""Text that SQL would misread reaches the store unchanged (both stores).

On MariaDB the actor sends each group commit as one multi-statement query with the
values inlined as escaped literals; these names and keys must come back byte for byte
and must not end or add a statement.
"""

from __future__ import annotations

from sqlalchemy import func, select

from reservation.store.schema import attendees, bookings
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
        names = (
            await conn.execute(
                select(attendees.c.name).where(attendees.c.event_id == event).order_by(attendees.c.position)
            )
        ).scalars().all()
        rows = (
            await conn.execute(select(func.count()).select_from(bookings).where(bookings.c.event_id == event))
        ).scalar_one()
    assert names == [n.strip() for n in NAMES]
    assert rows == 1, "the replay booked again"
