"""A cluster runs as many event actors as its memory holds; the others wait for room.

Each event actor reserves ``actor_memory_mb`` of Ray's ``memory`` resource. Here that
share is set so that two actors fit in the test cluster and a third does not. While
two events are booked without pause, an order on a third event gets 503
``unavailable`` with Retry-After once the call timeout passes, and leaves no order
row; the two running events go on booking meanwhile. Once the two are left idle for
``actor_idle_when_full_s``, one of them stops (the cluster is full and one actor waits
for room), the third event's actor starts in the room it gave up, and the same order,
sent again with its Idempotency-Key, is booked once. The other idle actor stays: the
cluster is full again, but nothing waits.

Negative control: with no reservation (``actor_memory_mb=0``) the third event books
at once beside the two busy ones, so the wait above comes from the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import ray

from actors.event_actor import (
    ROOM_CHECK_S,
    ROOM_KV_NAMESPACE,
    ROOM_LEASE_S,
    free_memory_per_node,
    take_room_lease,
)
from actors.gateway import actor_name
from reservation.domain.ids import order_id_for_key
from tests.conftest import NAMESPACE, Api, account, assert_problem, open_api
from tests.integration.checks import actor_alive, assert_store_consistent, stored_orders
from tests.integration.rush import activate

MIB = 1024 * 1024
IDLE_WHEN_FULL_S = 3.0
CALL_TIMEOUT_S = 4.0


def _share_for(actors: int) -> int:
    """``actor_memory_mb`` with which ``actors`` event actors fit in the cluster, one more not."""
    return int(ray.cluster_resources()["memory"] / (actors + 0.5) / MIB)


def _alive(event_id: str) -> bool:
    return actor_alive(event_id, NAMESPACE)


def _stop_actors(event_ids: list[str]) -> None:
    for event_id in event_ids:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(actor_name(event_id), namespace=NAMESPACE))


@contextlib.asynccontextmanager
async def _booking_without_pause(api: Api, who: dict[str, str], event_ids: list[str]) -> AsyncIterator[list[int]]:
    """Book the events over and over (never idle for long) until the block ends."""
    statuses: list[int] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            answers = await asyncio.gather(*(api.book(who, [e]) for e in event_ids))
            statuses.extend(r.status_code for r in answers)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield statuses
    finally:
        stop.set()
        await task


async def _events(api: Api, count: int) -> tuple[dict[str, str], list[str]]:
    host = await account(api, "host")
    return host, [(await api.create_event(host, capacity=1_000))["id"] for _ in range(count)]


async def _book_until_booked(api: Api, who: dict[str, str], event_id: str, key: str, within_s: float) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        r = await api.book(who, [event_id], key=key)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        await asyncio.sleep(int(r.headers.get("Retry-After", "1")))


async def test_an_event_beyond_the_room_waits_until_idle_actors_give_theirs_up(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    async with open_api(
        sqlite_url,
        tmp_path,
        actor_memory_mb=_share_for(2),
        actor_idle_when_full_s=IDLE_WHEN_FULL_S,
        actor_idle_s=600.0,
        actor_call_timeout_s=CALL_TIMEOUT_S,
    ) as api:
        _, (first, second, third) = await _events(api, 3)
        customer = await account(api)
        await activate(api, [first, second])
        key = "beyond-the-room"
        try:
            async with _booking_without_pause(api, customer, [first, second]) as busy:
                started = time.monotonic()
                refused = await api.book(customer, [third], key=key)
                waited = time.monotonic() - started
                await asyncio.sleep(IDLE_WHEN_FULL_S)  # the two stay busy past the idle limit
            assert_problem(refused, 503, "unavailable")
            assert int(refused.headers["Retry-After"]) >= 1
            assert waited >= CALL_TIMEOUT_S * 0.9, waited
            assert busy and set(busy) == {201}, busy  # the running events were not held up
            assert _alive(first) and _alive(second)
            order_id = order_id_for_key(customer["X-Account"], key)
            assert stored_orders(sqlite_url, [order_id]) == 0

            # Left idle, one of the two gives its room up and the third event's actor starts.
            booked = await _book_until_booked(api, customer, third, key, within_s=90)
            assert booked.status_code == 201, booked.text
            # One waited, so one of the two gave its room up.
            assert _alive(first) != _alive(second)
            again = await api.book(customer, [third], key=key)
            assert again.status_code == 201 and again.json()["id"] == booked.json()["id"]
            assert stored_orders(sqlite_url, [order_id]) == 1
            assert_store_consistent(
                sqlite_url,
                third,
                expected_sold=1,
                expected_held=0,
                confirmed_ids=[i["id"] for i in booked.json()["items"]],
            )
            # Nothing waits any more: the other stays idle through further room checks,
            # though the cluster is full again.
            await asyncio.sleep(2 * ROOM_CHECK_S + 1)
            assert _alive(first) != _alive(second) and _alive(third)
        finally:
            _stop_actors([first, second, third])


async def test_without_a_reservation_the_third_event_books_at_once(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    async with open_api(
        sqlite_url, tmp_path, actor_memory_mb=0, actor_idle_s=600.0, actor_call_timeout_s=CALL_TIMEOUT_S
    ) as api:
        _, (first, second, third) = await _events(api, 3)
        customer = await account(api)
        await activate(api, [first, second])
        try:
            async with _booking_without_pause(api, customer, [first, second]) as busy:
                await asyncio.wait_for(activate(api, [third]), 60)
                r = await api.book(customer, [third], key="no-room-needed")
                assert _alive(first) and _alive(second) and _alive(third)
            assert r.status_code == 201, r.text
            assert busy and set(busy) == {201}, busy
        finally:
            _stop_actors([first, second, third])


def test_room_is_read_per_node(ray_session: None) -> None:
    """An actor fits on one node: the room check reads each live node's free memory,
    not the cluster's sum."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    free = free_memory_per_node()
    assert len(free) == len(nodes) >= 1
    biggest = max(n["Resources"].get("memory", 0.0) for n in nodes)
    assert all(0 < room <= biggest for room in free)


def test_leases_to_stop_are_one_per_waiting_actor_and_window(ray_session: None) -> None:
    """However many idle actors ask at once, a window grants as many stops as actors
    wait for room, less those the window before granted, each to one of them."""
    now = (time.time() // ROOM_LEASE_S + 1000) * ROOM_LEASE_S  # a window no other test used
    assert take_room_lease("a", 1, now)
    assert not take_room_lease("b", 1, now + 1)  # one waits: one lease
    assert take_room_lease("c", 2, now + 2)  # two wait: a second one
    assert not take_room_lease("d", 2, now + 3)
    # The next window: the two granted just before may not have been taken up yet.
    assert not take_room_lease("e", 2, now + ROOM_LEASE_S)
    assert take_room_lease("f", 3, now + ROOM_LEASE_S + 1)
    assert take_room_lease("g", 1, now + 3 * ROOM_LEASE_S)  # two windows later
    from ray.experimental import internal_kv

    left = sorted(internal_kv._internal_kv_list("", namespace=ROOM_KV_NAMESPACE))
    window = int(now // ROOM_LEASE_S)
    # Leases of windows gone by are dropped by the next lease granted.
    assert [k for k in left if int(k.split(b":")[0]) >= window] == [f"{window + 3}:0".encode()], left
