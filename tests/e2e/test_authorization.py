"""Who may see and change what, through the HTTP API, on both stores (invariant 5).

An account sees and changes only its own orders (foreign and unknown ids answer the
same 404, leaking nothing); requests without a valid bearer token answer 401; only
hosts create events and only an event's host changes it or sees its inventory figures.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import jwt
import orjson

from reservation.auth import Principal, Role, issue_token
from reservation.domain.ids import new_id, order_id_for_key
from tests.conftest import Api, account, assert_problem, auth

PROBLEM = "application/problem+json"
HOST_FIELDS = {"capacity", "oversell_capacity", "sold", "held"}


def assert_unauthorized(r: httpx.Response) -> None:
    assert_problem(r, 401, "unauthorized")
    assert r.headers.get("www-authenticate") == "Bearer", r.headers


# ------------------------------------------------------------------------ orders


async def test_foreign_and_unknown_orders_answer_404_without_leaking(api: Api) -> None:
    host = await account(api, "host")
    alice, bob = await account(api), await account(api)
    event = (await api.create_event(host, capacity=3))["id"]
    secret = {"name": "Alice Secretname", "email": "alice.secret@example.com"}
    placed = await api.client.post(
        "/api/orders", json={"items": [{"event_id": event, "attendees": [secret]}]}, headers=auth(alice)
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    mine = await api.book(bob, [event])
    assert mine.status_code == 201, mine.text
    # A refused (sold-out) attempt is stored for replays but is nobody's order.
    refused = await api.book(alice, [event], attendees=5, key="too-many")
    assert_problem(refused, 409, "sold-out")
    refused_id = order_id_for_key(alice["X-Account"], "too-many")

    leaks = (order["id"], event, alice["X-Account"], secret["name"], secret["email"])
    unknown = new_id()
    for who, order_id in ((bob, order["id"]), (bob, unknown), (alice, unknown), (alice, refused_id)):
        for r in (
            await api.client.get(f"/api/orders/{order_id}", headers=auth(who)),
            await api.client.post(f"/api/orders/{order_id}/cancel", headers=auth(who)),
        ):
            body = assert_problem(r, 404, "not-found")
            assert not [value for value in leaks if value in r.text], body

    # Alice's order is untouched by Bob's attempts.
    again = await api.client.get(f"/api/orders/{order['id']}", headers=auth(alice))
    assert again.status_code == 200, again.text
    assert again.json() == order
    assert order["status"] == "confirmed"
    assert order["items"][0]["attendees"] == [secret]
    view = await api.client.get(f"/api/events/{event}", headers=auth(host))
    assert (view.json()["sold"], view.json()["held"]) == (2, 0)

    # Each list holds the caller's own orders only.
    listed = {}
    for name, who in (("alice", alice), ("bob", bob)):
        r = await api.client.get("/api/orders", headers=auth(who))
        assert r.status_code == 200, r.text
        listed[name] = [o["id"] for o in r.json()["items"]]
    assert listed == {"alice": [order["id"]], "bob": [mine.json()["id"]]}
    r = await api.client.get("/api/orders", headers=auth(host))
    assert r.status_code == 200, r.text
    assert r.json()["items"] == []


# ------------------------------------------------------------------------ tokens


def forged(payload: dict[str, Any], key: str, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def unsigned(payload: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


async def test_an_address_is_one_account_whatever_its_letter_case_and_only_its_own(api: Api) -> None:
    """Addresses are stored in lower case, so one differing only in case is the same
    account (409); one differing in an accent is another mailbox and another account, on
    both stores (MariaDB's default collation took ``zoë`` for ``zoe``)."""
    tag = new_id()[-12:]
    password = {"zoë": "first password 1", "zoe": "second password 2"}
    first = await api.client.post(
        "/api/users",
        json={"name": "Zoë", "email": f"Zoë.{tag}@Example.com", "password": password["zoë"], "role": "customer"},
    )
    assert first.status_code == 201, first.text
    same = await api.client.post(
        "/api/users",
        json={"name": "Zoë", "email": f"ZOË.{tag}@example.COM", "password": "a third one 3", "role": "customer"},
    )
    assert_problem(same, 409, "conflict")
    other = await api.client.post(
        "/api/users",
        json={"name": "Zoe", "email": f"zoe.{tag}@example.com", "password": password["zoe"], "role": "customer"},
    )
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]
    for name, registered in (("zoë", first), ("zoe", other)):
        token = await api.client.post(
            "/api/tokens", json={"email": f"{name.upper()}.{tag}@example.com", "password": password[name]}
        )
        assert token.status_code == 201, token.text
        assert token.json()["account_id"] == registered.json()["id"]


