"""A direct line from the front ends to an event actor, beside Ray's own calls.

Ray places, names, restarts and fences the event actors; their booking commands can
take a shorter road. Each actor listens on a TCP port of its own node, and a front end
asks the actor (one Ray call) for its ``Endpoint``: host, port and a random token made
by that actor incarnation. The front end then keeps one connection per actor and sends
its command batches as frames; answers come back on the same connection, matched by
call id, in whatever order the actor's group commits finish.

Under load this hop costs far less than a Ray actor call: no task submission and
scheduling through Ray's core worker threads on either side, just one write and one
read on sockets the two event loops already watch.

Frames are ``!IQ`` (payload length, call id) followed by a pickle. A connection must
first present the token; anything else is closed unread, so the port trusts exactly
who Ray trusts: the token is only handed out through Ray. A new incarnation makes a
new token and a new port, and a lost connection fails its calls with
``ChannelClosed`` for the caller to retry (commands are idempotent by id).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import pickle
import secrets
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

FRAME = struct.Struct("!IQ")
# A connection's greeting, then the token. Its last character is the version of what the
# frames carry, raised whenever a command's pickled form changes (2: a hold's attendees
# as text, with its seat count): a front end of other code is refused at the door
# rather than put commands the actor misreads into a batch beside others' commands.
HELLO = b"RSVCH2"
TOKEN_BYTES = 32
# Largest frame either side accepts: far above a full batch of large orders.
MAX_FRAME = 64 * 1024 * 1024
HELLO_TIMEOUT_S = 5.0


class ChannelClosed(ConnectionError):
    """The connection to the actor is gone; the call may or may not have run."""


class FrameTooLarge(ValueError):
    """A frame announced more than MAX_FRAME bytes: the connection is closed unread."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    token: bytes


def node_address() -> str:
    """The address this node is known by in the Ray cluster (127.0.0.1 when local)."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.util.get_node_ip_address())
    except Exception:  # not under Ray: tests drive the actor class directly
        pass
    return "127.0.0.1"


class _Outbox:
    """Frames for one connection, written together once per event-loop turn.

    The answers of one group commit (or the calls a front end makes in one turn) all
    become ready in the same turn: one write for all of them rather than one each.
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._frames: list[bytes] = []

    def send(self, call_id: int, data: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(FRAME.pack(len(data), call_id))
        self._frames.append(data)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames and not self._writer.is_closing():
            self._writer.writelines(frames)


class ChannelServer:
    """The actor's side: answers each frame with ``serve(commands)``."""

    def __init__(self, serve: Callable[[list[Any]], Awaitable[Any]], host: str | None = None) -> None:
        self._serve = serve
        self._host = host
        self._token = secrets.token_bytes(TOKEN_BYTES)
        self._server: asyncio.Server | None = None
        self._endpoint: Endpoint | None = None
        self._starting = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Endpoint:
        async with self._starting:  # concurrent first callers share one listener
            if self._endpoint is None:
                host = self._host or node_address()
                self._server = await asyncio.start_server(self._client, host, 0)
                port = self._server.sockets[0].getsockname()[1]
                self._endpoint = Endpoint(host, int(port), self._token)
        return self._endpoint

    def close(self) -> None:
        """Stop listening and drop every connection: callers retry with the successor."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            hello = await asyncio.wait_for(reader.readexactly(len(HELLO) + TOKEN_BYTES), HELLO_TIMEOUT_S)
            greeting, token = hello[: len(HELLO)], hello[len(HELLO) :]
            if greeting[:-1] != HELLO[:-1] or not hmac.compare_digest(token, self._token):
                log.warning("channel: refused a connection without the token from %s", _peer(writer))
                return
            if greeting != HELLO:  # a front end with the token, of other code
                log.warning(
                    "channel: refused a front end of wire version %s (this actor's: %s) from %s; "
                    "restart the front ends on this code",
                    chr(greeting[-1]), chr(HELLO[-1]), _peer(writer),
                )  # fmt: skip
                return
            outbox = _Outbox(writer)
            while True:
                call_id, commands = await _read_frame(reader)
                task = asyncio.get_running_loop().create_task(self._answer(writer, outbox, call_id, commands))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except FrameTooLarge as exc:
            log.warning("channel: %s from %s; closing", exc, _peer(writer))
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(
        self, writer: asyncio.StreamWriter, outbox: _Outbox, call_id: int, commands: list[Any]
    ) -> None:
        reply = await self._serve(commands)
        if writer.is_closing():
            return  # the caller is gone; it retries these ids elsewhere
        # Whole frames only, so they never interleave. Not drained: a front end has at
        # most a few calls in flight per actor.
        outbox.send(call_id, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


class Channel:
    """The front end's side: one connection to one actor incarnation."""

    def __init__(self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.endpoint = endpoint
        self._reader = reader
        self._writer = writer
        self._outbox = _Outbox(writer)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._closed: BaseException | None = None
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout_s: float = 5.0) -> Channel:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port), timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise ChannelClosed(f"cannot reach the actor at {endpoint.host}:{endpoint.port}: {exc}") from exc
        writer.write(HELLO + endpoint.token)
        return cls(endpoint, reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def call(self, commands: list[Any], timeout_s: float) -> Any:
        """Send ``commands``; the actor's reply, or ChannelClosed / TimeoutError."""
        return await self.call_pickled(pickle.dumps(commands, protocol=pickle.HIGHEST_PROTOCOL), timeout_s)

    async def call_pickled(self, payload: bytes, timeout_s: float) -> Any:
        """``call`` with the commands pickled already (``pickle.dumps`` of the list)."""
        if self._closed is not None:
            raise ChannelClosed(str(self._closed))
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self._outbox.send(call_id, payload)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._calls.pop(call_id, None)

    def close(self) -> None:
        self._fail(ChannelClosed("closed"))
        self._reading.cancel()
        self._writer.close()

    async def _read(self) -> None:
        reader = self._reader
        try:
            while True:
                call_id, reply = await _read_frame(reader)
                future = self._calls.get(call_id)
                if future is not None and not future.done():
                    future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(ChannelClosed(f"connection to the actor lost: {exc!r}"))
            self._writer.close()

    def _fail(self, exc: ChannelClosed) -> None:
        if self._closed is None:
            self._closed = exc
        for future in self._calls.values():
            if not future.done():
                future.set_exception(exc)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """The next frame's call id and unpickled payload; FrameTooLarge past MAX_FRAME."""
    size, call_id = FRAME.unpack(await reader.readexactly(FRAME.size))
    if size > MAX_FRAME:
        raise FrameTooLarge(f"frame of {size} bytes")
    return call_id, pickle.loads(await reader.readexactly(size))


def _peer(writer: asyncio.StreamWriter) -> str:
    return str(writer.get_extra_info("peername"))
