"""Input validation, event changes, browsing and the operator endpoints (SQLite store).

Every malformed request is refused as ``application/problem+json`` before it changes
anything; hosts' changes that would break the inventory are refused with a clear
reason; the event list pages through every match exactly once.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import ray

from reservation.domain.ids import new_id
from tests.conftest import Api, account, assert_problem, auth, metric_samples, open_api

PROBLEM = "application/problem+json"


@pytest.fixture
async def api(sqlite_url: str, ray_session: None, tmp_path: Path) -> AsyncIterator[Api]:
    """One front end on the SQLite store (validation does not depend on the store)."""
    # The namespace of the session's Ray: tests.conftest imported here is a second copy of
    # the conftest module, with its own random NAMESPACE.
    namespace = ray.get_runtime_context().namespace
    async with open_api(sqlite_url, tmp_path, ray_namespace=namespace) as value:
        yield value


def assert_invalid(r: httpx.Response, field: str | None = None) -> dict[str, Any]:
    """A 422 problem; with ``field``, a schema error whose location names that field."""
    body = assert_problem(r, 422, "invalid-request")
    if field is not None:
        assert any(field in e["loc"] for e in body["errors"]), body
        assert all({"loc", "msg", "type"} <= e.keys() for e in body["errors"]), body
    return body


def items(*event_ids: str, attendees: int = 1) -> dict[str, Any]:
    return {
        "items": [
            {"event_id": e, "attendees": [{"name": f"Guest {n}"} for n in range(attendees)]}
            for e in event_ids
        ]
    }


def event_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Validation night",
        "venue": "Hall V",
        "starts_at": "2030-09-01T20:00:00Z",
        "ends_at": "2030-09-01T23:00:00Z",
        "capacity": 10,
        "price": {"amount": 1000, "currency": "EUR"},
    }
    body.update(fields)
    return body


async def host_view(api: Api, host: dict[str, str], event_id: str) -> dict[str, Any]:
    api.runtime.events_cache.invalidate()
    r = await api.client.get(f"/api/events/{event_id}", headers=auth(host))
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    return view


# ------------------------------------------------------------------ request bodies


async def test_malformed_orders_are_refused_and_book_nothing(api: Api) -> None:
    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=50))["id"]
    other = (await api.create_event(host, capacity=50, title="Other"))["id"]
    post = api.client.post
    headers = auth(customer)

    assert_invalid(
        await post("/api/orders", json={**items(event), "discount": 100}, headers=headers), "discount"
    )
    extra_item = {"items": [{"event_id": event, "attendees": [{"name": "A"}], "unit_price": 0}]}
    assert_invalid(await post("/api/orders", json=extra_item, headers=headers), "unit_price")
    extra_person = {"items": [{"event_id": event, "attendees": [{"name": "A", "vip": True}]}]}
    assert_invalid(await post("/api/orders", json=extra_person, headers=headers), "vip")
    assert_invalid(await post("/api/orders", json={"items": []}, headers=headers), "items")
    no_people = {"items": [{"event_id": event, "attendees": []}]}
    assert_invalid(await post("/api/orders", json=no_people, headers=headers), "attendees")
    bad_email = {"items": [{"event_id": event, "attendees": [{"name": "A", "email": "not-an-email"}]}]}
    assert_invalid(await post("/api/orders", json=bad_email, headers=headers), "email")
    twice = {"items": [*items(event)["items"], *items(event, attendees=2)["items"]]}
    assert (
        "once" in assert_invalid(await post("/api/orders", json=twice, headers=headers))["errors"][0]["msg"]
    )
    too_many = await post("/api/orders", json=items(event, attendees=21), headers=headers)
    assert "20" in assert_invalid(too_many)["detail"]
    eleven = await post("/api/orders", json=items(*(new_id() for _ in range(11))), headers=headers)
    assert "10" in assert_invalid(eleven)["detail"]
    not_json = await post(
        "/api/orders", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
    )
    assert_invalid(not_json)
    long_key = await post("/api/orders", json=items(event), headers={**headers, "Idempotency-Key": "k" * 256})
    assert_invalid(long_key)
    assert_problem(await post("/api/orders", json=items(new_id()), headers=headers), 404, "not-found")

    # Nothing above booked a seat; the limits themselves are allowed.
    assert (await host_view(api, host, event))["sold"] == 0
    mine = await api.client.get("/api/orders", headers=headers)
    assert mine.json()["items"] == []
    full = await post("/api/orders", json=items(event, other, attendees=20), headers=headers)
    assert full.status_code == 201, full.text
    assert (await host_view(api, host, event))["sold"] == 20


async def test_malformed_events_are_refused(api: Api) -> None:
    host = await account(api, "host")
    post, headers = api.client.post, auth(host)
    assert_invalid(await post("/api/events", json=event_body(sold=5), headers=headers), "sold")
    assert_invalid(
        await post("/api/events", json=event_body(starts_at="2030-09-01T20:00:00"), headers=headers),
        "starts_at",
    )
    assert_invalid(
        await post("/api/events", json=event_body(ends_at="2030-09-01T23:00:00"), headers=headers), "ends_at"
    )
    before = event_body(starts_at="2030-09-01T20:00:00Z", ends_at="2030-09-01T19:00:00Z")
    assert "ends_at" in str(assert_invalid(await post("/api/events", json=before, headers=headers))["errors"])
    # The same instant written in two zones is not "after".
    same = event_body(starts_at="2030-09-01T20:00:00Z", ends_at="2030-09-01T22:00:00+02:00")
    assert_invalid(await post("/api/events", json=same, headers=headers))
    assert_invalid(await post("/api/events", json=event_body(capacity=-1), headers=headers), "capacity")
    assert_invalid(
        await post("/api/events", json=event_body(price={"amount": 5, "currency": "eur"}), headers=headers)
    )
    assert_invalid(
        await post("/api/events", json=event_body(price={"amount": -5, "currency": "EUR"}), headers=headers)
    )
    assert_invalid(await post("/api/events", json=event_body(status="sold_out"), headers=headers), "status")
    listed = await api.client.get("/api/events", params={"q": "Validation night"})
    assert listed.json()["items"] == []

    event = await api.create_event(host, **event_body())
    patch = api.client.patch
    path = f"/api/events/{event['id']}"
    assert_invalid(await patch(path, json={}, headers=headers))
    assert_invalid(await patch(path, json={"title": None}, headers=headers))
    assert_invalid(await patch(path, json={"sold": 0}, headers=headers), "sold")
    early_end = await patch(path, json={"ends_at": "2030-09-01T19:00:00Z"}, headers=headers)
    assert "ends_at" in assert_invalid(early_end)["detail"]
    assert_invalid(await patch(path, json={"starts_at": "2030-09-02T20:00:00"}, headers=headers), "starts_at")
    other_currency = await patch(path, json={"price": {"amount": 5, "currency": "USD"}}, headers=headers)
    assert "currency" in assert_invalid(other_currency)["detail"]
    unchanged = await host_view(api, host, event["id"])
    assert {k: unchanged[k] for k in ("title", "ends_at", "price", "capacity")} == {
        k: event[k] for k in ("title", "ends_at", "price", "capacity")
    }


async def test_query_parameters_are_checked(api: Api) -> None:
    customer = await account(api)
    get = api.client.get
    for path, headers in (("/api/events", {}), ("/api/orders", auth(customer))):
        assert_invalid(await get(path, params={"page_size": 101}, headers=headers))
        assert_invalid(await get(path, params={"page_size": 0}, headers=headers), "page_size")
        assert (await get(path, params={"page_size": 100}, headers=headers)).status_code == 200
        for cursor in (
            "!!!not-base64",
            base64.urlsafe_b64encode(b"not json").decode(),
            base64.urlsafe_b64encode(orjson.dumps(["not a date", "x"])).decode(),
            base64.urlsafe_b64encode(orjson.dumps({"at": 1})).decode(),
            base64.urlsafe_b64encode(orjson.dumps([1, 2, 3])).decode(),
        ):
            r = await get(path, params={"cursor": cursor}, headers=headers)
            assert "cursor" in assert_invalid(r)["detail"], cursor
    assert_invalid(await get("/api/events", params={"starts_from": "2030-01-01T00:00:00"}))
    assert_invalid(await get("/api/events", params={"starts_to": "tomorrow"}), "starts_to")


async def test_oversized_bodies_are_refused_with_413(api: Api) -> None:
    customer = await account(api)
    limit = api.runtime.settings.max_body_bytes
    big = {"items": [{"event_id": new_id(), "attendees": [{"name": "x" * 150}] * (limit // 150 + 1)}]}
    r = await api.client.post("/api/orders", json=big, headers=auth(customer))
    assert str(limit) in assert_problem(r, 413, "body-too-large")["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        payload = orjson.dumps(big)
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    # Without a declared length the body is counted as it streams in.
    streamed = await api.client.post(
        "/api/orders", content=chunks(), headers={**auth(customer), "Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert str(limit) in assert_problem(streamed, 413, "body-too-large")["detail"]


# ---------------------------------------------------------------- event changes


async def test_host_changes_go_through_the_inventory(api: Api) -> None:
    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=5))["id"]
    other = (await api.create_event(host, capacity=5, title="Other"))["id"]
    path = f"/api/events/{event}"
    booked = await api.book(customer, [event], attendees=3)
    assert booked.status_code == 201, booked.text

    # Capacity plus oversell may not drop below the seats already sold.
    for change in ({"capacity": 2}, {"capacity": 1, "oversell_capacity": 1}):
        r = await api.client.patch(path, json=change, headers=auth(host))
        body = assert_problem(r, 409, "conflict")
        assert "3 seat(s) sold" in body["detail"], body
        assert (body["sold"], body["held"]) == (3, 0), body
    view = await host_view(api, host, event)
    assert (view["capacity"], view["oversell_capacity"], view["sold"]) == (5, 0, 3)
    # Down to exactly what is sold is fine: the event is then sold out.
    r = await api.client.patch(path, json={"capacity": 2, "oversell_capacity": 1}, headers=auth(host))
    assert r.status_code == 200, r.text
    assert (r.json()["capacity"], r.json()["oversell_capacity"], r.json()["availability"]["remaining"]) == (
        2,
        1,
        0,
    )
    assert_problem(await api.book(customer, [event]), 409, "sold-out")
    r = await api.client.patch(path, json={"capacity": 10, "oversell_capacity": 0}, headers=auth(host))
    assert r.status_code == 200, r.text

    # Paused sales refuse bookings (also as part of a bigger order, which then books nothing).
    paused = await api.client.patch(path, json={"status": "paused"}, headers=auth(host))
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert_problem(await api.book(customer, [event]), 409, "sales-paused")
    assert_problem(await api.book(customer, [other, event]), 409, "sales-paused")
    assert (await host_view(api, host, other))["sold"] == 0
    assert (await host_view(api, host, other))["held"] == 0
    resumed = await api.client.patch(path, json={"status": "on_sale"}, headers=auth(host))
    assert resumed.status_code == 200, resumed.text
    again = await api.book(customer, [event], attendees=2)
    assert again.status_code == 201, again.text
    view = await host_view(api, host, event)
    assert (view["status"], view["sold"], view["held"], view["capacity"]) == ("on_sale", 5, 0, 10)


# ----------------------------------------------------------------------- browsing


async def test_event_list_pages_through_every_match_once(api: Api) -> None:
    host = await account(api, "host")
    tag = "pager-" + secrets.token_hex(4)
    starts = ["2031-01-05", "2031-01-01", "2031-01-03", "2031-01-03", "2031-01-02"]  # one tie
    created = []
    for n, day in enumerate(starts):
        event = await api.create_event(
            host, title=f"{tag} #{n}", starts_at=f"{day}T20:00:00Z", ends_at=f"{day}T22:00:00Z"
        )
        created.append(event)
    await api.create_event(host, title="Unrelated", description="nothing to see")
    expected = [e["id"] for e in sorted(created, key=lambda e: (e["starts_at"], e["id"]))]

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"q": tag, "page_size": 2}
        if cursor:
            params["cursor"] = cursor
        r = await api.client.get("/api/events", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        sizes.append(len(page["items"]))
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert sizes == [2, 2, 1]

    by_number = {e["title"].split("#")[1]: e["id"] for e in created}

    async def between(start: str | None, end: str | None) -> list[str]:
        params = {
            "q": tag,
            **({"starts_from": start} if start else {}),
            **({"starts_to": end} if end else {}),
        }
        r = await api.client.get("/api/events", params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    def in_order(*numbers: str) -> list[str]:
        return [i for i in expected if i in {by_number[n] for n in numbers}]

    # starts_from is inclusive, starts_to exclusive; zones are honoured.
    assert await between("2031-01-02T20:00:00Z", "2031-01-05T20:00:00Z") == in_order("4", "2", "3")
    assert await between("2031-01-03T21:00:00+01:00", None) == in_order("2", "3", "0")
    assert await between(None, "2031-01-02T20:00:00Z") == in_order("1")
    assert await between("2031-02-01T00:00:00Z", None) == []


# ------------------------------------------------------------------ operations


async def test_operator_endpoints(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"store": "ok", "ray": "ok"}}

    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=5))["id"]
    before = metric_samples((await api.client.get("/metrics")).text)
    booked = await api.book(customer, [event])
    assert booked.status_code == 201, booked.text
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after = metric_samples(r.text)
    created = (
        "reservation_http_requests_total",
        (("method", "POST"), ("route", "/api/orders"), ("status", "201")),
    )
    assert after[created] == before.get(created, 0) + 1
    # The booking was timed, and its group commit counted and timed.
    for grew in ("reservation_booking_seconds_count", "reservation_actor_batch_size_count",
                 "reservation_actor_commit_seconds_count"):
        assert after[(grew, ())] >= before.get((grew, ()), 0) + 1, grew

    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    spec = await api.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"post", "get"} <= paths["/api/orders"].keys()
    assert "/api/orders/{order_id}/cancel" in paths
    assert "/metrics" not in paths
