"""The front end's way to the event actors: find or start them, and batch calls.

Per event and per front-end process at most ``calls_in_flight`` actor calls are in
flight. Commands that arrive meanwhile wait in a bounded queue and all go in the next
call, so a hot event costs a few actor calls per round trip rather than one per
request, and the actor's next group commit finds this process's new commands queued
while the previous batch is committing. When the queue is full the caller is told to
come back later (503, Retry-After).

Calls travel over each actor's own channel (``actors.channel``) by default, or as Ray
actor calls with ``transport="ray"``. Either way Ray finds, starts and restarts the
actors, and a call that meets a dead actor or a broken connection is sent again to
its successor: commands are idempotent by id.

Each event actor is a process, so a node runs only as many as its memory holds. An
actor reserves ``actor_memory_bytes`` of Ray's ``memory`` resource; when no node has
that much left, Ray keeps the new actor pending (an autoscaling cluster adds a node
for it) and the request is answered 503 ``unavailable`` with Retry-After once the call
timeout passes, while the running events carry on. Meanwhile an actor that has been
idle for ``idle_when_full_s`` stops and gives its room up, one per actor waiting
(``EventActor``, ``give_room``). Without
the bound, a node asked for more events than it can hold starts actor processes
until it runs out of CPU and memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.channel import Channel, ChannelClosed
from actors.event_actor import EventActor, Reply
from reservation.domain.commands import Command, Outcome
from reservation.errors import Overloaded, StoreUnavailable, Unavailable
from reservation.singleflight import SingleFlight

log = logging.getLogger(__name__)

ACTOR_NAME_PREFIX = "event:"
RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0)

RemoteEventActor = ray.remote(EventActor)


def actor_name(event_id: str) -> str:
    return ACTOR_NAME_PREFIX + event_id


@dataclass(slots=True)
class _Lane:
    queue: list[tuple[Command, asyncio.Future[Outcome]]] = field(default_factory=list)
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    database_url: str
    namespace: str = "reservation"
    max_queue_per_event: int = 20_000
    max_batch: int = 2_000
    calls_in_flight: int = 8
    # "direct": commands go over the actor's own channel (actors.channel); "ray": as
    # Ray actor calls. Both find, start and restart actors through Ray.
    transport: str = "direct"
    call_timeout_s: float = 10.0
    idle_s: float = 900.0
    # Ray memory each event actor reserves (0: none): what bounds the event actors a
    # node runs. Actors that find no room wait, pending, until another stops.
    actor_memory_bytes: int = 0
    idle_when_full_s: float = 60.0
    retry_after_s: int = 1


class InventoryGateway:
    """Sends inventory commands to event actors, coalescing them per event."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        actor_class: Any = None,
        on_reply: Callable[[str, Reply, int], None] | None = None,
    ) -> None:
        self.config = config
        self._actor_class = actor_class or RemoteEventActor
        self._on_reply = on_reply
        self._lanes: dict[str, _Lane] = {}
        self._handles: dict[str, Any] = {}
        self._channels: dict[str, Channel] = {}
        self._opening: SingleFlight[Channel] = SingleFlight()
        self._pumps: set[asyncio.Task[None]] = set()

    def queue_depth(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    async def execute(self, event_id: str, commands: list[Command]) -> list[Outcome]:
        """Run commands on the event's actor; answers come back in order."""
        lane = self._lanes.get(event_id)
        if lane is None:
            lane = self._lanes[event_id] = _Lane()
        if len(lane.queue) + len(commands) > self.config.max_queue_per_event:
            raise Overloaded(
                "too many requests are waiting for this event",
                retry_after=self.config.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        lane.queue.extend(zip(commands, futures, strict=True))
        if lane.in_flight < self.config.calls_in_flight:
            lane.in_flight += 1
            task = loop.create_task(self._pump(event_id, lane))
            self._pumps.add(task)  # keep a reference until it finishes
            task.add_done_callback(self._pumps.discard)
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def _pump(self, event_id: str, lane: _Lane) -> None:
        try:
            while lane.queue:
                batch, lane.queue = lane.queue[: self.config.max_batch], lane.queue[self.config.max_batch :]
                try:
                    reply = await self._call(event_id, [c for c, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                if self._on_reply is not None:
                    self._on_reply(event_id, reply, len(batch))
                for (_, fut), outcome in zip(batch, reply.outcomes, strict=True):
                    if not fut.done():
                        fut.set_result(outcome)
        finally:
            # No await between the last queue check and this: nothing can slip in.
            lane.in_flight -= 1
            if not lane.queue and not lane.in_flight:
                self._lanes.pop(event_id, None)

    async def _call(self, event_id: str, commands: list[Command]) -> Reply:
        """One actor call, retried on actor death; commands are idempotent by id."""
        last: Exception | None = None
        for delay in (0.0, *RETRY_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            try:
                if self.config.transport == "direct":
                    channel = await self._channel(event_id)
                    reply: Reply = await channel.call(commands, self.config.call_timeout_s)
                else:
                    handle = await self._handle(event_id)
                    reply = await asyncio.wait_for(handle.submit.remote(commands), self.config.call_timeout_s)
            except (RayActorError, ValueError, ChannelClosed) as exc:
                # The actor died (crash, node loss, idle stop) or its connection broke:
                # find or start it anew and send the same commands again.
                self._forget(event_id)
                last = exc
                continue
            except (TimeoutError, GetTimeoutError) as exc:
                raise Unavailable(
                    "the event did not answer in time; retry with the same Idempotency-Key",
                    retry_after=self.config.retry_after_s,
                ) from exc
            if reply.stopping:
                # The actor is stopping; its successor will take the commands.
                self._forget(event_id)
                last = None
                continue
            return reply
        if last is not None:
            log.warning("event %s: actor unreachable: %s", event_id, last)
        raise StoreUnavailable(
            "the event's inventory is unavailable", retry_after=self.config.retry_after_s
        )

    def _forget(self, event_id: str) -> None:
        self._handles.pop(event_id, None)
        channel = self._channels.pop(event_id, None)
        if channel is not None:
            channel.close()

    async def _channel(self, event_id: str) -> Channel:
        """The open channel to the event's actor; concurrent callers share one opening."""
        channel = self._channels.get(event_id)
        if channel is not None and not channel.closed:
            return channel
        return await self._opening.run(event_id, lambda: self._open(event_id))

    async def _open(self, event_id: str) -> Channel:
        handle = await self._handle(event_id)
        try:
            endpoint = await asyncio.wait_for(handle.endpoint.remote(), self.config.call_timeout_s)
        except (TimeoutError, GetTimeoutError) as exc:
            # Starting: slow on a busy node, or waiting for room (see GatewayConfig).
            # The start goes on in Ray; a retry finds the actor once it is up.
            raise Unavailable(
                "the event's actor has not started yet (the cluster may have no room for "
                "another active event); retry with the same Idempotency-Key",
                retry_after=self.config.retry_after_s,
            ) from exc
        channel = self._channels[event_id] = await Channel.open(endpoint)
        return channel

    async def _handle(self, event_id: str) -> Any:
        handle = self._handles.get(event_id)
        if handle is None:
            handle = await asyncio.to_thread(self._get_or_create, event_id)
            self._handles[event_id] = handle
        return handle

    def _get_or_create(self, event_id: str) -> Any:
        cfg = self.config
        room = {"memory": cfg.actor_memory_bytes} if cfg.actor_memory_bytes else {}
        return self._actor_class.options(
            name=actor_name(event_id),
            namespace=cfg.namespace,
            get_if_exists=True,
            lifetime="detached",
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=100_000,
            num_cpus=0,
            **room,
        ).remote(
            event_id,
            cfg.database_url,
            max_batch=cfg.max_batch,
            idle_s=cfg.idle_s,
            idle_when_full_s=cfg.idle_when_full_s,
            room_bytes=cfg.actor_memory_bytes,
        )

    async def state(self, event_id: str) -> dict[str, Any]:
        handle = await self._handle(event_id)
        result: dict[str, Any] = await handle.state.remote()
        return result
