"""The hot routes keep the API's contract whether they are answered beneath FastAPI or by it.

Every test here runs twice: with ``hot_routes`` on (the default, ``reservation/api/hot.py``
answers GET /healthz, POST /api/orders and the public event reads) and off (FastAPI's
routes answer everything). The same requests must get the same statuses, problem types,
headers and bodies, and the test checks which layer actually answered.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import ray

from reservation.api.app import create_app
from reservation.api.hot import ReservationApp
from reservation.domain.ids import new_id
from tests.conftest import Api, account, assert_problem, auth, metric_samples, open_api


@pytest.fixture(params=[True, False], ids=["hot", "fastapi"])
async def served(
    request: pytest.FixtureRequest, sqlite_url: str, ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Api, list[str]]]:
    """A front end with hot routes on or off, and the paths the hot layer answered."""
    answered: list[str] = []
    serve = ReservationApp._serve

    async def spy(self: ReservationApp, found: Any, scope: Any, receive: Any, send: Any, param: str) -> bool:
        done = await serve(self, found, scope, receive, send, param)
        if done:
            answered.append(f"{scope['method']} {found[0]}")
        return done

    monkeypatch.setattr(ReservationApp, "_serve", spy)
    namespace = ray.get_runtime_context().namespace
    async with open_api(sqlite_url, tmp_path, ray_namespace=namespace, hot_routes=request.param) as api:
        yield api, answered


def hot(served: tuple[Api, list[str]]) -> bool:
    return bool(served[0].runtime.settings.hot_routes)


def order_body(*event_ids: str, attendees: int = 1) -> dict[str, Any]:
    return {
        "items": [{"event_id": e, "attendees": [{"name": f"Guest {n}"} for n in range(attendees)]} for e in event_ids]
    }


async def test_booking_contract(served: tuple[Api, list[str]]) -> None:
    api, answered = served
    host, customer = await account(api, "host"), await account(api)
    event = await api.create_event(host, capacity=3, oversell_capacity=0)
    post = api.client.post
    headers = {**auth(customer), "Idempotency-Key": "contract-1"}
    before = metric_samples((await api.client.get("/metrics")).text)

    first = await post("/api/orders", json=order_body(event["id"], attendees=2), headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    order = first.json()
    assert set(order) == {"id", "status", "total", "created_at", "items"}
    assert order["status"] == "confirmed" and order["total"] == {"amount": 5000, "currency": "EUR"}
    assert order["created_at"].endswith("Z")
    (item,) = order["items"]
    assert set(item) == {"id", "event_id", "status", "quantity", "unit_price", "attendees"}
    assert (item["event_id"], item["status"], item["quantity"]) == (event["id"], "confirmed", 2)
    assert item["attendees"] == [{"name": "Guest 0", "email": None}, {"name": "Guest 1", "email": None}]

    # The replay answers the same bytes' meaning; the same key with another body is refused.
    replay = await post("/api/orders", json=order_body(event["id"], attendees=2), headers=headers)
    assert replay.status_code == 201 and replay.json() == order
    assert_problem(
        await post("/api/orders", json=order_body(event["id"]), headers=headers), 422, "idempotency-mismatch"
    )
    sold_out = await post("/api/orders", json=order_body(event["id"], attendees=2), headers=auth(customer))
    assert assert_problem(sold_out, 409, "sold-out")["event_id"] == event["id"]
    assert_problem(await post("/api/orders", json=order_body(new_id()), headers=auth(customer)), 404, "not-found")

    after = metric_samples((await api.client.get("/metrics")).text)
    created = ("reservation_http_requests_total", (("method", "POST"), ("route", "/api/orders"), ("status", "201")))
    refused = ("reservation_http_requests_total", (("method", "POST"), ("route", "/api/orders"), ("status", "409")))
    assert after[created] - before.get(created, 0) == 2
    assert after[refused] - before.get(refused, 0) == 1
    assert answered.count("POST /api/orders") == (5 if hot(served) else 0)


async def test_refused_bookings(served: tuple[Api, list[str]]) -> None:
    api, answered = served
    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=5))["id"]
    post = api.client.post
    body = order_body(event)

    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        r = await post("/api/orders", json=body, headers=headers)
        assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    long_key = {**auth(customer), "Idempotency-Key": "k" * 256}
    assert (
        "Idempotency-Key"
        in assert_problem(await post("/api/orders", json=body, headers=long_key), 422, "invalid-request")["detail"]
    )
    for bad, field in (
        ({**body, "discount": 5}, "discount"),
        ({"items": []}, "items"),
        ({"items": [{"event_id": event, "attendees": []}]}, "attendees"),
        ({"items": [{"event_id": event, "attendees": [{"name": "A", "email": "not-an-email"}]}]}, "email"),
    ):
        problem = assert_problem(await post("/api/orders", json=bad, headers=auth(customer)), 422, "invalid-request")
        assert any(field in e["loc"] for e in problem["errors"]), problem
        assert all(e["loc"][0] == "body" and {"loc", "msg", "type"} <= e.keys() for e in problem["errors"]), problem
    twice = {"items": [*body["items"], *body["items"]]}
    problem = assert_problem(await post("/api/orders", json=twice, headers=auth(customer)), 422, "invalid-request")
    assert "once" in problem["errors"][0]["msg"]
    not_json = await post(
        "/api/orders", content=b"{not json", headers={**auth(customer), "Content-Type": "application/json"}
    )
    assert_problem(not_json, 422, "invalid-request")
    as_text = await post(
        "/api/orders", content=b'{"items": []}', headers={**auth(customer), "Content-Type": "text/plain"}
    )
    assert_problem(as_text, 422, "invalid-request")
    limit = api.runtime.settings.max_body_bytes
    big = order_body(event) | {"items": [{"event_id": event, "attendees": [{"name": "x" * 150}] * (limit // 150 + 1)}]}
    too_big = await post("/api/orders", json=big, headers=auth(customer))
    assert str(limit) in assert_problem(too_big, 413, "body-too-large")["detail"]

    # Nothing above booked a seat.
    api.runtime.events_cache.invalidate()
    view = (await api.client.get(f"/api/events/{event}", headers=auth(host))).json()
    assert (view["sold"], view["held"]) == (0, 0)
    assert len([a for a in answered if a == "POST /api/orders"]) == (12 if hot(served) else 0)


async def test_a_request_with_several_faults_gets_the_same_answer_from_both_layers(
    served: tuple[Api, list[str]],
) -> None:
    """The first fault found decides: body size, JSON syntax, token, key, content type, fields."""
    api, answered = served
    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=5))["id"]
    limit = api.runtime.settings.max_body_bytes
    big = {"items": [{"event_id": event, "attendees": [{"name": "x" * 150}] * (limit // 150 + 1)}]}
    as_json = {"Content-Type": "application/json"}
    as_text = {"Content-Type": "text/plain"}
    long_key = {"Idempotency-Key": "k" * 256}
    keyed = {**auth(customer), **long_key}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("too large, no token", {"json": big}, 413, "body-too-large"),
        ("too large, bad key", {"json": big, "headers": keyed}, 413, "body-too-large"),
        ("not JSON, no token", {"content": b"{not json", "headers": as_json}, 422, "body"),
        ("not JSON, bad key", {"content": b"{not json", "headers": {**keyed, **as_json}}, 422, "body"),
        ("bad fields, no token", {"json": {"items": []}}, 401, "unauthorized"),
        ("text, no token", {"content": b'{"items": []}', "headers": as_text}, 401, "unauthorized"),
        ("good body, no token, bad key", {"json": order_body(event), "headers": long_key}, 401, "unauthorized"),
        ("bad fields, bad key", {"json": {"items": []}, "headers": keyed}, 422, "key"),
        ("text, bad key", {"content": b"{}", "headers": {**keyed, **as_text}}, 422, "key"),
        ("no content type", {"content": b'{"items": []}', "headers": auth(customer)}, 422, "body"),
        ("bad fields", {"json": {"items": []}, "headers": auth(customer)}, 422, "body"),
    ]
    for label, request, status, fault in cases:
        r = await api.client.post("/api/orders", **request)
        if fault in ("body-too-large", "unauthorized"):
            assert_problem(r, status, fault)
            continue
        problem = assert_problem(r, status, "invalid-request")
        if fault == "key":
            assert "Idempotency-Key" in problem["detail"], (label, problem)
        else:
            assert problem["errors"][0]["loc"][0] == "body", (label, problem)
    assert len([a for a in answered if a == "POST /api/orders"]) == (len(cases) if hot(served) else 0)


async def test_reads_and_probe(served: tuple[Api, list[str]]) -> None:
    api, answered = served
    host, customer = await account(api, "host"), await account(api)
    tag = new_id()[-8:]
    ids = [
        (
            await api.create_event(
                host,
                title=f"Read {tag} {n}",
                starts_at=f"2031-02-0{n + 1}T20:00:00Z",
                ends_at=f"2031-02-0{n + 1}T23:00:00Z",
            )
        )["id"]
        for n in range(3)
    ]
    get = api.client.get

    health = await get("/healthz")
    assert (health.status_code, health.json(), health.headers["content-type"]) == (
        200,
        {"status": "ok"},
        "application/json",
    )

    public = await get(f"/api/events/{ids[0]}")
    assert public.status_code == 200 and public.headers["content-type"] == "application/json"
    assert public.json()["id"] == ids[0] and "sold" not in public.json()
    as_customer = await get(f"/api/events/{ids[0]}", headers=auth(customer))
    assert as_customer.json() == public.json()
    as_host = await get(f"/api/events/{ids[0]}", headers=auth(host))
    assert as_host.status_code == 200 and {"sold", "held", "capacity"} <= as_host.json().keys()
    assert_problem(await get(f"/api/events/{new_id()}"), 404, "not-found")
    bad_token = await get(f"/api/events/{ids[0]}", headers={"Authorization": "Bearer nope"})
    assert_problem(bad_token, 401, "unauthorized")

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"page_size": 2} | ({"cursor": cursor} if cursor else {})
        page = await get("/api/events", params=params)
        assert page.status_code == 200 and page.headers["content-type"] == "application/json", page.text
        seen += [e["id"] for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in ids] == ids
    for params in ({"page_size": 0}, {"page_size": 101}, {"page_size": "x"}, {"cursor": "!!!"}):
        assert_problem(await get("/api/events", params=params), 422, "invalid-request")
    searched = await get("/api/events", params={"q": f"Read {tag} 1", "page_size": 5})
    assert [e["id"] for e in searched.json()["items"]] == [ids[1]]

    if hot(served):
        assert "GET /healthz" in answered
        assert answered.count("GET /api/events/{event_id}") == 4  # the host's own view went to FastAPI
        assert "GET /api/events" in answered
    else:
        assert answered == []


async def _raw_get(api: Api, path: str, accept: str, **params: Any) -> tuple[httpx.Headers, bytes]:
    """An answer's headers and its bytes as they came over the wire (not decoded)."""
    headers = {"Accept-Encoding": accept}
    async with api.client.stream("GET", path, headers=headers, params=params) as r:
        assert r.status_code == 200
        return r.headers, b"".join([chunk async for chunk in r.aiter_raw()])


