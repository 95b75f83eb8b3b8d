"""An event actor's process killed hard under load, and the epoch fence between incarnations.

Both stores. The crash test streams keyed bookings at one event from several tasks,
kills the actor's process with SIGKILL in the middle, lets Ray restart it, and then
checks invariants 1 to 4 against the store and the restarted actor's memory; it runs
with the commands on the actors' own channel (the default) and as Ray calls. The
fencing tests show that an incarnation whose epoch was superseded can write nothing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from actors.event_actor import EventActor
from reservation.domain.commands import Attendee, BookingStatus, Code, Confirm, Hold, NewOrder, one_event_order
from reservation.domain.ids import new_id, order_id_for_key
from reservation.store import inventory
from reservation.store.inventory import BatchTransaction, Fenced, InventoryStore, Part
from reservation.store.schema import bookings, events, idempotency_keys, orders
from tests.conftest import Api, open_api
from tests.integration.checks import assert_counters_match_rows, store_rows

TOTAL = 300  # keyed booking requests in the stream
TASKS = 6  # concurrent clients, one account each
KILL_AFTER = 90  # answered bookings before the actor's process is killed
CAPACITY = 2000  # more than TOTAL * 3 attendees: every request can be booked
DEADLINE_S = 60.0  # a request not settled by then fails the test


@dataclass
class Stream:
    """What the clients saw: final answers by key, and how the crash met the stream."""

    answers: dict[str, httpx.Response] = field(default_factory=dict)
    quantity: dict[str, int] = field(default_factory=dict)
    account: dict[str, str] = field(default_factory=dict)
    started: int = 0
    answered: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    retries: Counter[str] = field(default_factory=Counter)


async def book_until_final(
    api: Api, who: dict[str, str], event_id: str, key: str, n: int, retries: Counter[str]
) -> httpx.Response:
    """Send one keyed booking, retrying with the SAME key on 503, in-flight and transport errors."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert time.monotonic() < deadline, f"request {key} did not settle within {DEADLINE_S} s"
        try:
            r = await api.book(who, [event_id], attendees=n, key=key)
        except httpx.TransportError:
            retries["transport"] += 1
            await asyncio.sleep(0.05)
            continue
        if r.status_code == 503:
            assert r.headers.get("retry-after"), r.headers
            assert r.headers["content-type"].startswith("application/problem+json")
            retries["503"] += 1
            await asyncio.sleep(0.05)
            continue
        if r.status_code == 409 and r.json()["type"] == "/problems/in-flight":
            retries["in-flight"] += 1
            await asyncio.sleep(0.05)
            continue
        assert r.status_code in (201, 409), r.text
        return r


async def client(api: Api, who: dict[str, str], event_id: str, keys: list[str], s: Stream) -> None:
    for key in keys:
        s.started += 1
        r = await book_until_final(api, who, event_id, key, s.quantity[key], s.retries)
        s.answers[key] = r
        s.answered += 1
        if s.answered >= KILL_AFTER:
            s.enough.set()


@pytest.fixture(params=["direct", "ray"])
async def api_by_transport(
    request: pytest.FixtureRequest, store_url: str, ray_session: None, tmp_path: Path
) -> AsyncIterator[Api]:
    async with open_api(store_url, tmp_path, actor_transport=request.param) as value:
        yield value


