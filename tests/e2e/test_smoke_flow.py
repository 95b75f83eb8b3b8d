"""The basic customer and host flow through the HTTP API, on both stores."""

from __future__ import annotations

from tests.conftest import Api, auth


async def test_book_list_cancel(api: Api) -> None:
    host = await api.register("host")
    customer = await api.register("customer")
    a = await api.create_event(host, capacity=5)
    b = await api.create_event(host, capacity=5, title="Theatre")
    r = await api.book(customer, [a["id"], b["id"]], attendees=3, key="k1")
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "confirmed"
    assert order["total"] == {"amount": 6 * 2500, "currency": "EUR"}
    assert sorted(i["event_id"] for i in order["items"]) == sorted([a["id"], b["id"]])
    single = await api.book(customer, [a["id"]], attendees=2, key="k2")
    assert single.status_code == 201, single.text
    mine = await api.client.get("/api/orders", headers=auth(customer))
    assert mine.status_code == 200
    assert {o["id"] for o in mine.json()["items"]} == {order["id"], single.json()["id"]}
    full = await api.book(customer, [a["id"]], attendees=1)
    assert full.status_code == 409, full.text
    assert full.headers["content-type"].startswith("application/problem+json")
    assert full.json()["type"] == "/problems/sold-out"
    c = await api.client.post(f"/api/orders/{order['id']}/cancel", headers=auth(customer))
    assert c.status_code == 200, c.text
    assert c.json()["status"] == "cancelled"
    assert all(i["status"] == "cancelled" for i in c.json()["items"])
    again = await api.book(customer, [a["id"]], attendees=3)
    assert again.status_code == 201, again.text
