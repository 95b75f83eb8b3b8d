"""The Ray actor that owns one event's inventory.

A thin shell around ``reservation.domain.inventory.Inventory``. Calls put commands
on a queue; one loop takes everything queued (up to ``max_batch``) and runs it as one
group commit: load what the batch refers to, apply the commands one after another
with no await in between, write the effects in one transaction, and only then answer
the callers. While a transaction is in flight new commands queue up, so the batch
grows with the load by itself.

If a commit fails, nobody is told "ok" and the in-memory state is thrown away and
rebuilt from the store before the next batch, so memory and store agree again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from actors.channel import ChannelServer, Endpoint
from reservation.domain.commands import (
    Cancel,
    Code,
    Command,
    Confirm,
    Hold,
    Outcome,
    Release,
)
from reservation.domain.inventory import Inventory
from reservation.store.db import make_engine
from reservation.store.inventory import (
    Claim,
    EventMissing,
    Fenced,
    InventoryStore,
    is_integrity_error,
)

log = logging.getLogger(__name__)

# Settled bookings and order memos kept in memory for fast replays; older ones are
# looked up in the store when a retry refers to them.
MEMORY_BOOKINGS = 50_000
MEMORY_ORDERS = 50_000
# How often what survived the young collections is moved out of the cyclic collector's
# sight (see _spare_gc), and how often it is all looked at once.
FREEZE_EVERY_S = 1.0
FULL_GC_EVERY_S = 900.0


@dataclass
class Reply:
    """Answers to one call, in the order of its commands, plus batch figures."""

    outcomes: list[Outcome]
    batch_sizes: list[int] = field(default_factory=list)
    commit_seconds: list[float] = field(default_factory=list)
    # The actor is stopping: send the same commands to its successor.
    stopping: bool = False
    # Seats held (open holds) after the batch, for the front end's gauge.
    held: int = 0


@dataclass(slots=True)
class _Pending:
    command: Command
    future: asyncio.Future[tuple[Outcome, int, float]]


class EventActor:
    """One event's inventory: serial, group-committed, fenced. Wrapped by ``ray.remote``."""

    def __init__(
        self,
        event_id: str,
        database_url: str,
        *,
        max_batch: int = 2000,
        idle_s: float = 900.0,
    ) -> None:
        self.event_id = event_id
        self._database_url = database_url
        self._max_batch = max_batch
        self._idle_s = idle_s
        self._queue: list[_Pending] = []
        self._claim: Claim | None = None
        self._store: InventoryStore | None = None
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._channel = ChannelServer(self.submit)
        self._load_lock = asyncio.Lock()
        self._closing = False
        self._missing = False
        self._last_command = time.monotonic()
        self._frozen_at = self._collected_at = time.monotonic()
        self.batches = 0

    # ------------------------------------------------------------ public calls

    async def submit(self, commands: list[Command]) -> Reply:
        """Queue commands for the next batch and answer once that batch is committed."""
        if self._missing:
            return Reply([Outcome(Code.NOT_FOUND, detail="no such event") for _ in commands])
        if self._closing:
            return Reply([Outcome(Code.UNAVAILABLE, detail="stopping") for _ in commands], stopping=True)
        self._ensure_loop()
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        pending = [_Pending(c, loop.create_future()) for c in commands]
        self._queue.extend(pending)
        self._last_command = time.monotonic()
        self._wake.set()
        results = await asyncio.gather(*(p.future for p in pending))
        return Reply(
            [r[0] for r in results],
            sorted({r[1] for r in results}),
            sorted({r[2] for r in results}),
            held=self._claim.inventory.held if self._claim is not None else 0,
        )

    async def endpoint(self) -> Endpoint:
        """Where front ends reach ``submit`` directly (see ``actors.channel``)."""
        return await self._channel.start()

    async def state(self) -> dict[str, Any]:
        """The in-memory counters (for tests, operators and health checks)."""
        self._ensure_loop()
        if self._claim is None:
            await self._load()
        if self._claim is None:
            return {"loaded": False}
        inv = self._claim.inventory
        return {
            "loaded": True,
            "event_id": self.event_id,
            "capacity": inv.capacity,
            "oversell_capacity": inv.oversell_capacity,
            "sold": inv.sold,
            "held": inv.held,
            "on_sale": inv.on_sale,
            "epoch": self._claim.epoch,
            "batches": self.batches,
            "pid": os.getpid(),
        }

    def pid(self) -> int:
        return os.getpid()

    async def close(self) -> None:
        """Drop the channel's connections and give the store connection back."""
        self._channel.close()
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._store.close()

    # ------------------------------------------------------------ the loop

    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            self._wake = asyncio.Event()
            self._store = InventoryStore(
                make_engine(self._database_url, pool_size=1, multi_statements=True), self.event_id
            )
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sleep_for())
                self._wake.clear()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                await self._process(batch)
            except Exception:  # never let the loop die: that would hang every caller
                log.exception("event %s: batch failed unexpectedly", self.event_id)
                self._claim = None
                self._fail(batch, Code.UNAVAILABLE, "internal error; retry")
            if self._should_stop():
                await self._stop()
                return

    def _sleep_for(self) -> float:
        wait = self._idle_s
        if self._claim is not None:
            nxt = self._claim.inventory.next_expiry()
            if nxt is not None:
                wait = min(wait, max(0.0, nxt - time.time()) + 0.001)
        return max(wait, 0.001)

    async def _load(self) -> bool:
        """Claim the event and rebuild from the store, unless that is done already.

        The batch loop and ``state()`` may both find no claim; the lock makes them share
        one claim rather than take two epochs, the older of which would be fenced.
        """
        assert self._store is not None
        async with self._load_lock:
            if self._claim is not None:
                return True
            return await self._claim_now()

    async def _claim_now(self) -> bool:
        assert self._store is not None
        try:
            self._claim = await self._store.claim()
        except EventMissing:
            self._missing = True
            return False
        except Exception as exc:
            log.warning("event %s: cannot load from the store: %s", self.event_id, exc)
            return False
        return True

    async def _process(self, batch: list[_Pending]) -> None:
        if not batch:
            due = self._claim.inventory.next_expiry() if self._claim is not None else None
            if due is None or due > time.time():
                return
        if self._claim is None and not await self._load():
            code = Code.NOT_FOUND if self._missing else Code.UNAVAILABLE
            self._fail(batch, code, "no such event" if self._missing else "store unavailable")
            return
        started = time.perf_counter()
        for attempt in (1, 2):
            assert self._claim is not None and self._store is not None
            inv = self._claim.inventory
            now = time.time()
            try:
                async with self._store.batch(self._claim.epoch) as tx:
                    await self._preload(tx, inv, batch, orders=attempt > 1)
                    # Check and update happen here, with no await in between: serial.
                    inv.expire(now)
                    outcomes = [inv.apply(p.command, now) for p in batch]
                    effects = inv.take_effects()
                    if not effects.empty:
                        await tx.write(inv, effects, now)
            except Fenced:
                log.error("event %s: fenced by a newer incarnation; stopping", self.event_id)
                self._claim = None
                self._closing = True
                self._fail(batch, Code.UNAVAILABLE, "event moved; retry")
                return
            except Exception as exc:
                # The transaction rolled back: forget the applied commands by rebuilding.
                self._claim = None
                if attempt == 1 and is_integrity_error(exc) and await self._load():
                    # A key used before (see _preload), or a concurrent writer (another
                    # event's actor, same key) got there first: the retry's preload
                    # reads their rows.
                    continue
                log.warning("event %s: commit failed: %s", self.event_id, exc)
                self._fail(batch, Code.UNAVAILABLE, "store unavailable; retry")
                return
            break
        inv.mark_committed()
        self.batches += 1
        commit_s = time.perf_counter() - started
        size = len(batch)
        for p, outcome in zip(batch, outcomes, strict=True):
            if not p.future.done():
                p.future.set_result((outcome, size, commit_s))
        self._trim(inv)
        self._spare_gc()

    async def _preload(self, tx: Any, inv: Inventory, batch: list[_Pending], *, orders: bool) -> None:
        """Load bookings and orders the batch refers to that memory does not hold.

        A command for a booking that a hold of this same batch creates needs nothing.
        Keyed new orders are looked up only when ``orders`` is set or memory knows their
        booking: a first attempt writes them optimistically, and a key used before (a
        replay after a restart, or one that memory let go) makes its insert fail on the
        primary key, after which the batch runs again with the lookup. New keys, nearly
        every order, cost no read.
        """
        booking_ids: set[str] = set()
        order_ids: set[str] = set()
        created = {p.command.booking_id for p in batch if isinstance(p.command, Hold)}
        for p in batch:
            cmd = p.command
            if isinstance(cmd, (Confirm, Release, Cancel)):
                if cmd.booking_id not in inv.bookings and cmd.booking_id not in created:
                    booking_ids.add(cmd.booking_id)
            elif isinstance(cmd, Hold):
                new = cmd.new_order
                if new is None:
                    if cmd.booking_id not in inv.bookings:
                        booking_ids.add(cmd.booking_id)
                elif (
                    new.idempotency_key is not None
                    and new.order_id not in inv.orders
                    # A booking memory holds under this id was made by an earlier request
                    # (a multi-event order under the same key): its order decides.
                    and (orders or cmd.booking_id in inv.bookings)
                ):
                    order_ids.add(new.order_id)
        for booking in await tx.load_bookings(booking_ids):
            if booking.booking_id not in inv.bookings:
                inv.remember(booking)
        for memo in await tx.load_orders(order_ids):
            inv.remember_order(memo)
            if memo.booking_id and memo.booking_id not in inv.bookings:
                for booking in await tx.load_bookings([memo.booking_id]):
                    inv.remember(booking)

    def _fail(self, batch: list[_Pending], code: Code, detail: str) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_result((Outcome(code, detail=detail), len(batch), 0.0))

    def _spare_gc(self) -> None:
        """Keep the cyclic collector's full passes short, so they do not stall batches.

        The actor holds tens of thousands of bookings and memos; a full collection walks
        every one of them, and on this machine that stalled a batch (and every caller in
        it) for tens of milliseconds. Once a second, after a cheap young-generation pass,
        what survived is frozen: full passes skip it, while reference counting still
        frees it when memory lets it go. Every FULL_GC_EVERY_S it is all thawed and
        collected once, for any cycle that was frozen along the way.
        """
        now = time.monotonic()
        if now - self._collected_at >= FULL_GC_EVERY_S:
            self._collected_at = self._frozen_at = now
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif now - self._frozen_at >= FREEZE_EVERY_S:
            self._frozen_at = now
            gc.collect(1)
            gc.freeze()

    def _trim(self, inv: Inventory) -> None:
        if len(inv.bookings) > MEMORY_BOOKINGS:
            for booking_id in list(inv.bookings)[: len(inv.bookings) - MEMORY_BOOKINGS // 2]:
                inv.forget(booking_id)
        if len(inv.applied) > MEMORY_ORDERS:
            for command_id in list(inv.applied)[: len(inv.applied) - MEMORY_ORDERS // 2]:
                del inv.applied[command_id]
        if len(inv.orders) > MEMORY_ORDERS:
            for order_id in list(inv.orders)[: len(inv.orders) - MEMORY_ORDERS // 2]:
                if inv.orders[order_id].committed:
                    del inv.orders[order_id]

    # ------------------------------------------------------------ idling

    def _should_stop(self) -> bool:
        if self._missing:
            return True
        if self._queue or self._closing:
            return self._closing and not self._queue
        if time.monotonic() - self._last_command < self._idle_s:
            return False
        # Open holds need this actor to expire them on time.
        return self._claim is None or self._claim.inventory.held == 0

    async def _stop(self) -> None:
        """Leave the cluster for good; the next command for this event starts a new actor."""
        self._closing = True
        await self.close()
        log.info("event %s: actor stopping", self.event_id)
        try:
            import ray

            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        except Exception:  # not running under Ray (tests drive the class directly)
            pass
