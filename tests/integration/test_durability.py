"""A group commit that fails in the real store: nobody is told "booked", nothing half-written stays.

No mocks: a trigger in the database (SQLite and MariaDB) raises an error when an
attendee with a poisoned name is inserted. Attendees are the last rows the event
actor writes in its transaction, after the event's counters, the orders, their
idempotency records and the bookings, so the failure hits a transaction that has
already written rows of every kind, for the poisoned order and for the orders that
share its batch.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reservation.domain.commands import Attendee, attendees_json
from reservation.domain.ids import order_id_for_key
from reservation.store.schema import attendees_from_json, bookings, events, idempotency_keys, orders
from tests.conftest import Api, auth
from tests.integration.checks import assert_counters_match_rows, store_rows

BURST = 40


@asynccontextmanager
async def failing_attendee(engine: AsyncEngine, poison: str) -> AsyncIterator[None]:
    """Make every insert of a booking with an attendee named ``poison`` fail, until the block exits."""
    name = "fail_" + secrets.token_hex(6)
    stored = attendees_json([Attendee(poison)])[1:-1]  # the attendee as its booking row holds it
    if engine.dialect.name == "sqlite":
        ddl = (
            f"CREATE TRIGGER {name} BEFORE INSERT ON bookings WHEN instr(NEW.attendees, '{stored}') > 0 "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    else:
        ddl = (
            f"CREATE TRIGGER {name} BEFORE INSERT ON bookings FOR EACH ROW BEGIN "
            f"IF instr(NEW.attendees, '{stored}') > 0 THEN "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure'; END IF; END"
        )
    async with engine.begin() as conn:
        await conn.exec_driver_sql(ddl)  # as written: its JSON is not bind parameters
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))


async def order(api: Api, who: dict[str, str], event_id: str, names: list[str], key: str) -> httpx.Response:
    body = {"items": [{"event_id": event_id, "attendees": [{"name": n} for n in names]}]}
    return await api.client.post("/api/orders", json=body, headers={**auth(who), "Idempotency-Key": key})


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["type"] == "/problems/store-unavailable"


async def traces(api: Api, account_id: str, key: str) -> dict[str, int]:
    """How many rows of each kind the store holds for the order of (account, key)."""
    order_id = order_id_for_key(account_id, key)
    counts: dict[str, int] = {}
    async with api.runtime.reader.connect() as conn:
        people = (await conn.execute(select(bookings.c.attendees).where(bookings.c.order_id == order_id))).scalars()
        counts["attendees"] = sum(len(attendees_from_json(p)) for p in people)
        for label, table, where in (
            ("orders", orders, orders.c.id == order_id),
            ("bookings", bookings, bookings.c.order_id == order_id),
            (
                "idempotency_keys",
                idempotency_keys,
                (idempotency_keys.c.account_id == account_id) & (idempotency_keys.c.idem_key == key),
            ),
        ):
            counts[label] = (await conn.execute(select(func.count()).select_from(table).where(where))).scalar_one()
    return counts


NO_TRACES = {"attendees": 0, "orders": 0, "bookings": 0, "idempotency_keys": 0}


async def check_store(api: Api, event_id: str, booked: dict[str, httpx.Response]) -> dict[str, Any]:
    """Invariants 1 to 3 for the event; returns the state of its (possibly rebuilt) actor."""
    # Asked first: after a failed commit the actor rebuilds (claims anew) on its next call.
    state = await api.runtime.gateway.state(event_id)
    snapshot = await store_rows(api, event_id)
    event, people = snapshot["event"], snapshot["attendees"]
    rows = {r.id: r for r in snapshot["bookings"]}
    for key, r in booked.items():
        (item,) = r.json()["items"]
        row = rows.get(item["id"])
        assert row is not None, f"order {key} answered 201 but its booking is not in the store"
        assert (row.order_id, row.status, row.quantity) == (r.json()["id"], "confirmed", item["quantity"])
        assert people.get(row.id) == row.quantity
    assert len(rows) == len(booked), "the store holds bookings nobody was told about"
    assert_counters_match_rows(snapshot)
    assert (state["sold"], state["held"], state["epoch"]) == (event.sold, event.held, event.epoch)
    return state


async def test_failed_commit_answers_no_one_and_leaves_nothing(api: Api) -> None:
    host = await api.register("host")
    customers = [await api.register("customer") for _ in range(3)]
    event_id = (await api.create_event(host, capacity=500))["id"]
    booked: dict[str, httpx.Response] = {}
    warm = await order(api, customers[0], event_id, ["Early Bird"], "warm-up")
    assert warm.status_code == 201, warm.text
    booked["warm-up"] = warm
    before = await check_store(api, event_id, booked)

    poison = "commit-fails-" + secrets.token_hex(4)
    bad = BURST // 2
    keys = [f"burst-{i}" for i in range(BURST)]
    who = {k: customers[i % len(customers)] for i, k in enumerate(keys)}
    names = {k: [f"Guest {i}-{n}" for n in range(1 + i % 2)] for i, k in enumerate(keys)}
    names[keys[bad]] = ["Guest before the poison", poison]
    async with failing_attendee(api.runtime.writer, poison):
        answers = dict(
            zip(
                keys,
                await asyncio.gather(*(order(api, who[k], event_id, names[k], k) for k in keys)),
                strict=True,
            )
        )
        # The poisoned order, and every order whose batch it failed, is answered 503: not booked.
        assert_unavailable(answers[keys[bad]])
        failed = [k for k, r in answers.items() if r.status_code != 201]
        for k in failed:
            assert_unavailable(answers[k])
            assert await traces(api, who[k]["X-Account"], k) == NO_TRACES, f"{k} left rows behind"
        # The poison sat in a batch with other orders: they failed with it and left no rows either.
        assert len(failed) > 1, failed
        booked.update((k, r) for k, r in answers.items() if r.status_code == 201)
        # The actor threw its memory away and rebuilt it from the store (a new claim, a new epoch).
        after_failure = await check_store(api, event_id, booked)
        assert after_failure["epoch"] > before["epoch"]

        # The poisoned order fails again on retry, still leaving nothing; the others go through.
        assert_unavailable(await order(api, who[keys[bad]], event_id, names[keys[bad]], keys[bad]))
        assert await traces(api, who[keys[bad]]["X-Account"], keys[bad]) == NO_TRACES
        retried = [k for k in failed if k != keys[bad]]
        again = await asyncio.gather(*(order(api, who[k], event_id, names[k], k) for k in retried))
        for k, r in zip(retried, again, strict=True):
            assert r.status_code == 201, r.text
            assert r.json()["id"] == order_id_for_key(who[k]["X-Account"], k)
            booked[k] = r
        fresh = await order(api, customers[1], event_id, ["Late Comer", "Plus One"], "after-failure")
        assert fresh.status_code == 201, fresh.text
        booked["after-failure"] = fresh
        await check_store(api, event_id, booked)
        async with api.runtime.reader.connect() as conn:
            people = (await conn.execute(select(bookings.c.attendees))).scalars().all()
            assert not any(a["name"] == poison for p in people for a in attendees_from_json(p))

    # Once the store accepts it, the same key books the poisoned order exactly once.
    deadline = time.monotonic() + 10
    while (late := await order(api, who[keys[bad]], event_id, names[keys[bad]], keys[bad])).status_code == 503:
        assert time.monotonic() < deadline, late.text
        await asyncio.sleep(0.1)
    assert late.status_code == 201, late.text
    booked[keys[bad]] = late
    assert await traces(api, who[keys[bad]]["X-Account"], keys[bad]) == {
        "attendees": 2,
        "orders": 1,
        "bookings": 1,
        # A one-event order's row is its key's record (see reservation/store/order_records.py).
        "idempotency_keys": 0,
    }
    state = await check_store(api, event_id, booked)
    assert state["sold"] == sum(len(names.get(k, ())) for k in keys) + 1 + 2


async def test_multi_event_order_retried_after_a_failed_commit_books_once(api: Api) -> None:
    """A 503 on one event of a multi-event order is retryable with the same key."""
    host = await api.register("host")
    customer = await api.register("customer")
    first = await api.create_event(host, capacity=10, title="First")
    second = await api.create_event(host, capacity=10, title="Second")
    poison = "commit-fails-" + secrets.token_hex(4)
    body = {
        "items": [
            {"event_id": first["id"], "attendees": [{"name": "Ann"}]},
            {"event_id": second["id"], "attendees": [{"name": poison}]},
        ]
    }
    headers = {**auth(customer), "Idempotency-Key": "multi-" + secrets.token_hex(4)}
    async with failing_attendee(api.runtime.writer, poison):
        failed = await api.client.post("/api/orders", json=body, headers=headers)
        assert_unavailable(failed)
    # The failed attempt gave its seats back and left the key open for a retry.
    for event in (first, second):
        state = await api.runtime.gateway.state(event["id"])
        assert state["held"] == 0 and state["sold"] == 0, state
    retried = await api.client.post("/api/orders", json=body, headers=headers)
    assert retried.status_code == 201, retried.text
    placed = retried.json()
    assert placed["status"] == "confirmed"
    assert sorted(i["event_id"] for i in placed["items"]) == sorted([first["id"], second["id"]])
    replay = await api.client.post("/api/orders", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json() == placed
    async with api.runtime.reader.connect() as conn:
        rows = (
            await conn.execute(
                select(bookings.c.event_id, bookings.c.status).where(bookings.c.order_id == placed["id"])
            )
        ).all()
        both = [first["id"], second["id"]]
        found = await conn.execute(select(events.c.id, events.c.sold).where(events.c.id.in_(both)))
        sold = {event_id: count for event_id, count in found}
    assert sorted(r.status for r in rows) == ["confirmed", "confirmed"]
    assert sold == {first["id"]: 1, second["id"]: 1}
