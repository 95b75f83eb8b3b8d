"""Idempotent order placement through the HTTP API, on both stores (invariant 4).

A retried request (same account, same ``Idempotency-Key``, same body) never books
twice and gets the first answer again; a key reused with another body is refused;
keys are per account; and a retry on a second front end after the first one died
mid-request finishes the work exactly once.

Most tests share two roomy events per store (an actor process per event is the
expensive part of a test) and check their own orders' rows and the counters' deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from actors.gateway import InventoryGateway
from reservation.domain.commands import Command, Hold, Outcome
from reservation.domain.ids import order_id_for_key
from reservation.store import order_records
from reservation.store.schema import bookings, idempotency_keys, orders
from tests.conftest import Api, account, assert_problem, auth, open_api

PROBLEM = "application/problem+json"
LIVE = ("held", "confirmed")


# ----------------------------------------------------------------------- helpers


_ROOMY: dict[str, tuple[dict[str, str], str, str]] = {}


async def roomy_events(api: Api) -> tuple[dict[str, str], str, str]:
    """(host, event a, event b): two big events per store, shared by the tests of this module.

    The first use books one seat on each, so that both actors are running.
    """
    url = api.runtime.settings.store_url
    if url not in _ROOMY:
        host = await account(api, "host")
        a = (await api.create_event(host, capacity=100_000, title="Roomy concert"))["id"]
        b = (await api.create_event(host, capacity=100_000, title="Roomy theatre"))["id"]
        warm = await api.book(await account(api), [a, b])
        assert warm.status_code == 201, warm.text
        _ROOMY[url] = (host, a, b)
    return _ROOMY[url]


def order_body(event_ids: list[str], attendees: int = 1, who: str = "Guest") -> dict[str, Any]:
    return {
        "items": [
            {"event_id": e, "attendees": [{"name": f"{who} {n}"} for n in range(attendees)]}
            for e in event_ids
        ]
    }


async def post_order(api: Api, who: dict[str, str], body: dict[str, Any], key: str | None) -> httpx.Response:
    headers = auth(who)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post("/api/orders", json=body, headers=headers)


async def counters(api: Api, host: dict[str, str], event_id: str) -> tuple[int, int]:
    """(sold, held) as the event's host sees them (the front end's 1 s read cache dropped first)."""
    api.runtime.events_cache.invalidate()
    r = await api.client.get(f"/api/events/{event_id}", headers=auth(host))
    assert r.status_code == 200, r.text
    view = r.json()
    return view["sold"], view["held"]


async def store_bookings(api: Api, **where: str) -> list[dict[str, Any]]:
    """Booking rows straight from the store, filtered by column values (event_id, order_id, account_id)."""
    query = select(bookings.c.event_id, bookings.c.order_id, bookings.c.status, bookings.c.quantity)
    for column, value in where.items():
        query = query.where(bookings.c[column] == value)
    async with api.runtime.reader.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def orders_with_key(api: Api, account_id: str, key: str) -> int:
    """The account's orders stored with exactly this key (compared here: MariaDB's
    collation would count ``Key`` and ``key`` as one in ``orders.idempotency_key``)."""
    async with api.runtime.reader.connect() as conn:
        keys = await conn.execute(select(orders.c.idempotency_key).where(orders.c.account_id == account_id))
        return sum(stored == key for stored in keys.scalars())


def booked(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((r["event_id"], r["status"], r["quantity"]) for r in rows)


# --------------------------------------------------------------------- replays


async def test_replay_answers_first_order_and_books_once(api: Api) -> None:
    host, a, b = await roomy_events(api)
    customer = await account(api)
    before_a, before_b = await counters(api, host, a), await counters(api, host, b)

    one = order_body([a], attendees=2)
    first = await post_order(api, customer, one, "replay-one")
    second = await post_order(api, customer, one, "replay-one")
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    assert first.json()["status"] == "confirmed"
    assert booked(await store_bookings(api, order_id=first.json()["id"])) == [(a, "confirmed", 2)]

    two = order_body([a, b], attendees=3)
    first = await post_order(api, customer, two, "replay-two")
    second = await post_order(api, customer, two, "replay-two")
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    assert first.json()["total"] == {"amount": 6 * 2500, "currency": "EUR"}
    assert booked(await store_bookings(api, order_id=first.json()["id"])) == sorted(
        [(a, "confirmed", 3), (b, "confirmed", 3)]
    )

    # Seats counted once: 2 + 3 on a, 3 on b, nothing left held.
    assert await counters(api, host, a) == (before_a[0] + 5, before_a[1])
    assert await counters(api, host, b) == (before_b[0] + 3, before_b[1])
    assert len(await store_bookings(api, account_id=customer["X-Account"])) == 3
    for key in ("replay-one", "replay-two"):
        assert await orders_with_key(api, customer["X-Account"], key) == 1
    mine = await api.client.get("/api/orders", headers=auth(customer))
    assert mine.status_code == 200, mine.text
    assert len(mine.json()["items"]) == 2


async def test_key_reused_with_another_request_is_refused(api: Api) -> None:
    host, a, b = await roomy_events(api)
    customer = await account(api)

    first = await post_order(api, customer, order_body([a], attendees=1), "k-one")
    assert first.status_code == 201, first.text
    first_many = await post_order(api, customer, order_body([a, b], attendees=1), "k-many")
    assert first_many.status_code == 201, first_many.text
    before = await counters(api, host, a), await counters(api, host, b)

    # More attendees, other names, another event, other events: all under a used key.
    for key, body in (
        ("k-one", order_body([a], attendees=2)),
        ("k-one", order_body([a], attendees=1, who="Someone else")),
        ("k-one", order_body([b], attendees=1)),
        ("k-one", order_body([a, b], attendees=1)),
        ("k-many", order_body([a, b], attendees=2)),
        ("k-many", order_body([b], attendees=1)),
        ("k-many", order_body([a], attendees=1)),
    ):
        r = await post_order(api, customer, body, key)
        assert_problem(r, 422, "idempotency-mismatch")

    # Nothing was booked by the refused requests; the first answers still replay.
    assert booked(await store_bookings(api, account_id=customer["X-Account"])) == sorted(
        [(a, "confirmed", 1), (a, "confirmed", 1), (b, "confirmed", 1)]
    )
    assert (await counters(api, host, a), await counters(api, host, b)) == before
    for key, body, answer in (
        ("k-one", order_body([a], attendees=1), first),
        ("k-many", order_body([a, b], attendees=1), first_many),
    ):
        again = await post_order(api, customer, body, key)
        assert again.status_code == 201, again.text
        assert again.json() == answer.json()


async def test_concurrent_duplicates_book_once(api: Api) -> None:
    host, a, b = await roomy_events(api)
    customer = await account(api)
    before = await counters(api, host, a), await counters(api, host, b)

    for key, event_ids in (("dup-one", [a]), ("dup-two", [a, b])):
        body = order_body(event_ids, attendees=2)
        answers = await asyncio.gather(*(post_order(api, customer, body, key) for _ in range(2)))
        statuses = sorted(r.status_code for r in answers)
        ok = [r for r in answers if r.status_code == 201]
        # The front end's in-process guard refuses the second while the first runs; had
        # the first already finished, the second would be a replay of its answer.
        assert statuses in ([201, 409], [201, 201]), [r.text for r in answers]
        if statuses == [201, 409]:
            assert_problem(next(r for r in answers if r.status_code == 409), 409, "in-flight")
        else:
            assert ok[0].json() == ok[1].json()
        order_id = ok[0].json()["id"]
        assert booked(await store_bookings(api, order_id=order_id)) == sorted(
            (e, "confirmed", 2) for e in event_ids
        )
        # Once the first is done, a retry gets its answer.
        retry = await post_order(api, customer, body, key)
        assert retry.status_code == 201, retry.text
        assert retry.json() == ok[0].json()

    assert len(await store_bookings(api, account_id=customer["X-Account"])) == 3
    assert await counters(api, host, a) == (before[0][0] + 4, before[0][1])
    assert await counters(api, host, b) == (before[1][0] + 2, before[1][1])


async def test_sold_out_answer_is_replayed_after_seats_free_up(api: Api) -> None:
    host, _, b = await roomy_events(api)
    first_buyer, late = await account(api), await account(api)
    a = (await api.create_event(host, capacity=2, title="Tiny club"))["id"]
    taken = await api.book(first_buyer, [a], attendees=2)
    assert taken.status_code == 201, taken.text
    before_b = await counters(api, host, b)

    single = order_body([a], attendees=1)
    many = order_body([b, a], attendees=1)
    refused_single = assert_problem(await post_order(api, late, single, "late-one"), 409, "sold-out")
    refused_many = assert_problem(await post_order(api, late, many, "late-many"), 409, "sold-out")
    # The refused multi-event order gave back the seat it held on the other event.
    assert [r["status"] for r in await store_bookings(api, account_id=late["X-Account"])] in (
        ["released"],
        ["cancelled"],
    )

    cancelled = await api.client.post(f"/api/orders/{taken.json()['id']}/cancel", headers=auth(first_buyer))
    assert cancelled.status_code == 200, cancelled.text
    assert await counters(api, host, a) == (0, 0)

    # Seats are free now, but the retries get the first (stored) answer and book nothing.
    again_single = assert_problem(await post_order(api, late, single, "late-one"), 409, "sold-out")
    again_many = assert_problem(await post_order(api, late, many, "late-many"), 409, "sold-out")
    assert again_single == refused_single
    # The whole answer comes back, the sold-out event's `event_id` member included.
    assert refused_many["event_id"] == a
    assert again_many == refused_many
    assert await counters(api, host, a) == (0, 0)
    assert await counters(api, host, b) == before_b
    assert not [r for r in await store_bookings(api, account_id=late["X-Account"]) if r["status"] in LIVE]
    mine = await api.client.get("/api/orders", headers=auth(late))
    assert mine.json()["items"] == []

    # A new key is a new request: it books the freed seat.
    fresh = await post_order(api, late, single, "late-two")
    assert fresh.status_code == 201, fresh.text
    assert await counters(api, host, a) == (1, 0)


async def test_same_key_from_two_accounts_gives_two_orders(api: Api) -> None:
    host, a, b = await roomy_events(api)
    alice, bob = await account(api), await account(api)
    before = await counters(api, host, a), await counters(api, host, b)

    for key, body in (("shared-one", order_body([a], attendees=2)), ("shared-two", order_body([a, b]))):
        mine = await post_order(api, alice, body, key)
        theirs = await post_order(api, bob, body, key)
        assert mine.status_code == 201, mine.text
        assert theirs.status_code == 201, theirs.text
        assert mine.json()["id"] != theirs.json()["id"]
        for who, r in ((alice, mine), (bob, theirs)):
            got = await api.client.get(f"/api/orders/{r.json()['id']}", headers=auth(who))
            assert got.status_code == 200, got.text
            assert got.json() == r.json()
            assert await orders_with_key(api, who["X-Account"], key) == 1
    for who in (alice, bob):
        assert booked(await store_bookings(api, account_id=who["X-Account"])) == sorted(
            [(a, "confirmed", 2), (a, "confirmed", 1), (b, "confirmed", 1)]
        )
    assert await counters(api, host, a) == (before[0][0] + 6, before[0][1])
    assert await counters(api, host, b) == (before[1][0] + 2, before[1][1])


async def test_keys_differing_only_in_letter_case_are_different_keys(api: Api) -> None:
    """Keys are opaque and case-sensitive on both stores: each of these books its own
    order, and each one's retry gets its own order back. (Under MariaDB's default
    collation an order over several events took ``two-events`` for ``Two-Events`` and
    answered it with the first key's order.)"""
    host, a, b = await roomy_events(api)
    alice = await account(api)
    for events, keys in (([a], ("One-Event", "one-event", "ONE-EVENT")), ([a, b], ("Two-Events", "two-events"))):
        before = await counters(api, host, a)
        answers = {}
        for key in keys:
            r = await post_order(api, alice, order_body(events), key)
            assert r.status_code == 201, r.text
            answers[key] = r.json()
        assert len({answer["id"] for answer in answers.values()}) == len(keys)
        for key in keys:
            again = await post_order(api, alice, order_body(events), key)
            assert again.status_code == 201 and again.json() == answers[key]
            assert await orders_with_key(api, alice["X-Account"], key) == 1
        assert await counters(api, host, a) == (before[0] + len(keys), before[1])


