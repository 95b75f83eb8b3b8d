"""A rush through one in-process front end: many buyers, many keyed orders at once."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections import Counter

import httpx

from reservation.auth import Principal, Role, hash_password, issue_token
from reservation.domain.ids import new_id
from reservation.store.inventory import to_dt
from reservation.store.schema import users
from tests.conftest import Api

PASSWORD = "correct horse battery"


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


async def register_customers(api: Api, count: int) -> list[dict[str, str]]:
    """``count`` customer accounts, as ``Api.register`` answers them, made in one store write.

    Registering through HTTP costs an argon2 hash per account; the booking path under
    test only needs the account rows and valid bearer tokens.
    """
    rt = api.runtime
    now = to_dt(time.time())
    hashed = await asyncio.to_thread(_password_hash)
    ids = [new_id() for _ in range(count)]
    rows = [
        {
            "id": account_id,
            "name": f"Buyer {n}",
            "email": f"buyer-{secrets.token_hex(6)}@example.com",
            "password_hash": hashed,
            "role": Role.CUSTOMER.value,
            "created_at": now,
            "updated_at": now,
        }
        for n, account_id in enumerate(ids)
    ]
    async with rt.writer.begin() as conn:
        await conn.execute(users.insert(), rows)
    return [
        {
            "Authorization": "Bearer "
            + issue_token(Principal(account_id, Role.CUSTOMER), rt.signing_key, rt.settings.token_ttl_s),
            "X-Account": account_id,
        }
        for account_id in ids
    ]


async def rush(
    api: Api, event_ids: list[str], buyers: list[dict[str, str]], requests: int, tag: str
) -> list[httpx.Response]:
    """``requests`` concurrent one-attendee orders, each with its own Idempotency-Key."""
    return list(
        await asyncio.gather(
            *(api.book(buyers[n % len(buyers)], event_ids, key=f"{tag}-{n}") for n in range(requests))
        )
    )


async def activate(api: Api, event_ids: list[str]) -> None:
    """Start and load the events' actors, so a cold start under a loaded machine cannot
    turn into the gateway's call timeout (503) in the middle of the rush."""
    await asyncio.gather(*(api.runtime.gateway.state(e) for e in event_ids))


def summary(answers: list[httpx.Response]) -> Counter[tuple[int, str]]:
    """(status, problem type) counts, for readable assertion messages."""
    return Counter((r.status_code, r.json().get("type", "") if r.status_code != 201 else "") for r in answers)


def booking_ids(answers: list[httpx.Response], event_id: str) -> list[str]:
    return [
        i["id"]
        for r in answers
        if r.status_code == 201
        for i in r.json()["items"]
        if i["event_id"] == event_id
    ]
