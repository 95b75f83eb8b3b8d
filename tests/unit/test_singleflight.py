"""SingleFlight: concurrent loads of one key run once; other keys and later calls load anew."""

from __future__ import annotations

import asyncio

import pytest

from reservation.singleflight import SingleFlight


async def test_concurrent_callers_of_one_key_share_one_load() -> None:
    flights: SingleFlight[str] = SingleFlight()
    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        await asyncio.sleep(0.01)
        return key.upper()

    answers = await asyncio.gather(
        *(flights.run("a", lambda: load("a")) for _ in range(5)), flights.run("b", lambda: load("b"))
    )
    assert answers == ["A"] * 5 + ["B"]
    assert sorted(loads) == ["a", "b"]  # one load per key, not one per caller
    assert await flights.run("a", lambda: load("a")) == "A"
    assert sorted(loads) == ["a", "a", "b"]  # a finished load is not remembered


async def test_every_waiter_gets_the_loads_exception() -> None:
    flights: SingleFlight[str] = SingleFlight()

    async def failing() -> str:
        await asyncio.sleep(0.01)
        raise LookupError("down")

    results = await asyncio.gather(*(flights.run("k", failing) for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [LookupError] * 3
    with pytest.raises(LookupError):
        await flights.run("k", failing)