async def test_public_reads_are_gzipped_for_clients_that_accept_it(served: tuple[Api, list[str]]) -> None:
    api, answered = served
    host = await account(api, "host")
    tag = new_id()[-8:]
    long = await api.create_event(host, title=f"Zip {tag}", description="A long evening of music. " * 60)
    short = await api.create_event(host, title=f"Zip {tag} short")
    for n in range(4):
        await api.create_event(host, title=f"Zip {tag} {n}")

    for path, params in ((f"/api/events/{long['id']}", {}), ("/api/events", {"page_size": 6})):
        plain_headers, plain = await _raw_get(api, path, "identity", **params)
        assert "content-encoding" not in plain_headers and plain_headers["vary"] == "Accept-Encoding"
        zipped_headers, zipped = await _raw_get(api, path, "br;q=1, gzip;q=0.5", **params)
        assert zipped_headers["content-encoding"] == "gzip" and zipped_headers["vary"] == "Accept-Encoding"
        assert zipped_headers["content-type"] == "application/json"
        assert int(zipped_headers["content-length"]) == len(zipped) < len(plain) / 4
        assert gzip.decompress(zipped) == plain
        refused_headers, refused = await _raw_get(api, path, "gzip;q=0, *", **params)
        assert "content-encoding" not in refused_headers and refused == plain
    assert len(orjson.loads(plain)["items"]) == 6

    # Small answers go as they are, whatever the client accepts.
    for path in (f"/api/events/{short['id']}", "/healthz"):
        small_headers, small = await _raw_get(api, path, "gzip")
        assert "content-encoding" not in small_headers and "vary" not in small_headers
        assert orjson.loads(small)
    assert answered.count("GET /api/events") == (3 if hot(served) else 0)