async def test_the_store_tells_keys_apart_byte_for_byte(api: Api) -> None:
    """The store itself: key records whose keys differ in case, accents or a trailing
    space are separate records, each found by its own key only."""
    customer = (await account(api))["X-Account"]
    keys = ["key", "Key", "kéy", "key ", "KEY"]
    now = datetime.now(UTC).replace(tzinfo=None)
    order_ids = {}
    for key in keys:
        order_id = order_id_for_key(customer, key)
        order = {
            "id": order_id,
            "account_id": customer,
            "status": "pending",
            "request_hash": "h" * 64,
            "idempotency_key": key,
            "total_minor": 0,
            "currency": "XXX",
            "problem_type": None,
            "problem_detail": None,
            "created_at": now,
            "updated_at": now,
        }
        record = {
            "account_id": customer,
            "idem_key": key,
            "request_hash": "h" * 64,
            "order_id": order_id,
            "status_code": None,
            "locked_until": now,
            "created_at": now,
        }
        assert await order_records.start_order(api.runtime.writer, order, record) is None, key
        order_ids[key] = order_id
    for key in keys:
        found = await order_records.get_key(api.runtime.reader, customer, key)
        assert found is not None and found.order_id == order_ids[key], key
    assert await order_records.get_key(api.runtime.reader, customer, "kèy") is None


