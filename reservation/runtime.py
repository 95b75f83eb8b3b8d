"""What one front-end process holds: settings, store engines, the actor gateway, caches."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from actors.event_actor import Reply
from actors.gateway import GatewayConfig, InventoryGateway
from reservation.api import metrics
from reservation.auth import TokenReader
from reservation.config import Settings
from reservation.singleflight import SingleFlight
from reservation.store.db import is_sqlite, make_engine


class TtlCache:
    """A small read-through cache; concurrent misses of one key share one load."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._values: dict[Any, tuple[float, Any]] = {}
        self._loads: SingleFlight[Any] = SingleFlight()

    def peek(self, key: Any) -> Any:
        """The fresh cached value of ``key``, or None (without loading anything)."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def get(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._values.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return await self._loads.run(key, lambda: self._load(key, load))

    async def _load(self, key: Any, load: Callable[[], Awaitable[Any]]) -> Any:
        value = await load()
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.ttl_s, value)
        return value

    def invalidate(self, key: Any = None) -> None:
        if key is None:
            self._values.clear()
        else:
            self._values.pop(key, None)


_held_by_event: dict[str, int] = {}


_CALL_SIZE = metrics.histogram(metrics.CALL_SIZE)
_HOLDS_OPEN = metrics.gauge(metrics.HOLDS_OPEN)
_BATCH_SIZE = metrics.histogram(metrics.BATCH_SIZE)
_COMMIT_SECONDS = metrics.histogram(metrics.COMMIT_SECONDS)
_QUEUE_DEPTH = metrics.gauge(metrics.QUEUE_DEPTH)


def _record_reply(event_id: str, reply: Reply, call_size: int) -> None:
    _CALL_SIZE.observe(call_size)
    _held_by_event[event_id] = reply.held
    if not reply.held:
        _held_by_event.pop(event_id, None)
    _HOLDS_OPEN.set(sum(_held_by_event.values()))
    for size in reply.batch_sizes:
        _BATCH_SIZE.observe(size)
    for seconds in reply.commit_seconds:
        _COMMIT_SECONDS.observe(seconds)


@dataclass
class Runtime:
    settings: Settings
    writer: AsyncEngine
    reader: AsyncEngine
    gateway: InventoryGateway
    signing_key: str
    events_cache: TtlCache
    tokens: TokenReader
    known_events: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, settings: Settings, *, actor_class: Any = None) -> Runtime:
        url = settings.store_url
        key = settings.signing_key()
        writer = make_engine(url, pool_size=settings.db_pool_size, writer=True)
        reader = make_engine(url, pool_size=settings.db_pool_size, writer=False) if is_sqlite(url) else writer
        gateway = InventoryGateway(
            GatewayConfig(
                database_url=url,
                namespace=settings.ray_namespace,
                max_queue_per_event=settings.max_queue_per_event,
                max_batch=settings.max_batch,
                calls_in_flight=settings.calls_in_flight,
                transport=settings.actor_transport,
                call_timeout_s=settings.actor_call_timeout_s,
                idle_s=settings.actor_idle_s,
                actor_memory_bytes=settings.actor_memory_mb * 1024 * 1024,
                idle_when_full_s=settings.actor_idle_when_full_s,
                retry_after_s=settings.retry_after_s,
            ),
            actor_class=actor_class,
            on_reply=_record_reply,
        )
        return cls(
            settings=settings,
            writer=writer,
            reader=reader,
            gateway=gateway,
            signing_key=key,
            events_cache=TtlCache(settings.read_cache_ttl_s),
            tokens=TokenReader(key),
        )

    def sample_gauges(self) -> None:
        """Set the gauges read off this process's state, before a flush or a scrape:
        each front end reports its own queue depth (a scrape reaches only one of them)."""
        _QUEUE_DEPTH.set(self.gateway.queue_depth())

    async def close(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()