async def test_hot_layer_leaves_other_routes_to_fastapi(served: tuple[Api, list[str]]) -> None:
    api, answered = served
    customer = await account(api)
    r = await api.client.get("/api/orders", headers=auth(customer))
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    assert_problem(await api.client.put("/api/orders", json={}, headers=auth(customer)), 405, "method-not-allowed")
    assert_problem(await api.client.get("/api/events/x/y"), 404, "not-found")
    spec = (await api.client.get("/openapi.json")).json()
    assert spec["paths"]["/api/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert answered == []


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), ConnectionRefusedError("store gone")], ids=["runtime", "connection"]
)
async def test_unexpected_errors_answer_500_problem(
    served: tuple[Api, list[str]], monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """An error nobody expected is still answered (never a hung request), as a problem."""
    api, _ = served
    host, customer = await account(api, "host"), await account(api)
    event = (await api.create_event(host, capacity=5))["id"]

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    # What both layers' booking path calls. Starlette re-raises an unhandled error to the
    # server after answering it (for its log), so this client does not pass it on.
    monkeypatch.setattr(api.runtime.gateway, "execute", failing)
    transport = httpx.ASGITransport(app=create_app(runtime=api.runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.post("/api/orders", json=order_body(event), headers=auth(customer))
    assert_problem(r, 500, "internal")