# ------------------------------------------------------- a front end dies mid-way


def second_front_end(api: Api, store_url: str, tmp_path: Path, **overrides: Any) -> open_api:
    """Another front end on the same store and the same Ray actors as ``api``.

    The namespace is passed on explicitly: pytest loads tests/conftest.py as the module
    ``conftest``, so ``tests.conftest`` imported here is a second copy whose random
    NAMESPACE differs; without it, this front end would start a second actor per event.
    """
    return open_api(store_url, tmp_path, ray_namespace=api.runtime.settings.ray_namespace, **overrides)


def trip_on(gateway: InventoryGateway, command_type: type) -> asyncio.Event:
    """An event set when ``gateway`` sends a command of ``command_type`` to an actor."""
    fired = asyncio.Event()
    original = gateway.execute

    async def execute(event_id: str, commands: list[Command]) -> list[Outcome]:
        if any(isinstance(c, command_type) for c in commands):
            fired.set()
        return await original(event_id, commands)

    gateway.execute = execute  # type: ignore[method-assign]
    return fired


async def start_and_kill(front: Api, who: dict[str, str], body: dict[str, Any], key: str) -> None:
    """Send the order on ``front`` and abandon it once its holds are on their way to the actors."""
    fired = trip_on(front.runtime.gateway, Hold)
    request = asyncio.create_task(post_order(front, who, body, key))
    await asyncio.wait_for(fired.wait(), 30)
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    assert request.cancelled(), "the request finished before it could be interrupted"


