"""The actor channel on its own: framing, reply matching, the token, broken connections."""

from __future__ import annotations

import asyncio
import pickle
import random
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any

import pytest

from actors.channel import FRAME, HELLO, MAX_FRAME, Channel, ChannelClosed, ChannelServer, Endpoint
from actors.event_actor import Reply
from reservation.domain.commands import (
    Attendee,
    BookingStatus,
    BookingView,
    Code,
    Confirm,
    Hold,
    NewOrder,
    Outcome,
    one_event_order,
)


class Echo:
    """A stand-in for the actor's ``submit``: answers after a random delay."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.seen: list[list[str]] = []

    async def __call__(self, commands: list[str]) -> list[str]:
        self.seen.append(commands)
        if self.delay_s:
            await asyncio.sleep(random.uniform(0, self.delay_s))
        return [c.upper() for c in commands]


async def _served(serve: Callable[[list[Any]], Awaitable[Any]]) -> tuple[ChannelServer, Endpoint]:
    server = ChannelServer(serve, host="127.0.0.1")
    return server, await server.start()


async def test_concurrent_calls_get_their_own_replies_out_of_order() -> None:
    serve = Echo(delay_s=0.02)
    server, endpoint = await _served(serve)
    channel = await Channel.open(endpoint)
    finished: list[int] = []

    async def one(n: int) -> None:
        reply = await channel.call([f"cmd-{n}-a", f"cmd-{n}-b"], timeout_s=5)
        assert reply == [f"CMD-{n}-A", f"CMD-{n}-B"]
        finished.append(n)

    try:
        await asyncio.gather(*(one(n) for n in range(200)))
    finally:
        channel.close()
        server.close()
    assert sorted(finished) == list(range(200))
    # The control: answers really came back in another order than the calls went out,
    # so matching them by position instead of by call id would have failed above.
    assert finished != sorted(finished)


async def test_commands_pickled_beforehand_are_served_as_the_commands_themselves() -> None:
    serve = Echo()
    server, endpoint = await _served(serve)
    channel = await Channel.open(endpoint)
    try:
        payload = pickle.dumps(["early-a", "early-b"], protocol=pickle.HIGHEST_PROTOCOL)
        replies = await asyncio.gather(
            channel.call_pickled(payload, timeout_s=5), channel.call(["late"], timeout_s=5)
        )
    finally:
        channel.close()
        server.close()
    assert replies == [["EARLY-A", "EARLY-B"], ["LATE"]]
    assert sorted(serve.seen) == [["early-a", "early-b"], ["late"]]


async def test_a_connection_without_the_token_is_closed_unserved() -> None:
    serve = Echo()
    server, endpoint = await _served(serve)
    try:
        for token in (b"\0" * len(endpoint.token), endpoint.token[:-1] + bytes([endpoint.token[-1] ^ 1])):
            forged = Endpoint(endpoint.host, endpoint.port, token)
            channel = await Channel.open(forged)
            with pytest.raises(ChannelClosed):
                await channel.call(["book"], timeout_s=5)
            channel.close()
        assert serve.seen == []
        # The control: the same call with the actor's own token is served.
        channel = await Channel.open(endpoint)
        assert await channel.call(["book"], timeout_s=5) == ["BOOK"]
        channel.close()
        assert serve.seen == [["book"]]
    finally:
        server.close()


async def test_a_front_end_of_another_wire_version_is_closed_unserved(caplog: pytest.LogCaptureFixture) -> None:
    """A greeting of the version before, with the actor's own token, is refused (and
    logged with both versions): its commands would not read as this code's."""
    serve = Echo()
    server, endpoint = await _served(serve)
    payload = pickle.dumps(["book"], protocol=pickle.HIGHEST_PROTOCOL)
    try:
        for greeting, served in ((b"RSVCH1", False), (HELLO, True)):  # the current one: the control
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(greeting + endpoint.token + FRAME.pack(len(payload), 1) + payload)
            await writer.drain()
            if served:
                size, call_id = FRAME.unpack(await asyncio.wait_for(reader.readexactly(FRAME.size), 5))
                assert (call_id, pickle.loads(await reader.readexactly(size))) == (1, ["BOOK"])
            else:
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the actor
            writer.close()
        assert serve.seen == [["book"]]
        assert [r.getMessage().split(" from ")[0] for r in caplog.records if "wire version" in r.getMessage()] == [
            f"channel: refused a front end of wire version 1 (this actor's: {HELLO.decode()[-1]})"
        ]
    finally:
        server.close()