async def test_actor_process_killed_mid_stream(api_by_transport: Api) -> None:
    api = api_by_transport
    host = await api.register("host")
    event_id = (await api.create_event(host, capacity=CAPACITY))["id"]
    customers = [await api.register("customer") for _ in range(TASKS)]
    gateway = api.runtime.gateway
    before = await gateway.state(event_id)  # activates the actor
    assert before["loaded"] and before["sold"] == 0

    s = Stream()
    keys = [f"crash-{i}-{secrets.token_hex(4)}" for i in range(TOTAL)]
    for i, key in enumerate(keys):
        s.quantity[key] = 1 + i % 3
        s.account[key] = customers[i % TASKS]["X-Account"]
    tasks = [asyncio.create_task(client(api, customers[t], event_id, keys[t::TASKS], s)) for t in range(TASKS)]
    waiter = asyncio.create_task(s.enough.wait())
    try:
        await asyncio.wait([waiter, *tasks], timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done():
                t.result()  # a client failed before the kill: show why
        assert s.enough.is_set(), f"only {s.answered} bookings answered in {DEADLINE_S} s"
        in_flight = s.started - s.answered
        answered_at_kill = s.answered
        os.kill(before["pid"], signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S * 2)
    finally:
        for t in (waiter, *tasks):
            t.cancel()

    # The kill hit the middle of the stream: requests were waiting and most were still to come.
    assert in_flight > 0 and answered_at_kill < TOTAL // 2, (in_flight, answered_at_kill)
    after = await gateway.state(event_id)
    assert after["pid"] != before["pid"], "the actor's process was not replaced"
    assert after["epoch"] > before["epoch"], "the restarted actor did not claim a new epoch"

    # Every request got a final answer, and capacity sufficed for all of them: all booked.
    assert len(s.answers) == TOTAL, s.retries
    assert {k: r.status_code for k, r in s.answers.items() if r.status_code != 201} == {}
    confirmed: dict[str, dict[str, Any]] = {}
    for key, r in s.answers.items():
        order = r.json()
        assert order["id"] == order_id_for_key(s.account[key], key)
        assert order["status"] == "confirmed"
        (item,) = order["items"]
        assert item["quantity"] == s.quantity[key]
        confirmed[order["id"]] = item
    assert len(confirmed) == TOTAL

    snapshot = await store_rows(api, event_id)
    rows = snapshot["bookings"]
    by_id = {r.id: r for r in rows}
    # Invariant 2: every booking answered 201 is in the store, confirmed, with its attendees.
    for order_id, item in confirmed.items():
        row = by_id.get(item["id"])
        assert row is not None, f"booking {item['id']} answered 201 but missing from the store"
        assert row.order_id == order_id
        assert row.status == BookingStatus.CONFIRMED.value
        assert row.quantity == item["quantity"]
        assert snapshot["attendees"].get(row.id) == row.quantity
    # Invariant 4: no order booked twice, and nothing booked that nobody was told about.
    per_order = Counter(r.order_id for r in rows)
    assert max(per_order.values()) == 1, per_order.most_common(3)
    assert len(rows) == len(confirmed)
    assert sum(1 for r in rows if r.status == BookingStatus.CONFIRMED.value) == len(confirmed)
    async with api.runtime.reader.connect() as conn:
        order_rows = {
            row.id: (row.status, row.idempotency_key)
            for row in await conn.execute(
                select(orders.c.id, orders.c.status, orders.c.idempotency_key).where(orders.c.id.in_(confirmed))
            )
        }
    # Each order row carries its key: it is the key's record (its id derives from it).
    assert order_rows == {order_id_for_key(s.account[k], k): ("confirmed", k) for k in keys}
    # Invariants 1 and 3 in the store, and the restarted actor's memory agrees with it.
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == sum(s.quantity.values())
    assert (after["sold"], after["held"]) == (snapshot["event"].sold, snapshot["event"].held)
    assert after["epoch"] == snapshot["event"].epoch, "another incarnation claimed the event"

    # Retries after the restart replay the first answer and book nothing more.
    sample = keys[:: TOTAL // 20]
    replays = await asyncio.gather(
        *(api.book(customers[keys.index(k) % TASKS], [event_id], attendees=s.quantity[k], key=k) for k in sample)
    )
    for key, r in zip(sample, replays, strict=True):
        assert r.status_code == 201, r.text
        assert r.json()["id"] == s.answers[key].json()["id"]
    again = await store_rows(api, event_id)
    assert len(again["bookings"]) == len(rows)
    assert again["event"].sold == snapshot["event"].sold
    state = await gateway.state(event_id)
    assert (state["sold"], state["held"]) == (again["event"].sold, again["event"].held)


def _order_hold(account_id: str, event_id: str, order_id: str, n: int, key: str | None, confirm: bool = False) -> Hold:
    """The hold of a new one-event order of ``n`` attendees, as a front end builds it
    (``one_event_order``); without ``confirm``, held only, to be confirmed apart."""
    people = tuple(Attendee(f"Guest {i}") for i in range(n))
    hold = one_event_order(order_id, account_id, event_id, people, 600.0, f"hash-{key or order_id}", key)
    return replace(hold, confirm=confirm)


def _hold_and_confirm(account_id: str, event_id: str, key: str, n: int) -> tuple[Hold, Confirm, str]:
    order_id = order_id_for_key(account_id, key)
    hold = _order_hold(account_id, event_id, order_id, n, key)
    return hold, Confirm(f"confirm:{hold.booking_id}", hold.booking_id), order_id


async def test_superseded_epoch_cannot_write(api: Api) -> None:
    """A second claim (what a new incarnation does) fences the first: its writes are refused."""
    host = await api.register("host")
    customer = await api.register("customer")
    event_id = (await api.create_event(host, capacity=10))["id"]
    url = api.runtime.settings.store_url
    first = await InventoryStore(url, event_id).claim()
    second = await InventoryStore(url, event_id).claim()
    assert second.epoch > first.epoch

    hold, confirm, order_id = _hold_and_confirm(customer["X-Account"], event_id, "stale", 2)
    now = time.time()
    assert [first.inventory.apply(c, now).code for c in (hold, confirm)] == [Code.OK, Code.OK]
    effects = first.inventory.take_effects()
    assert not effects.empty
    stale = await InventoryStore(url, event_id).begin(first.epoch)
    with pytest.raises(Fenced):
        await stale.write(first.inventory, effects, now)
    await stale.rollback()

    async with api.runtime.reader.connect() as conn:
        event = (
            await conn.execute(
                select(events.c.sold, events.c.held, events.c.epoch, events.c.version).where(events.c.id == event_id)
            )
        ).one()
        written = [
            (await conn.execute(select(func.count()).select_from(t).where(where))).scalar_one()
            for t, where in (
                (orders, orders.c.id == order_id),
                (bookings, bookings.c.event_id == event_id),
                (idempotency_keys, idempotency_keys.c.order_id == order_id),
            )
        ]
    assert (event.sold, event.held, event.epoch, event.version) == (0, 0, second.epoch, 0)
    assert written == [0, 0, 0], "the fenced incarnation wrote rows"

    # The same batch under the current epoch is accepted: the refusal was the fence, nothing else.
    assert [second.inventory.apply(c, now).code for c in (hold, confirm)] == [Code.OK, Code.OK]
    store = InventoryStore(url, event_id)
    current = await store.begin(second.epoch)
    await current.write(second.inventory, second.inventory.take_effects(), now)
    await current.commit()
    await store.close()
    snapshot = await store_rows(api, event_id)
    assert [(r.order_id, r.status) for r in snapshot["bookings"]] == [(order_id, "confirmed")]
    assert (snapshot["event"].sold, snapshot["event"].held) == (2, 0)
    assert_counters_match_rows(snapshot)


async def test_live_actor_fenced_by_a_newer_claim(api: Api) -> None:
    """A running actor whose event was claimed again writes nothing and gives way to a new incarnation.

    Its fenced batch either answers 503 (the caller retries with the same key) or, when the
    actor stops itself before its answer leaves, the gateway resends the batch to the
    successor. Either way the booking is written once, by an incarnation newer than the claim.
    """
    host = await api.register("host")
    customer = await api.register("customer")
    event_id = (await api.create_event(host, capacity=10))["id"]
    first = await api.book(customer, [event_id], attendees=1, key="before")
    assert first.status_code == 201, first.text
    old = await api.runtime.gateway.state(event_id)
    newer = await InventoryStore(api.runtime.settings.store_url, event_id).claim()
    assert newer.epoch > old["epoch"]

    order_id = order_id_for_key(customer["X-Account"], "after")
    deadline = time.monotonic() + 30
    while (again := await api.book(customer, [event_id], attendees=2, key="after")).status_code == 503:
        assert again.headers["retry-after"]
        assert again.headers["content-type"].startswith("application/problem+json")
        snapshot = await store_rows(api, event_id)
        assert [r.order_id for r in snapshot["bookings"]] == [first.json()["id"]], "a fenced batch wrote"
        assert_counters_match_rows(snapshot)
        assert time.monotonic() < deadline, again.text
        await asyncio.sleep(0.1)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == order_id
    state = await api.runtime.gateway.state(event_id)
    assert state["pid"] != old["pid"], "the fenced incarnation kept serving the event"
    assert state["epoch"] > newer.epoch
    snapshot = await store_rows(api, event_id)
    assert snapshot["event"].epoch == state["epoch"]
    assert sorted(r.order_id for r in snapshot["bookings"]) == sorted([first.json()["id"], order_id])
    assert_counters_match_rows(snapshot)
    assert (state["sold"], state["held"]) == (snapshot["event"].sold, 0) == (3, 0)


async def _customer_and_event(api: Api, capacity: int) -> tuple[str, str, str]:
    """A customer's account id, a new event of a new host, and the store's URL."""
    host = await api.register("host")
    customer = await api.register("customer")
    event_id = (await api.create_event(host, capacity=capacity))["id"]
    return customer["X-Account"], event_id, api.runtime.settings.store_url


@pytest.mark.parametrize("new_rows", ["as inserts", "as loads"])
async def test_replays_unknown_to_a_new_incarnation_are_recognised(
    api: Api, new_rows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new incarnation writes new keyed orders without reading first; old keys still replay.

    The first incarnation books two keyed orders. A fresh actor (empty memory, as after a
    restart) then gets, in one batch, a replay of the first, the second's key with another
    body, and a new order: the replay's optimistic insert fails on the unique id key, the
    batch runs again with the lookup, and every command is answered as it should be, once.
    """
    if new_rows == "as loads":  # on MariaDB: a batch's new rows go as loads however few
        monkeypatch.setattr(inventory, "LOAD_MIN_ROWS", 1)
    account, event_id, url = await _customer_and_event(api, capacity=10)
    first = EventActor(event_id, url)
    hold_a, confirm_a, order_a = _hold_and_confirm(account, event_id, "a", 2)
    hold_b, confirm_b, _ = _hold_and_confirm(account, event_id, "b", 1)
    answers = (await first.submit([hold_a, confirm_a, hold_b, confirm_b])).outcomes
    assert [o.code for o in answers] == [Code.OK] * 4

    second = EventActor(event_id, url)
    changed_b = replace(hold_b, new_order=NewOrder(hold_b.order_id, account, "other-body", "b"))
    hold_c, confirm_c, order_c = _hold_and_confirm(account, event_id, "c", 3)
    reply = await second.submit([hold_a, confirm_a, changed_b, hold_c, confirm_c])
    replay_a, confirm_again, mismatch, held_c, confirmed_c = reply.outcomes
    assert replay_a.ok and replay_a.replayed and replay_a.booking is not None
    assert replay_a.booking.booking_id == hold_a.booking_id
    assert confirm_again.ok
    assert mismatch.code is Code.IDEMPOTENCY_MISMATCH
    assert held_c.ok and not held_c.replayed and confirmed_c.ok
    state = await second.state()
    assert (state["sold"], state["held"]) == (6, 0)
    assert state["epoch"] > (await first.state())["epoch"]

    snapshot = await store_rows(api, event_id)
    assert sorted((r.order_id, r.quantity, r.status) for r in snapshot["bookings"]) == sorted(
        [(order_a, 2, "confirmed"), (hold_b.order_id, 1, "confirmed"), (order_c, 3, "confirmed")]
    )
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == 6
    await first.close()
    await second.close()


@pytest.mark.parametrize("new_rows", ["as inserts", "as loads"])
async def test_an_unkeyed_order_sent_again_to_a_new_incarnation_books_once(
    api: Api, new_rows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order without an Idempotency-Key, committed by an actor that died before it
    answered, is sent again by the front end, with the same ids, to the actor's next
    incarnation. Its insert meets its own first attempt's row; the batch runs again with
    the lookup and the order is answered as booked, once. A new order in the same batch
    is booked too (a failed batch would have refused it with the other)."""
    if new_rows == "as loads":  # on MariaDB: a batch's new rows go as loads however few
        monkeypatch.setattr(inventory, "LOAD_MIN_ROWS", 1)
    account, event_id, url = await _customer_and_event(api, capacity=10)

    first = EventActor(event_id, url)
    lost, fresh = (_order_hold(account, event_id, new_id(), n, None, confirm=True) for n in (2, 3))
    (answer,) = (await first.submit([lost])).outcomes
    assert answer.ok  # committed; say the answer never reached the front end

    second = EventActor(event_id, url)
    again, new = (await second.submit([lost, fresh])).outcomes
    assert again.ok and again.replayed, again
    assert again.booking is not None and again.booking.booking_id == lost.booking_id
    assert new.ok and not new.replayed, new
    assert ((await second.state())["sold"], (await second.state())["held"]) == (5, 0)

    snapshot = await store_rows(api, event_id)
    assert sorted((r.order_id, r.quantity, r.status) for r in snapshot["bookings"]) == sorted(
        [(lost.order_id, 2, "confirmed"), (fresh.order_id, 3, "confirmed")]
    )
    assert_counters_match_rows(snapshot)
    await first.close()
    await second.close()


class EagerEventActor(EventActor):
    """DELIBERATELY UNSAFE: commits a batch without waiting to see the one before commit."""

    async def _landed(self, previous: object) -> bool:
        return True


async def _launched(actor: EventActor, commands: list[Any]) -> asyncio.Task[Any]:
    """Submit ``commands`` alone; return the call's task once the actor has launched
    their batch (applied it and started sending it)."""
    before = actor.launched
    call = asyncio.create_task(actor.submit(commands))
    while actor.launched <= before:
        await asyncio.sleep(0.005)
    return call


async def _batch_on_top_of_a_failing_one(api: Api, actor_class: type[EventActor]) -> tuple[EventActor, list[Any]]:
    """Batch N is held up in the store and then fails; batch N+1 was applied on top of it.

    A first incarnation books a keyed order A. A second one (empty memory) gets A's
    replay as batch N: its optimistic insert of A's order will fail on the unique id key.
    The test locks A's order row from outside, and N's insert waits for that lock to
    find the duplicate, so batch N+1 (two new orders) is certainly applied on top of N
    and sent while N is still in flight. Then the lock goes and N fails.
    """
    host = await api.register("host")
    account = (await api.register("customer"))["X-Account"]
    event_id = (await api.create_event(host, capacity=20))["id"]
    url = api.runtime.settings.store_url
    first = EventActor(event_id, url)
    hold_a, confirm_a, order_a = _hold_and_confirm(account, event_id, "a", 2)
    assert all(o.ok for o in (await first.submit([hold_a, confirm_a])).outcomes)
    await first.close()

    second = actor_class(event_id, url)
    await second.state()  # claims the event first: a claim after the failure must not wait
    outside = api.runtime.writer
    async with outside.connect() as conn:
        await conn.execute(select(orders.c.id).where(orders.c.id == order_a).with_for_update())
        batch_n = await _launched(second, [hold_a, confirm_a])
        hold_c, confirm_c, _ = _hold_and_confirm(account, event_id, "c", 3)
        hold_d, confirm_d, _ = _hold_and_confirm(account, event_id, "d", 1)
        batch_n1 = await _launched(second, [hold_c, confirm_c, hold_d, confirm_d])
        await conn.rollback()  # lets batch N run into its primary-key conflict
    replies = await asyncio.wait_for(asyncio.gather(batch_n, batch_n1), 30)
    return second, [o for r in replies for o in r.outcomes]


async def _loaded_actor(
    api: Api, actor_class: type[EventActor], capacity: int, **options: Any
) -> tuple[str, str, Any]:
    """A customer's account id, a new event of ``capacity`` seats, and an actor of
    ``actor_class`` for it (driven in-process, not under Ray), loaded from the store."""
    account, event_id, url = await _customer_and_event(api, capacity)
    actor = actor_class(event_id, url, **options)
    await actor.state()
    return account, event_id, actor


@pytest.mark.mysql
async def test_batch_applied_on_a_failed_batch_is_rolled_back_and_run_again(mysql_url: str, tmp_path: Path) -> None:
    """Two group commits in flight: the second commits only after the first did.

    Negative control: the same scenario with an actor that commits N+1 without waiting
    for N leaves counters that no longer match the booking rows.
    """
    async with open_api(mysql_url, tmp_path) as api:
        actor, outcomes = await _batch_on_top_of_a_failing_one(api, EventActor)
        state = await actor.state()
        await actor.close()
        replay_a, confirm_a, held_c, confirmed_c, held_d, confirmed_d = outcomes
        assert replay_a.ok and replay_a.replayed and confirm_a.ok
        assert all(o.ok and not o.replayed for o in (held_c, confirmed_c, held_d, confirmed_d))
        assert state["abandoned"] >= 1, "batch N+1 was not in flight on top of batch N"
        snapshot = await store_rows(api, state["event_id"])
        assert_counters_match_rows(snapshot)
        assert snapshot["event"].sold == 2 + 3 + 1 == state["sold"]
        assert sorted(r.quantity for r in snapshot["bookings"]) == [1, 2, 3]

    async with open_api(mysql_url, tmp_path / "eager") as api:
        actor, _ = await _batch_on_top_of_a_failing_one(api, EagerEventActor)
        state = await actor.state()
        await actor.close()
        snapshot = await store_rows(api, state["event_id"])
        with pytest.raises(AssertionError):
            assert_counters_match_rows(snapshot)


async def test_each_batch_is_reported_once_however_many_calls_it_served(api: Api) -> None:
    """Batch figures ride on one reply per batch, so the front ends' histograms count each once."""
    host = await api.register("host")
    account = (await api.register("customer"))["X-Account"]
    event_id = (await api.create_event(host, capacity=10))["id"]
    actor = EventActor(event_id, api.runtime.settings.store_url)
    await actor.state()
    calls = [list(_hold_and_confirm(account, event_id, f"once-{n}", 1)[:2]) for n in range(3)]
    replies = await asyncio.gather(*(actor.submit(c) for c in calls))
    await actor.close()
    assert all(o.ok for r in replies for o in r.outcomes)
    sizes = [size for r in replies for size in r.batch_sizes]
    # Every command is in exactly one batch, and every batch is reported exactly once.
    assert sum(sizes) == 6 and len(sizes) == actor.batches
    assert len([t for r in replies for t in r.commit_seconds]) == len(sizes)


class PipelineCountingActor(EventActor):
    """Counts the batches launched while the one before was still committing."""

    on_top = 0

    async def _launch(self, batch: Any, previous: Any) -> Any:
        self.on_top += previous is not None
        return await super()._launch(batch, previous)


async def test_settled_batches_are_freed_under_steady_load(mysql_url: str, tmp_path: Path) -> None:
    """A batch sent while the one before commits points at it; once settled, it lets go.

    Otherwise, under load that never lets the pipeline drain, each batch (with its
    commands, answers and rows) would keep every earlier one alive.
    """
    import gc

    from actors.event_actor import _Flight

    async with open_api(mysql_url, tmp_path) as api:
        account, event_id, actor = await _loaded_actor(api, PipelineCountingActor, 100_000)

        async def customer(n: int) -> None:
            await asyncio.sleep(n * 0.001)  # a steady stream over a second: commands arrive during commits
            hold, confirm, _ = _hold_and_confirm(account, event_id, f"steady-{n}", 1)
            reply = await actor.submit([hold, confirm])
            assert all(o.ok for o in reply.outcomes)

        await asyncio.gather(*(customer(n) for n in range(1000)))
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if isinstance(o, _Flight))
        state = await actor.state()
        await actor.close()
    assert state["sold"] == 1000
    assert actor.on_top >= 10, "the batches never overlapped: the test shows nothing"
    # The loop still holds the newest batch, and it the one before at most.
    assert alive <= 2, f"{alive} batches still alive of {state['launched']}"


class LateRenderingActor(EventActor):
    """DELIBERATELY UNSAFE: renders a batch's writes only when it is about to send them,
    from the inventory as it is then (a later batch may have been applied to it)."""

    async def _settle(self, flight: Any) -> Any:
        if flight.previous is not None:
            await flight.previous.written.wait()
        if flight.statements is not None:
            flight.statements = flight.tx.statements(flight.inv, flight.effects, time.time())
        return await super()._settle(flight)


async def _counters_each_batch_wrote(mysql_url: str, tmp_path: Path, actor_class: type[EventActor]) -> list[int]:
    """``sold`` as each batch wrote it (read back inside its own transaction), for six
    bookings of 1..6 seats queued at once and taken two per batch."""
    written: list[int] = []
    send = BatchTransaction.send

    async def send_and_look(tx: BatchTransaction, statements: Any, part: Part = Part.ALL) -> None:
        await send(tx, statements, part)
        if part is not Part.NEW_ROWS:
            ((sold,),) = await tx.link.fetch("SELECT sold FROM events WHERE id = %s", (tx.event_id,))
            written.append(int(sold))

    async with open_api(mysql_url, tmp_path) as api:
        account, event_id, actor = await _loaded_actor(api, actor_class, 100, max_batch=2)

        def bookings(prefix: str, seats: range) -> list[Hold]:
            holds = [_hold_and_confirm(account, event_id, f"{prefix}-{n}", n)[0] for n in seats]
            return [replace(h, confirm=True) for h in holds]

        # Two batches in flight open two store connections; after that the first two
        # batches start without waiting for anything, and the second is applied before
        # the first one's task has run at all.
        assert all(o.ok for o in (await actor.submit(bookings("warm", range(1, 5)))).outcomes)
        BatchTransaction.send = send_and_look  # type: ignore[method-assign]
        try:
            reply = await actor.submit(bookings("six", range(1, 7)))
        finally:
            BatchTransaction.send = send  # type: ignore[method-assign]
        state = await actor.state()
        await actor.close()
    assert all(o.ok for o in reply.outcomes)
    assert sorted(reply.batch_sizes) == [2, 2, 2]
    assert state["sold"] == 10 + 21
    return written


@pytest.mark.mysql
async def test_each_batch_writes_the_counters_of_its_own_commands(mysql_url: str, tmp_path: Path) -> None:
    """A batch's counters are those right after its own commands, however soon the next
    batch is applied to the same inventory: if that next batch failed after this one
    committed, the store would otherwise hold counters for rows it does not have.

    Negative control: an actor that renders a batch's writes only when sending them
    writes the next batch's counters with the first one.
    """
    warm = 1 + 2 + 3 + 4
    assert await _counters_each_batch_wrote(mysql_url, tmp_path, EventActor) == [
        warm + 1 + 2,
        warm + 1 + 2 + 3 + 4,
        warm + 21,
    ]
    late = await _counters_each_batch_wrote(mysql_url, tmp_path / "late", LateRenderingActor)
    assert late[0] > warm + 1 + 2, late


async def _rows_in_before_the_lock_goes(
    api: Api, event_id: str, launch: Callable[[], Awaitable[list[asyncio.Task[Any]]]], new: list[Hold]
) -> tuple[int, list[Any]]:
    """Hold the event's row lock from outside while ``launch`` submits batches, the
    first of which waits for it; answer how many of ``new``'s booking rows were in the
    store, uncommitted, before the lock went, and the calls' replies once all settled."""
    from sqlalchemy import text

    async with api.runtime.writer.connect() as lock, api.runtime.writer.connect() as peek:
        await peek.execute(text("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"))
        await lock.execute(select(events.c.id).where(events.c.id == event_id).with_for_update())
        calls = await launch()
        ahead, deadline = 0, time.monotonic() + 2.0
        while ahead < len(new) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            count = select(func.count()).where(bookings.c.id.in_([h.booking_id for h in new]))
            ahead = int((await peek.execute(count)).scalar_one())
            await peek.rollback()
        assert not any(c.done() for c in calls), "a batch went past the lock"
        await lock.rollback()
    replies = await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert all(o.ok for r in replies for o in r.outcomes)
    return ahead, replies


async def _new_rows_in_before_the_lock_goes(
    mysql_url: str, tmp_path: Path, *, behind_a_hold: bool
) -> tuple[int, dict[str, Any]]:
    """A batch with two new bookings waits for the event's row lock, held from outside,
    or, ``behind_a_hold``, is batch N+1 (with the confirmation of N's hold) applied on
    top of batch N (a hold) that waits for it. Answers how many of the new booking rows
    were in the store, uncommitted, before the lock went, and the store's rows after
    every batch settled."""
    async with open_api(mysql_url, tmp_path) as api:
        account, event_id, actor = await _loaded_actor(api, EventActor, 20)
        hold_x, confirm_x, _ = _hold_and_confirm(account, event_id, "x", 2)
        new = [replace(_hold_and_confirm(account, event_id, f"new-{n}", n)[0], confirm=True) for n in (1, 3)]

        async def launch() -> list[asyncio.Task[Any]]:
            if not behind_a_hold:
                return [await _launched(actor, new)]
            return [await _launched(actor, [hold_x]), await _launched(actor, [confirm_x, *new])]

        ahead, replies = await _rows_in_before_the_lock_goes(api, event_id, launch, new)
        assert [r.batch_sizes for r in replies] == ([[1], [3]] if behind_a_hold else [[2]])
        await actor.close()
        return ahead, await store_rows(api, event_id)


@pytest.mark.mysql
async def test_a_batch_inserts_its_rows_while_the_one_before_commits(
    mysql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a batch creates go in while the batch before still waits to commit, so
    MariaDB works on both at once; its counters and its change to a row of the batch
    before still land after that batch.

    Negative control: a store that sends each batch only once the one before has been
    written has none of the rows in before the lock goes.
    """
    ahead, snapshot = await _new_rows_in_before_the_lock_goes(mysql_url, tmp_path, behind_a_hold=True)
    assert ahead == 2
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == 2 + 1 + 3
    assert sorted((r.quantity, r.status) for r in snapshot["bookings"]) == [
        (1, "confirmed"), (2, "confirmed"), (3, "confirmed")
    ]

    send = BatchTransaction.send

    async def in_order(tx: BatchTransaction, statements: Any, part: Part = Part.ALL) -> None:
        if part is not Part.NEW_ROWS:
            await send(tx, statements, Part.ALL)

    monkeypatch.setattr(BatchTransaction, "send", in_order)
    ahead, snapshot = await _new_rows_in_before_the_lock_goes(mysql_url, tmp_path / "in-order", behind_a_hold=True)
    assert ahead == 0
    assert_counters_match_rows(snapshot)


@pytest.mark.mysql
async def test_a_batch_writes_its_new_rows_before_it_takes_the_events_row_lock(
    mysql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's query inserts its new rows before its counters' update, so the event's
    row lock (which the next batch's counters wait for) is not held while they go in.

    Negative control: a store that sends the counters first has none of the rows in
    while it waits for the lock.
    """
    ahead, snapshot = await _new_rows_in_before_the_lock_goes(mysql_url, tmp_path, behind_a_hold=False)
    assert ahead == 2
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == 1 + 3

    send = BatchTransaction.send

    async def counters_first(tx: BatchTransaction, statements: Any, part: Part = Part.ALL) -> None:
        if part is Part.ALL:
            await send(tx, statements, Part.REST)
            await send(tx, statements, Part.NEW_ROWS)
        else:
            await send(tx, statements, part)

    monkeypatch.setattr(BatchTransaction, "send", counters_first)
    ahead, snapshot = await _new_rows_in_before_the_lock_goes(mysql_url, tmp_path / "first", behind_a_hold=False)
    assert ahead == 0
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == 1 + 3


class RotatingActor(EventActor):
    """WASTEFUL: sends each batch on the next store connection in turn, in flight or not."""

    turn = 0

    def _free_slot(self) -> int:
        self.turn = (self.turn + 1) % self._depth
        return self.turn


async def _batches_in_flight(
    mysql_url: str, tmp_path: Path, actor_class: type[EventActor], **options: Any
) -> tuple[int, int, int, dict[str, Any]]:
    """Three one-seat bookings, one after the other; then batch N (a hold) waits for the
    event's row lock, held from outside, while two more batches of a new booking each
    are submitted. Answers the store connections the actor had after the quiet
    bookings and after the three batches, how many of the two new bookings were in
    the store, uncommitted, before the lock went, and the store's rows after all
    settled."""
    async with open_api(mysql_url, tmp_path) as api:
        account, event_id, actor = await _loaded_actor(api, actor_class, 20, **options)
        for n in range(3):
            quiet = replace(_hold_and_confirm(account, event_id, f"quiet-{n}", 1)[0], confirm=True)
            assert (await actor.submit([quiet])).outcomes[0].ok
        assert actor._store is not None
        quiet_links = len(actor._store._links)
        hold_x, confirm_x, _ = _hold_and_confirm(account, event_id, "x", 2)
        new = [replace(_hold_and_confirm(account, event_id, f"new-{n}", n)[0], confirm=True) for n in (1, 3)]

        async def launch() -> list[asyncio.Task[Any]]:
            first = [await _launched(actor, [hold_x]), await _launched(actor, [confirm_x, new[0]])]
            return [*first, asyncio.create_task(actor.submit([new[1]]))]

        ahead, _ = await _rows_in_before_the_lock_goes(api, event_id, launch, new)
        busy_links = len(actor._store._links)  # kept from one batch to the next
        await actor.close()
        return quiet_links, busy_links, ahead, await store_rows(api, event_id)


@pytest.mark.mysql
async def test_three_batches_in_flight_on_connections_opened_as_needed(mysql_url: str, tmp_path: Path) -> None:
    """Up to three batches are in flight, each on a store connection of its own: the
    rows of both batches behind the one waiting go in before it commits. An actor that
    never has two in flight keeps one connection.

    Negative controls: a third batch smaller than ``deep_batch`` (here 500, the
    default) waits for the oldest, and its rows with it; an actor that takes its
    connections in turn opens all three for bookings one at a time.
    """
    quiet, busy, ahead, snapshot = await _batches_in_flight(mysql_url, tmp_path, EventActor, deep_batch=1)
    assert (quiet, busy, ahead) == (1, 3, 2)
    assert_counters_match_rows(snapshot)
    assert snapshot["event"].sold == 3 + 2 + 1 + 3
    assert sorted((r.quantity, r.status) for r in snapshot["bookings"]) == [
        (1, "confirmed"), (1, "confirmed"), (1, "confirmed"), (1, "confirmed"), (2, "confirmed"), (3, "confirmed")
    ]

    quiet, busy, ahead, snapshot = await _batches_in_flight(mysql_url, tmp_path / "small", EventActor)
    assert (quiet, busy, ahead) == (1, 2, 1)
    assert_counters_match_rows(snapshot)

    quiet, _, _, _ = await _batches_in_flight(mysql_url, tmp_path / "rotating", RotatingActor, deep_batch=1)
    assert quiet == 3


async def _book_through_killed_connections(
    mysql_url: str, tmp_path: Path, *, keep_failed: bool = False
) -> tuple[list[str], bool, dict[str, Any]]:
    """Book 3 seats a round while MariaDB kills the actor's batch connections after every
    round; then try up to 10 more rounds for one that books. Answers each round's codes,
    whether a later round booked, and the store's rows. With ``keep_failed`` the store
    keeps a connection that failed for its next batches (DELIBERATELY WRONG)."""
    from pymysql.constants import ER

    async with open_api(mysql_url, tmp_path) as api:
        account, event_id, actor = await _loaded_actor(api, EventActor, 1000)

        async def book(tag: str) -> set[Code]:
            holds = [replace(_hold_and_confirm(account, event_id, f"{tag}-{i}", 1)[0], confirm=True) for i in range(3)]
            return {o.code for o in (await actor.submit(holds)).outcomes}

        async def kill_batch_connections() -> int:
            assert actor._store is not None
            killed = 0
            async with api.runtime.writer.connect() as conn:
                for link in actor._store._links.values():
                    try:
                        await conn.exec_driver_sql(f"KILL {int(link.driver.thread_id())}")
                        killed += 1
                    except Exception as exc:  # killed before and kept (keep_failed)
                        assert getattr(exc, "orig", exc).args[0] == ER.NO_SUCH_THREAD, exc
            return killed

        drop = InventoryStore._drop

        async def keep(self: InventoryStore, slot: int) -> None:
            """The slot keeps its connection whatever happened to it."""

        if keep_failed:
            InventoryStore._drop = keep  # type: ignore[method-assign]
        try:
            codes, killed = [], 0
            for n in range(4):
                answered = await book(f"round-{n}")
                assert len(answered) == 1, answered  # a batch books or fails as a whole
                codes.append(answered.pop().value)
                killed += await kill_batch_connections()
            assert killed, "no batch connection was killed: the test shows nothing"
            recovered = False
            for n in range(10):
                if await book(f"after-{n}") == {Code.OK}:
                    recovered = True
                    break
                await asyncio.sleep(0.05)
            state = await actor.state()
        finally:
            InventoryStore._drop = drop  # type: ignore[method-assign]
        await actor.close()
        snapshot = await store_rows(api, event_id)
        snapshot["actor_sold"] = state.get("sold")
    return codes, recovered, snapshot


@pytest.mark.mysql
async def test_batches_on_killed_store_connections_fail_alone(mysql_url: str, tmp_path: Path) -> None:
    """MariaDB drops the actor's connections (a restart, a failover, a timeout): a batch
    that meets a dead one is answered 'unavailable' and writes nothing, and the actor
    connects afresh, so that later batches book. The store's counters match its rows.

    Negative control: a store that keeps a failed connection for its next batches never
    books again.
    """
    codes, recovered, snapshot = await _book_through_killed_connections(mysql_url, tmp_path)
    assert set(codes) <= {"ok", "unavailable"} and "unavailable" in codes, codes
    assert recovered
    assert_counters_match_rows(snapshot)
    booked = 3 * (codes.count("ok") + 1)
    assert snapshot["event"].sold == snapshot["actor_sold"] == booked == len(snapshot["bookings"])

    codes, recovered, _ = await _book_through_killed_connections(mysql_url, tmp_path / "sticky", keep_failed=True)
    assert not recovered, codes