async def retry_until_done(
    front: Api, who: dict[str, str], body: dict[str, Any], key: str, within_s: float = 20.0
) -> tuple[httpx.Response, int]:
    """Retry as a client would: an in-flight answer (409) is retried after a pause."""
    in_flight = 0
    deadline = time.monotonic() + within_s
    while True:
        r = await post_order(front, who, body, key)
        if r.status_code != 409:
            return r, in_flight
        assert_problem(r, 409, "in-flight")
        in_flight += 1
        assert time.monotonic() < deadline, f"still in flight after {within_s} s"
        await asyncio.sleep(0.1)


async def key_record(api: Api, account_id: str, key: str) -> dict[str, Any]:
    async with api.runtime.reader.connect() as conn:
        row = (
            await conn.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.account_id == account_id, idempotency_keys.c.idem_key == key
                )
            )
        ).one()
    return dict(row._mapping)


async def test_retry_on_another_front_end_after_a_crash_books_once(
    api: Api, store_url: str, tmp_path: Path
) -> None:
    host, a, _ = await roomy_events(api)
    customer = await account(api)
    before = await counters(api, host, a)

    body = order_body([a], attendees=2)
    async with second_front_end(api, store_url, tmp_path) as front_a:
        await start_and_kill(front_a, customer, body, "crash-one")
    # Front end A is gone; the client retries on front end B (the `api` fixture).
    done, _ = await retry_until_done(api, customer, body, "crash-one")
    assert done.status_code == 201, done.text
    order = done.json()
    assert order["status"] == "confirmed"
    assert [(i["event_id"], i["quantity"]) for i in order["items"]] == [(a, 2)]
    assert booked(await store_bookings(api, account_id=customer["X-Account"])) == [(a, "confirmed", 2)]
    assert await orders_with_key(api, customer["X-Account"], "crash-one") == 1
    assert await counters(api, host, a) == (before[0] + 2, before[1])
    replay = await post_order(api, customer, body, "crash-one")
    assert replay.status_code == 201, replay.text
    assert replay.json() == order