async def test_requests_without_a_valid_token_answer_401(api: Api) -> None:
    # A real registration and login: the token it gives works.
    customer = await api.register("customer")
    me = await api.client.get("/api/users/me", headers=auth(customer))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == customer["X-Account"]
    wrong = await api.client.post(
        "/api/tokens", json={"email": me.json()["email"], "password": "not the password"}
    )
    assert_unauthorized(wrong)
    assert "access_token" not in wrong.text

    key = api.runtime.signing_key
    now = int(time.time())
    account_id = customer["X-Account"]
    claims = {"sub": account_id, "role": "customer", "iat": now, "exp": now + 600}
    bad_tokens = {
        "garbage": "not-a-token",
        "expired": issue_token(Principal(account_id, Role.CUSTOMER), key, 60, now=now - 3600),
        "other key": forged(claims, "some-other-secret-key-" + "y" * 32),
        "alg none": unsigned(claims),
        "unknown role": forged({**claims, "role": "admin"}, key),
        "no expiry": forged({k: v for k, v in claims.items() if k != "exp"}, key),
        "tampered": issue_token(Principal(account_id, Role.CUSTOMER), key, 600)[:-4] + "AAAA",
    }
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/orders", None),
        ("POST", "/api/orders", {"items": [{"event_id": new_id(), "attendees": [{"name": "X"}]}]}),
        ("GET", f"/api/orders/{new_id()}", None),
        ("POST", f"/api/orders/{new_id()}/cancel", None),
        ("GET", "/api/users/me", None),
    ]
    for method, path, body in requests:
        assert_unauthorized(await api.client.request(method, path, json=body))
        basic = {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()}
        assert_unauthorized(await api.client.request(method, path, json=body, headers=basic))
        for name, token in bad_tokens.items():
            r = await api.client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 401, (name, method, path, r.text)
            assert_unauthorized(r)
    # Creating events needs a host's token; without one it is 401 before anything else.
    assert_unauthorized(await api.client.post("/api/events", json={}))


# ------------------------------------------------------------------------ events


async def test_hosts_manage_and_see_inventory_of_their_own_events_only(api: Api) -> None:
    host_a, host_b = await account(api, "host"), await account(api, "host")
    customer = await account(api)
    event = await api.create_event(host_a, capacity=10, oversell_capacity=2, title="Host A's gig")
    assert HOST_FIELDS <= event.keys()

    # A customer cannot create events.
    body = {
        "title": "Customer's party",
        "venue": "Garage",
        "starts_at": "2030-07-01T20:00:00Z",
        "ends_at": "2030-07-01T23:00:00Z",
        "capacity": 10,
        "price": {"amount": 100, "currency": "EUR"},
    }
    assert_problem(await api.client.post("/api/events", json=body, headers=auth(customer)), 403, "forbidden")
    found = await api.client.get("/api/events", params={"q": "Customer's party"})
    assert found.json()["items"] == []

    # Another host's event answers like an unknown one (404); a customer may manage no event (403).
    for who, status, kind in ((host_b, 404, "not-found"), (customer, 403, "forbidden")):
        for change in ({"title": "Hijacked"}, {"capacity": 1000}, {"status": "paused"}):
            r = await api.client.patch(f"/api/events/{event['id']}", json=change, headers=auth(who))
            assert_problem(r, status, kind)
    r = await api.client.patch(f"/api/events/{new_id()}", json={"title": "Ghost"}, headers=auth(host_b))
    assert_problem(r, 404, "not-found")

    booked = await api.book(customer, [event["id"]], attendees=3)
    assert booked.status_code == 201, booked.text
    # The event's own host may change it, and sees the inventory figures.
    changed = await api.client.patch(
        f"/api/events/{event['id']}", json={"title": "Renamed"}, headers=auth(host_a)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Renamed"

    api.runtime.events_cache.invalidate()
    own = await api.client.get(f"/api/events/{event['id']}", headers=auth(host_a))
    assert own.status_code == 200, own.text
    assert {k: own.json()[k] for k in HOST_FIELDS} == {
        "capacity": 10,
        "oversell_capacity": 2,
        "sold": 3,
        "held": 0,
    }
    assert own.json()["title"] == "Renamed"
    # Everyone else reads the public view (the same cached row, without the figures).
    for headers in (auth(host_b), auth(customer), {}):
        r = await api.client.get(f"/api/events/{event['id']}", headers=headers)
        assert r.status_code == 200, r.text
        assert not HOST_FIELDS & r.json().keys(), r.json()
        assert r.json()["availability"]["remaining"] == 12 - 3
    listed = await api.client.get("/api/events", params={"q": "Renamed"}, headers=auth(host_a))
    assert listed.status_code == 200, listed.text
    assert [e["id"] for e in listed.json()["items"] if e["id"] == event["id"]] == [event["id"]]
    assert all(not HOST_FIELDS & e.keys() for e in listed.json()["items"])
