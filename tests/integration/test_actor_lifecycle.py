"""Event actors on a real store under Ray: hold expiry, idle stop, a store that is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import ray
from sqlalchemy import select

from actors.gateway import GatewayConfig, InventoryGateway, actor_name
from reservation.domain.commands import Attendee, Code, Configure, Hold, Release
from reservation.domain.ids import new_id
from reservation.store.schema import bookings, events
from tests.conftest import NAMESPACE, Api, metric_samples, open_api
from tests.integration.checks import sync_engine


async def _event_with_order(api: Api, **fields: object) -> tuple[str, str, str]:
    """An event and a pending order row (holds outside the one-event path need one)."""
    host = await api.register("host")
    customer = await api.register("customer")
    event = await api.create_event(host, **fields)
    order_id = new_id()
    from reservation.store import order_records
    from reservation.store.inventory import to_dt

    now = to_dt(time.time())
    await order_records.start_order(
        api.runtime.writer,
        {
            "id": order_id, "account_id": customer["X-Account"], "status": "pending", "request_hash": None,
            "idempotency_key": None, "total_minor": 0, "currency": "EUR", "problem_type": None,
            "problem_detail": None, "created_at": now, "updated_at": now,
        },
        None,
    )
    return event["id"], order_id, customer["X-Account"]


def _gateway(url: str, **overrides: object) -> InventoryGateway:
    return InventoryGateway(GatewayConfig(database_url=url, namespace=NAMESPACE, **overrides))  # type: ignore[arg-type]


async def test_the_holds_gauge_counts_seats_on_hold(sqlite_url: str, ray_session: None, tmp_path: Path) -> None:
    """``reservation_holds_open_seats`` follows the seats on hold that the actors report."""
    holds = ("reservation_holds_open_seats", ())

    async with open_api(sqlite_url, tmp_path) as api:

        async def seats_on_hold() -> float:
            return metric_samples((await api.client.get("/metrics")).text)[holds]

        event_id, order_id, account = await _event_with_order(api, capacity=5)
        before = await seats_on_hold()
        booking_id = new_id()
        people = (Attendee("A"), Attendee("B"), Attendee("C"))
        gateway = api.runtime.gateway
        (held,) = await gateway.execute(event_id, [Hold.of("h-gauge", booking_id, order_id, account, people, 60)])
        assert held.ok
        assert await seats_on_hold() == before + 3
        (released,) = await gateway.execute(event_id, [Release("r-gauge", booking_id)])
        assert released.ok
        assert await seats_on_hold() == before


async def test_actor_expires_holds_on_time(sqlite_url: str, ray_session: None, tmp_path: Path) -> None:
    async with open_api(sqlite_url, tmp_path) as api:
        event_id, order_id, account = await _event_with_order(api, capacity=3)
        gw = _gateway(sqlite_url)
        booking_id = new_id()
        (held,) = await gw.execute(
            event_id, [Hold.of("h1", booking_id, order_id, account, (Attendee("A"), Attendee("B")), ttl_s=0.5)]
        )
        assert held.ok and held.booking is not None and held.booking.status == "held"
        assert (await gw.state(event_id))["held"] == 2
        await asyncio.sleep(1.5)  # nobody sends a command: the actor must expire it by itself
        state = await gw.state(event_id)
        assert state["held"] == 0 and state["sold"] == 0
        with sync_engine(sqlite_url) as engine, engine.connect() as conn:
            status = conn.execute(select(bookings.c.status).where(bookings.c.id == booking_id)).scalar_one()
            held_col = conn.execute(select(events.c.held).where(events.c.id == event_id)).scalar_one()
        assert status == "expired" and held_col == 0


async def test_idle_actor_stops_and_comes_back(sqlite_url: str, ray_session: None, tmp_path: Path) -> None:
    async with open_api(sqlite_url, tmp_path) as api:
        event_id, order_id, account = await _event_with_order(api, capacity=3)
        gw = _gateway(sqlite_url, idle_s=1.0)
        (ok,) = await gw.execute(event_id, [Configure("c1", capacity=4)])
        assert ok.ok
        first_pid = (await gw.state(event_id))["pid"]
        deadline = time.monotonic() + 20
        while True:
            try:
                ray.get_actor(actor_name(event_id), namespace=NAMESPACE)
            except ValueError:
                break  # the name is free: the actor stopped for good
            assert time.monotonic() < deadline, "idle actor did not stop"
            await asyncio.sleep(0.3)
        # The next command starts a new actor, which rebuilds from the store.
        (hold,) = await gw.execute(event_id, [Hold.of("h2", new_id(), order_id, account, (Attendee("A"),), 60)])
        assert hold.ok
        state = await gw.state(event_id)
        assert state["pid"] != first_pid and state["capacity"] == 4 and state["held"] == 1


async def test_actor_with_open_holds_does_not_idle_away(
    sqlite_url: str, ray_session: None, tmp_path: Path
) -> None:
    async with open_api(sqlite_url, tmp_path) as api:
        event_id, order_id, account = await _event_with_order(api, capacity=3)
        gw = _gateway(sqlite_url, idle_s=0.5)
        (hold,) = await gw.execute(event_id, [Hold.of("h3", new_id(), order_id, account, (Attendee("A"),), 60)])
        assert hold.ok
        pid = (await gw.state(event_id))["pid"]
        await asyncio.sleep(2.0)
        ray.get_actor(actor_name(event_id), namespace=NAMESPACE)  # still registered
        assert (await gw.state(event_id))["pid"] == pid


async def test_store_down_answers_503_fast(ray_session: None, tmp_path: Path) -> None:
    dead = "mysql+aiomysql://root@127.0.0.1:1/reservation"
    async with open_api(dead, tmp_path) as api:
        started = time.monotonic()
        r = await api.client.post(
            "/api/users", json={"name": "N", "email": "n@example.com", "password": "long-enough-1"}
        )
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"] == "/problems/store-unavailable"
        assert int(r.headers["Retry-After"]) >= 1
        before = metric_samples((await api.client.get("/metrics")).text)
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("failed")
        # The probe's 503 sheds no request; the refused registration did.
        after = metric_samples((await api.client.get("/metrics")).text)
        shed = "reservation_shed_total"
        assert after.get((shed, (("kind", "unavailable"),)), 0) == before.get((shed, (("kind", "unavailable"),)), 0)
        assert after[(shed, (("kind", "store-unavailable"),))] >= 1
        assert time.monotonic() - started < 15
    gw = _gateway(dead)
    (outcome,) = await gw.execute(new_id(), [Configure("c", capacity=1)])
    assert outcome.code is Code.UNAVAILABLE


@pytest.mark.parametrize("bad", [-1])
async def test_configure_refuses_negative(sqlite_url: str, ray_session: None, tmp_path: Path, bad: int) -> None:
    async with open_api(sqlite_url, tmp_path) as api:
        event_id, _, _ = await _event_with_order(api, capacity=3)
        gw = _gateway(sqlite_url)
        (outcome,) = await gw.execute(event_id, [Configure("neg", capacity=bad)])
        assert outcome.code is Code.INVALID
