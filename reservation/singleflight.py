"""Concurrent loads of one key share a single load (the "single flight" pattern)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    """The first caller for a key runs its load; callers arriving meanwhile wait for
    that load's result, or get its exception, instead of running their own."""

    def __init__(self) -> None:
        self._loading: dict[Hashable, asyncio.Future[V]] = {}

    async def run(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(value)
        finally:
            self._loading.pop(key, None)
        return value