async def test_retry_takes_over_a_dead_front_ends_multi_event_order(
    api: Api, store_url: str, tmp_path: Path
) -> None:
    host, a, b = await roomy_events(api)
    customer = await account(api)
    before = await counters(api, host, a), await counters(api, host, b)

    body = order_body([a, b], attendees=2)
    # Front end A owns the key's record for 3 x actor_call_timeout_s = 1.8 s from its start.
    async with second_front_end(api, store_url, tmp_path, actor_call_timeout_s=0.6) as front_a:
        await start_and_kill(front_a, customer, body, "crash-many")
    record = await key_record(api, customer["X-Account"], "crash-many")
    assert record["status_code"] is None and record["locked_until"] is not None, record

    done, in_flight = await retry_until_done(api, customer, body, "crash-many")
    assert done.status_code == 201, done.text
    # The dead front end's lock still ran at the first retry; B took over once it ran out.
    assert in_flight > 0, "the first retry should have met front end A's lock"
    order = done.json()
    assert order["status"] == "confirmed"
    assert sorted((i["event_id"], i["status"], i["quantity"]) for i in order["items"]) == sorted(
        [(a, "confirmed", 2), (b, "confirmed", 2)]
    )
    assert booked(await store_bookings(api, account_id=customer["X-Account"])) == sorted(
        [(a, "confirmed", 2), (b, "confirmed", 2)]
    )
    assert await counters(api, host, a) == (before[0][0] + 2, before[0][1])
    assert await counters(api, host, b) == (before[1][0] + 2, before[1][1])
    assert await orders_with_key(api, customer["X-Account"], "crash-many") == 1
    assert (await key_record(api, customer["X-Account"], "crash-many"))["status_code"] == 201
    replay = await post_order(api, customer, body, "crash-many")
    assert replay.status_code == 201, replay.text
    assert replay.json() == order
