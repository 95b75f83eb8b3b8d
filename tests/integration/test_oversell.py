"""No oversell under a rush, and all-or-nothing multi-event orders, through HTTP on both stores.

The rush test fires 500 concurrent single-seat orders at an event with 100 seats plus
10 oversell and checks the answers and then the store itself. Its negative control
runs the same rush against a deliberately unserialised actor (check, await the store,
then update: the classic async race) and shows the same store check catches the
oversell, so a pass of the real test means something.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from sqlalchemy import delete

from actors.event_actor import EventActor, Reply
from actors.gateway import actor_name
from reservation.domain.commands import BookingStatus, Code, Command, Confirm, Hold, Outcome
from reservation.domain.ids import order_id_for_key
from reservation.domain.inventory import Booking, Inventory
from reservation.store.db import make_engine
from reservation.store.inventory import InventoryStore, to_dt
from reservation.store.schema import bookings, events, orders
from tests.conftest import Api, auth, open_api
from tests.integration.checks import (
    assert_store_consistent,
    live_bookings_of_order,
    read_event,
    sync_engine,
)
from tests.integration.rush import activate, booking_ids, register_customers, rush, summary

CAPACITY = 100
OVERSELL = 10
LIMIT = CAPACITY + OVERSELL
ACCOUNTS = 50
REQUESTS = 500
SOLD_OUT = "/problems/sold-out"


# ------------------------------------------------------- the oversell rush


async def test_rush_never_sells_past_capacity_plus_oversell(api: Api) -> None:
    url = api.runtime.settings.store_url
    host = await api.register("host")
    buyers = await register_customers(api, ACCOUNTS)
    event = await api.create_event(host, capacity=CAPACITY, oversell_capacity=OVERSELL)
    await activate(api, [event["id"]])

    answers = await rush(api, [event["id"]], buyers, REQUESTS, "rush")

    created = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code != 201]
    assert len(created) == LIMIT, summary(answers)
    assert summary(refused) == {(409, SOLD_OUT): REQUESTS - LIMIT}, summary(refused)
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in refused)
    assert all(r.json()["event_id"] == event["id"] for r in refused)
    assert all(r.json()["status"] == "confirmed" for r in created)
    ids = booking_ids(created, event["id"])
    assert len(set(ids)) == LIMIT

    snap = assert_store_consistent(url, event["id"], expected_sold=LIMIT, expected_held=0, confirmed_ids=ids)
    assert snap.confirmed_rows == LIMIT
    assert snap.held_rows == 0
    # The actor's memory agrees with its store.
    state = await api.runtime.gateway.state(event["id"])
    assert (state["sold"], state["held"]) == (LIMIT, 0), state


# ------------------------------------------- negative control: no serialisation


class UnserialisedEventActor(EventActor):
    """DELIBERATELY UNSAFE: the event actor as a naive ``async`` implementation would be.

    No queue and no group commit. Each request's commands run as their own task, which
    is how concurrent calls (from several front ends) interleave inside an async actor;
    and each command checks availability in memory, AWAITS its own store transaction,
    and only then updates the counters. While one request waits for its write, the
    others pass the same check against the same stale numbers: check-then-await-then-act.
    The writes are increments, so the store's counters still equal its booking rows
    and the only thing broken is the seat limit.
    """

    async def submit(self, commands: list[Command]) -> Reply:
        if self._claim is None:
            self._store = InventoryStore(self._database_url, self.event_id)
            self._engine = make_engine(self._database_url, pool_size=1)
            self._claim = await self._store.claim()
        inv = self._claim.inventory
        requests: dict[str, list[int]] = {}
        for index, command in enumerate(commands):
            requests.setdefault(getattr(command, "booking_id", f"#{index}"), []).append(index)
        outcomes: dict[int, Outcome] = {}

        async def run(indexes: list[int]) -> None:
            for index in indexes:  # a request's own commands stay in order (hold, then confirm)
                outcomes[index] = await self._apply_unserialised(inv, commands[index])

        await asyncio.gather(*(run(indexes) for indexes in requests.values()))
        return Reply([outcomes[i] for i in range(len(commands))])

    async def _apply_unserialised(self, inv: Inventory, command: Command) -> Outcome:
        if isinstance(command, Hold):
            held = await self._hold(inv, command)
            if command.confirm and held.ok:  # the one-event order: hold, then confirm
                return await self._confirm(inv, Confirm(f"confirm:{command.booking_id}", command.booking_id))
            return held
        if isinstance(command, Confirm):
            return await self._confirm(inv, command)
        return Outcome(Code.INVALID, detail="not supported by this test double")

    async def _hold(self, inv: Inventory, cmd: Hold) -> Outcome:
        assert self._store is not None
        # Check ...
        if cmd.quantity > inv.available:
            return Outcome(Code.SOLD_OUT, detail=f"{inv.available} available")
        now = time.time()
        booking = Booking(
            booking_id=cmd.booking_id,
            order_id=cmd.order_id,
            account_id=cmd.account_id,
            quantity=cmd.quantity,
            unit_price_minor=inv.price_minor,
            status=BookingStatus.HELD,
            created_at=now,
            expires_at=now + cmd.ttl_s,
            attendees=cmd.attendees,
        )
        # ... await the store (every other request's check runs meanwhile) ...
        ts = to_dt(now)
        async with self._engine.begin() as conn:
            if cmd.new_order is not None:
                await conn.execute(
                    orders.insert(),
                    {
                        "id": cmd.order_id,
                        "account_id": cmd.account_id,
                        "status": "pending",
                        "request_hash": cmd.new_order.request_hash,
                        "idempotency_key": cmd.new_order.idempotency_key,
                        "total_minor": booking.quantity * booking.unit_price_minor,
                        "currency": inv.currency,
                        "created_at": ts,
                        "updated_at": ts,
                    },
                )
            await conn.execute(
                bookings.insert(),
                {
                    "id": booking.booking_id,
                    "order_id": booking.order_id,
                    "event_id": self.event_id,
                    "account_id": booking.account_id,
                    "quantity": booking.quantity,
                    "unit_price_minor": booking.unit_price_minor,
                    "currency": inv.currency,
                    "status": booking.status.value,
                    "expires_at": to_dt(now + cmd.ttl_s),
                    "created_at": ts,
                    "updated_at": ts,
                    "attendees": booking.attendees,
                },
            )
            await conn.execute(
                events.update()
                .where(events.c.id == self.event_id)
                .values(held=events.c.held + booking.quantity)
            )
        # ... then act.
        inv.bookings[booking.booking_id] = booking
        inv.held += booking.quantity
        return Outcome(Code.OK, inv.view(booking))

    async def _confirm(self, inv: Inventory, cmd: Confirm) -> Outcome:
        assert self._store is not None
        booking = inv.bookings.get(cmd.booking_id)
        if booking is None or booking.status is not BookingStatus.HELD:
            return Outcome(Code.NOT_FOUND, detail="no such hold")
        ts = to_dt(time.time())
        async with self._engine.begin() as conn:
            await conn.execute(
                bookings.update()
                .where(bookings.c.id == booking.booking_id)
                .values(status=BookingStatus.CONFIRMED.value, expires_at=None, updated_at=ts)
            )
            await conn.execute(
                orders.update()
                .where(orders.c.id == booking.order_id)
                .values(status="confirmed", updated_at=ts)
            )
            await conn.execute(
                events.update()
                .where(events.c.id == self.event_id)
                .values(sold=events.c.sold + booking.quantity, held=events.c.held - booking.quantity)
            )
        booking.status, booking.expires_at = BookingStatus.CONFIRMED, None
        inv.held -= booking.quantity
        inv.sold += booking.quantity
        return Outcome(Code.OK, inv.view(booking))


async def test_negative_control_unserialised_actor_oversells(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    # pytest imports this module under a name Ray's workers cannot import: ship the class by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    unsafe: Any = ray.remote(UnserialisedEventActor)
    # Generous call timeout: the unsafe actor commits every command on its own.
    async with open_api(sqlite_url, tmp_path, actor_class=unsafe, actor_call_timeout_s=60) as api:
        host = await api.register("host")
        buyers = await register_customers(api, ACCOUNTS)
        event = await api.create_event(host, capacity=CAPACITY, oversell_capacity=OVERSELL)
        try:
            answers = await rush(api, [event["id"]], buyers, REQUESTS, "unsafe")
        finally:
            # Detached and without the idle loop that stops a real actor: stop it here.
            try:
                handle = ray.get_actor(actor_name(event["id"]), namespace=api.runtime.settings.ray_namespace)
                ray.kill(handle, no_restart=True)
            except ValueError:
                pass

    created = sum(r.status_code == 201 for r in answers)
    snap = read_event(sqlite_url, event["id"])
    # The race is real: more seats were answered and stored as sold than exist ...
    assert created > LIMIT, summary(answers)
    assert snap.sold > snap.limit, snap
    assert snap.sold == snap.confirmed_quantity == created, snap
    # ... and the check the real test relies on reports exactly that.
    with pytest.raises(AssertionError, match=r"^oversold"):
        assert_store_consistent(sqlite_url, event["id"])


# ------------------------------------------------ multi-event all or nothing


async def test_multi_event_order_is_all_or_nothing(api: Api) -> None:
    url = api.runtime.settings.store_url
    host = await api.register("host")
    other, buyer = await register_customers(api, 2)
    first = (await api.create_event(host, capacity=10, title="First"))["id"]
    second = (await api.create_event(host, capacity=10, title="Second"))["id"]
    third = (await api.create_event(host, capacity=1, title="Third"))["id"]
    # Someone else already has seats on every event; the third is now sold out.
    before = {first: 2, second: 1, third: 1}
    booked = await asyncio.gather(*(api.book(other, [e], attendees=n) for e, n in before.items()))
    assert [b.status_code for b in booked] == [201] * 3, [b.text for b in booked]

    key = "three-events"
    r = await api.book(buyer, [first, second, third], attendees=2, key=key)

    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == SOLD_OUT, problem
    assert problem["event_id"] == third, problem
    order_id = order_id_for_key(buyer["X-Account"], key)
    assert live_bookings_of_order(url, order_id) == []
    for event_id, seats in before.items():
        assert_store_consistent(url, event_id, expected_sold=seats, expected_held=0)
    gone = await api.client.get(f"/api/orders/{order_id}", headers=auth(buyer))
    assert gone.status_code == 404, gone.text


async def test_concurrent_multi_event_orders_leak_nothing(api: Api) -> None:
    url = api.runtime.settings.store_url
    host = await api.register("host")
    buyers = await register_customers(api, 5)
    roomy = (await api.create_event(host, capacity=50, title="Roomy"))["id"]
    scarce = (await api.create_event(host, capacity=5, title="Scarce"))["id"]
    await activate(api, [roomy, scarce])

    answers = await rush(api, [roomy, scarce], buyers, 20, "pair")

    created = [r for r in answers if r.status_code == 201]
    assert len(created) == 5, summary(answers)
    refused = [(n, r) for n, r in enumerate(answers) if r.status_code != 201]
    assert summary([r for _, r in refused]) == {(409, SOLD_OUT): 15}, summary(answers)
    assert all(r.json()["event_id"] == scarce for _, r in refused)
    assert all(r.json()["status"] == "confirmed" for r in created)
    assert_store_consistent(
        url, roomy, expected_sold=5, expected_held=0, confirmed_ids=booking_ids(created, roomy)
    )
    assert_store_consistent(
        url, scarce, expected_sold=5, expected_held=0, confirmed_ids=booking_ids(created, scarce)
    )
    for n, _ in refused:
        order_id = order_id_for_key(buyers[n % len(buyers)]["X-Account"], f"pair-{n}")
        assert live_bookings_of_order(url, order_id) == [], n


async def test_store_check_reports_rows_whose_parent_is_missing(api: Api) -> None:
    """The booking rows carry no foreign keys; the store check finds an orphan instead."""
    url = api.runtime.settings.store_url
    host = await api.register("host")
    (buyer,) = await register_customers(api, 1)
    event = (await api.create_event(host, capacity=5))["id"]
    booked = await api.book(buyer, [event], attendees=2)
    assert booked.status_code == 201, booked.text
    assert_store_consistent(url, event, expected_sold=2, expected_held=0)

    with sync_engine(url) as engine, engine.begin() as conn:
        conn.execute(delete(orders).where(orders.c.id == booked.json()["id"]))
    with pytest.raises(AssertionError, match=r"^orphans.*bookings without their order"):
        assert_store_consistent(url, event)
