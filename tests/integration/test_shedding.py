"""An event's queue in a front end: visible while it fills, shed at once when full.

While a front end's calls to an event's actor are in flight, the commands that arrive
wait in a queue of at most ``max_queue_per_event``; past it, the front end answers 503
``overloaded`` with Retry-After straight away, before anything is held. The test rushes
one event through a front end with a small queue and one call in flight, and checks the
answers, the store (a shed order left no row) and ``reservation_shed_total{kind}``; then
it sends the shed orders again with the same Idempotency-Keys, and each is booked once.

Negative control: the same rush through a front end with the default queue bound sheds
nothing, so the 503s above come from the bound and not from the rush itself.

While commands wait, ``reservation_actor_queue_depth`` in ``/metrics`` counts them; once
every order is answered it reads 0 again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from reservation.domain.ids import order_id_for_key
from tests.conftest import Api, assert_problem, metric_samples, open_api
from tests.integration.checks import assert_store_consistent, stored_orders
from tests.integration.rush import activate, booking_ids, register_customers, rush, summary

QUEUE = 4
REQUESTS = 120
BUYERS = 20
SHED = ("reservation_shed_total", (("kind", "overloaded"),))
DEPTH = ("reservation_actor_queue_depth", ())


async def _event_and_buyers(api: Api) -> tuple[str, list[dict[str, str]]]:
    """A fresh event with room for every request of a rush (its actor started), and buyers."""
    host = await api.register("host")
    buyers = await register_customers(api, BUYERS)
    event_id = (await api.create_event(host, capacity=REQUESTS))["id"]
    await activate(api, [event_id])
    return event_id, buyers


async def test_a_full_queue_answers_503_overloaded_and_books_nothing_for_it(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    async with open_api(sqlite_url, tmp_path, max_queue_per_event=QUEUE, calls_in_flight=1) as api:
        before = metric_samples((await api.client.get("/metrics")).text)
        event_id, buyers = await _event_and_buyers(api)
        answers = await rush(api, [event_id], buyers, REQUESTS, "peak")

        shed = [n for n, r in enumerate(answers) if r.status_code == 503]
        booked = [r for r in answers if r.status_code == 201]
        assert shed and booked and len(shed) + len(booked) == REQUESTS, summary(answers)
        for n in shed:
            assert_problem(answers[n], 503, "overloaded")
            assert int(answers[n].headers["Retry-After"]) >= 1
        after = metric_samples((await api.client.get("/metrics")).text)
        assert after[SHED] - before.get(SHED, 0) == len(shed)

        # A shed order left nothing: no order row, no seat.
        shed_orders = [order_id_for_key(buyers[n % BUYERS]["X-Account"], f"peak-{n}") for n in shed]
        assert stored_orders(sqlite_url, shed_orders) == 0
        first = booking_ids(booked, event_id)
        assert_store_consistent(sqlite_url, event_id, expected_sold=len(booked), expected_held=0, confirmed_ids=first)

        # Sent again with the same keys, one at a time (nothing queues), each is booked once.
        again = [await api.book(buyers[n % BUYERS], [event_id], key=f"peak-{n}") for n in shed]
        assert summary(again) == {(201, ""): len(shed)}, summary(again)
        assert stored_orders(sqlite_url, shed_orders) == len(shed)
        every = first + booking_ids(again, event_id)
        assert_store_consistent(sqlite_url, event_id, expected_sold=REQUESTS, expected_held=0, confirmed_ids=every)


async def test_negative_control_the_same_rush_with_the_default_bound_sheds_nothing(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    async with open_api(sqlite_url, tmp_path, calls_in_flight=1) as api:
        assert api.runtime.settings.max_queue_per_event >= REQUESTS
        event_id, buyers = await _event_and_buyers(api)
        answers = await rush(api, [event_id], buyers, REQUESTS, "calm")
        assert summary(answers) == {(201, ""): REQUESTS}, summary(answers)
        assert_store_consistent(
            sqlite_url, event_id, expected_sold=REQUESTS, expected_held=0, confirmed_ids=booking_ids(answers, event_id)
        )


async def test_the_queue_depth_gauge_counts_the_commands_waiting_for_the_actor(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    # One command in flight at a time, each its own commit: the rush arrives far faster
    # than that drains, and the rest of it waits in the queue.
    async with open_api(sqlite_url, tmp_path, calls_in_flight=1, max_batch=1) as api:
        event_id, buyers = await _event_and_buyers(api)
        rushing = asyncio.ensure_future(rush(api, [event_id], buyers, REQUESTS, "queued"))
        deadline = time.monotonic() + 30
        while api.runtime.gateway.queue_depth() < REQUESTS // 2 and not rushing.done():
            assert time.monotonic() < deadline, "the rush never queued"
            await asyncio.sleep(0.001)
        during = metric_samples((await api.client.get("/metrics")).text)[DEPTH]
        answers = await rushing
        assert summary(answers) == {(201, ""): REQUESTS}, summary(answers)
        assert during >= 1, "the gauge missed the commands waiting during the rush"
        after = metric_samples((await api.client.get("/metrics")).text)[DEPTH]
        assert after == 0
