"""The front ends' transport: the writes of one loop pass leave as one, in order, and
nothing written is lost on close (over a real local TCP connection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from reservation.api.http import CoalescingTransport


class Recording:
    """Forwards to a real transport and keeps what each ``write`` was given."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[CoalescingTransport, Recording, asyncio.Future[bytes]]]:
    """A coalescing transport on a real connection to a local server, what reaches the
    real transport, and everything the server received once the connection closed."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.read())
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1])
        real = Recording(transport)  # type: ignore[arg-type]
        yield CoalescingTransport(real, loop), real, got  # type: ignore[arg-type]


async def test_writes_of_one_pass_leave_as_one_write_in_order() -> None:
    async with connected() as (coalescing, real, got):
        coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        coalescing.write(b"{}")
        assert real.writes == []  # nothing leaves before the pass ends
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]

        coalescing.write(b"second")
        await asyncio.sleep(0)
        coalescing.write(b" third")
        coalescing.close()  # what is still pending goes out before the close
        assert real.writes[1:] == [b"second", b" third"]
        assert await asyncio.wait_for(got, 5) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}second third"


async def test_abort_drops_what_is_pending() -> None:
    async with connected() as (coalescing, real, got):
        coalescing.write(b"sent")
        await asyncio.sleep(0)
        coalescing.write(b"never")
        coalescing.abort()
        await asyncio.sleep(0)
        assert real.writes == [b"sent"]
        assert not (await asyncio.wait_for(got, 5)).endswith(b"never")


def test_the_server_uses_the_coalescing_protocol_unless_turned_off() -> None:
    from reservation.api.http import CoalescingHttpToolsProtocol
    from reservation.cli import http_protocol
    from reservation.config import Settings

    assert http_protocol(Settings()) is CoalescingHttpToolsProtocol
    assert http_protocol(Settings(coalesce_writes=False)) == "auto"