async def test_an_oversized_frame_closes_the_connection() -> None:
    serve = Echo()
    server, endpoint = await _served(serve)
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        writer.write(HELLO + endpoint.token + FRAME.pack(MAX_FRAME + 1, 1))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the actor
        assert serve.seen == []
    finally:
        writer.close()
        server.close()


async def test_calls_in_flight_fail_when_the_actor_side_goes_away() -> None:
    started = asyncio.Event()

    async def never(commands: list[str]) -> list[str]:
        started.set()
        await asyncio.sleep(3600)
        return commands

    server = ChannelServer(never, host="127.0.0.1")
    endpoint = await server.start()
    channel = await Channel.open(endpoint)
    call = asyncio.ensure_future(channel.call(["book"], timeout_s=30))
    await asyncio.wait_for(started.wait(), 5)
    server.close()  # what a stopping actor does; a dying process drops them the same way
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(call, 5)
    assert channel.closed
    with pytest.raises(ChannelClosed):
        await channel.call(["again"], timeout_s=1)


async def test_an_actors_reply_crosses_the_channel_whole() -> None:
    """Replies travel with their outcomes as plain tuples (``Reply.__reduce__``) and come
    back as the same outcomes: views, details, replays and extras."""
    outcomes = [
        Outcome(Code.OK, BookingView("b1", "o1", BookingStatus.HELD, 2, 1500, "EUR", 1_800_000_600.0, 1_800_000_000.0)),
        Outcome(Code.SOLD_OUT, detail="2 seat(s) asked, 0 available"),
        Outcome(Code.OK, BookingView("b2", "o2", BookingStatus.CONFIRMED, 1, 1500, "EUR", None, 1.5), replayed=True),
        Outcome(Code.INVALID, detail="capacity below sold", extra={"sold": 3, "held": 1}),
    ]
    sent = Reply(outcomes, [4], [0.012], stopping=True, held=2)

    async def serve(commands: list[str]) -> Reply:
        return sent

    server, endpoint = await _served(serve)
    channel = await Channel.open(endpoint)
    try:
        got = await channel.call(["one"], timeout_s=5)
    finally:
        channel.close()
        server.close()
    assert got == sent
    assert got.outcomes[0].booking.status is BookingStatus.HELD
    assert got.outcomes[3].extra == {"sold": 3, "held": 1} and got.outcomes[1].extra == {}
    # A field added to Outcome must be added to its row too (commands.outcome_rows).
    assert [f.name for f in fields(Outcome)] == ["code", "booking", "detail", "replayed", "extra"]
    # No outcome or view is pickled as an object of its own.
    data = pickle.dumps(sent, protocol=5)
    assert b"BookingView" not in data and b"Outcome" not in data


async def test_a_calls_commands_cross_the_channel_whole() -> None:
    """A one-event order's Hold and NewOrder travel as their fields' values in order, not
    as dictionaries of named fields, its attendees as the one string their booking row
    stores, and they come back equal: a Hold with and without its order, with one and
    several attendees, beside a rarer command."""
    sent: list[Any] = [
        one_event_order("o1", "a1", "e1", (Attendee("Ann O'Brien", "ann@example.com"),), 600.0, "h1", "key-1"),
        one_event_order("o2", "a2", "e1", (Attendee("Bo"), Attendee("Cy", None)), 90.5, "h2", None),
        Hold.of("hold:b3", "b3", "o3", "a3", (Attendee("Di"),), 30.0),
        Confirm("confirm:b3", "b3"),
    ]
    seen: list[Any] = []

    async def serve(commands: list[Any]) -> list[str]:
        seen.extend(commands)
        return ["ok"] * len(commands)

    server, endpoint = await _served(serve)
    channel = await Channel.open(endpoint)
    try:
        assert await channel.call(sent, timeout_s=5) == ["ok"] * 4
    finally:
        channel.close()
        server.close()
    assert seen == sent
    assert seen[0].new_order == NewOrder("o1", "a1", "h1", "key-1") and seen[1].quantity == 2
    assert seen[1].attendees == '[{"name":"Bo","email":null},{"name":"Cy","email":null}]'
    data = pickle.dumps(sent[:3], protocol=5)
    for name in ("command_id", "account_id", "attendees", "request_hash", "idempotency_key", "Attendee"):
        assert name.encode() not in data
