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
import enum
import gc
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field, fields
from itertools import islice
from operator import attrgetter
from typing import Any

from actors.channel import ChannelServer, Endpoint
from reservation import gc_tuning
from reservation.domain.commands import (
    Cancel,
    Code,
    Command,
    Confirm,
    Hold,
    Outcome,
    OutcomeRow,
    Release,
    outcome_rows,
    outcomes_from_rows,
)
from reservation.domain.inventory import Effects, Inventory
from reservation.store.inventory import (
    BatchTransaction,
    Claim,
    EventMissing,
    Fenced,
    InventoryStore,
    Part,
    Statements,
    is_integrity_error,
)

log = logging.getLogger(__name__)

# Settled bookings and order memos kept in memory for fast replays; older ones are
# looked up in the store when a retry refers to them.
MEMORY_BOOKINGS = 50_000
MEMORY_ORDERS = 50_000
# How often what the committed batches left, frozen out of the cyclic collector's sight
# (see _spare_gc), is all looked at once.
FULL_GC_EVERY_S = 900.0
# Group commits in flight at once (see _run), each on a store connection of its own,
# opened the first time that many are in flight; past two, only while at least
# DEEP_BATCH commands wait (see _in_flight_limit).
PIPELINE_DEPTH = 3
DEEP_BATCH = 500
# How often an actor idle past ``idle_when_full_s`` asks Ray whether the cluster has
# room for another event actor (see _should_stop).
ROOM_CHECK_S = 5.0
# Idle actors may stop, in each window of this many seconds and the one before it
# together, at most as many as there are actors waiting for room (see take_room_lease):
# Ray takes a moment to start a waiting actor in the room one gave up, and meanwhile
# still counts it as waiting.
ROOM_LEASE_S = 5.0
ROOM_KV_NAMESPACE = "reservation-room"


def free_memory_per_node() -> list[float]:
    """Bytes of Ray's ``memory`` resource free on each live node (blocks on the GCS)."""
    import ray

    try:
        # A developer API of Ray's: the public one only sums the nodes.
        from ray._private.state import available_resources_per_node
    except ImportError:
        return [ray.available_resources().get("memory", 0.0)]
    return [node.get("memory", 0.0) for node in available_resources_per_node().values()]


def waiting_for_room() -> int | None:
    """How many requests for Ray's ``memory`` resource (event actors waiting for room)
    Ray keeps pending, as the GCS tells its autoscaler; None when Ray does not say."""
    try:
        from ray.autoscaler.v2.sdk import get_cluster_resource_state
        from ray.experimental.internal_kv import internal_kv_get_gcs_client

        state = get_cluster_resource_state(internal_kv_get_gcs_client())
    except Exception:
        return None
    return sum(
        int(pending.count)
        for pending in state.pending_resource_requests
        if pending.request.resources_bundle.get("memory", 0.0) > 0
    )


def take_room_lease(holder: str, waiting: int, now: float) -> bool:
    """One of the leases to stop that ``waiting`` actors allow now, if one is left.

    Idle actors on a full cluster each look at the room on their own, at about the same
    time and before Ray has placed anything in room given up: without a bound, every one
    that looked would stop for a single waiting actor. The leases are keys of Ray's
    key-value store in the GCS, written only if absent, so each goes to one actor; a
    window grants as many as wait, less those granted in the window before.
    """
    from ray.experimental import internal_kv

    window = int(now // ROOM_LEASE_S)
    windows = [int(key.split(b":", 1)[0]) for key in internal_kv._internal_kv_list("", namespace=ROOM_KV_NAMESPACE)]
    for slot in range(waiting - windows.count(window - 1)):
        if internal_kv._internal_kv_put(f"{window}:{slot}", holder, overwrite=False, namespace=ROOM_KV_NAMESPACE):
            continue  # taken
        for old in {w for w in windows if w < window - 1}:  # windows gone by
            internal_kv._internal_kv_del(f"{old}:", del_by_prefix=True, namespace=ROOM_KV_NAMESPACE)
        return True
    return False


def give_room(room_bytes: int, holder: str) -> bool:
    """Whether an idle actor reserving ``room_bytes`` should stop: no node has room for
    another event actor, one waits for room, and ``holder`` got a lease to stop (blocks
    on the GCS)."""
    free = free_memory_per_node()
    # An actor lives on one node: room summed over nodes that each lack it is none.
    # No figures at all say nothing about the room: stay.
    if not free or any(room >= room_bytes for room in free):
        return False
    waiting = waiting_for_room()
    if waiting is None:
        return True  # Ray does not say who waits: the full cluster alone decides
    return waiting > 0 and take_room_lease(holder, waiting, time.time())


def _oldest(entries: dict[str, Any], keep: int) -> list[str]:
    """The keys of ``entries`` before its newest ``keep``, oldest first."""
    return list(islice(entries, max(0, len(entries) - keep)))


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

    def __reduce__(self) -> tuple[Any, ...]:
        # Every answer is pickled once in the actor and restored once in a front end:
        # its outcomes as plain tuples take a quarter of the actor's time to pickle and
        # half the front end's to restore (1.1 against 4.5 and 2.7 against 5.3 µs per
        # booking, here). Three alternating engine pairs on a 2-core machine: the actor
        # 42.6-43.5 against 45.1-48.0 µs of CPU per booking, the callers 21.6-22.1
        # against 25.2-26.3; bookings/s within the noise (13,428-13,864 against
        # 13,796-14,788).
        return _reply, (outcome_rows(self.outcomes), *_reply_rest(self))


# Reply's fields after its outcomes, in their order: a field added to Reply travels
# without a change here.
_reply_rest = attrgetter(*(f.name for f in fields(Reply)[1:]))


def _reply(rows: list[OutcomeRow], *rest: Any) -> Reply:
    return Reply(outcomes_from_rows(rows), *rest)


@dataclass(slots=True)
class _Call:
    """The commands of one ``submit`` call, answered together once the last one is.

    One future per call rather than one per command: a call from a front end under
    load carries hundreds of commands, and a future each (plus gathering them) cost the
    actor more than applying the commands did.
    """

    outcomes: list[Outcome | None]
    future: asyncio.Future[None]
    left: int
    batch_sizes: list[int] = field(default_factory=list)
    commit_seconds: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    command: Command
    call: _Call
    index: int  # the command's place in its call
    attempts: int = 0


class _Fate(enum.Enum):
    COMMITTED = "committed"  # durable; its callers have their answers
    FAILED = "failed"  # its callers were told to retry
    RETRY = "retry"  # a key used before: run again, looking orders up
    ABANDONED = "abandoned"  # rolled back because the batch before it did not commit


@dataclass(slots=True)
class _Flight:
    """One batch on its way to the store: applied in memory, not yet committed."""

    batch: list[_Pending]
    tx: BatchTransaction
    inv: Inventory
    outcomes: list[Outcome]
    effects: Effects
    # What the batch writes, rendered when it was applied (None: nothing to write). The
    # counters in it are those right after this batch: the next batch may be applied to
    # the same inventory before this one's statements are sent.
    statements: Statements | None
    started: float
    # The batch applied just before this one, if it was still in flight.
    previous: _Flight | None
    # The store connection it is sent on (``InventoryStore.begin``).
    slot: int
    # Set once the batch's statements have run (or failed), before its COMMIT.
    written: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[_Fate] | None = None

    @property
    def fate(self) -> asyncio.Task[_Fate]:
        assert self.task is not None
        return self.task


class EventActor:
    """One event's inventory: serial, group-committed, fenced. Wrapped by ``ray.remote``."""

    def __init__(
        self,
        event_id: str,
        database_url: str,
        *,
        max_batch: int = 2000,
        deep_batch: int = DEEP_BATCH,
        idle_s: float = 900.0,
        idle_when_full_s: float = 60.0,
        room_bytes: int = 0,
    ) -> None:
        self.event_id = event_id
        self._database_url = database_url
        self._max_batch = max_batch
        self._deep_batch = deep_batch
        self._idle_s = idle_s
        # The Ray memory one event actor reserves (0: none, and no early stop).
        self._room_bytes = room_bytes
        self._idle_when_full_s = min(idle_when_full_s, idle_s)
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
        self._collected_at = time.monotonic()
        self.batches = 0
        # Batches sent to the store, and those rolled back because the one before failed.
        self.launched = self.abandoned = 0
        self._depth = 1
        # The store connections a batch in flight is on.
        self._busy: set[int] = set()
        gc_tuning.tune(gc_tuning.ACTOR_YOUNG)  # see _spare_gc

    # ------------------------------------------------------------ public calls

    async def submit(self, commands: list[Command]) -> Reply:
        """Queue commands for the next batch and answer once that batch is committed."""
        if self._missing:
            return Reply([Outcome(Code.NOT_FOUND, detail="no such event") for _ in commands])
        if self._closing:
            return Reply([Outcome(Code.UNAVAILABLE, detail="stopping") for _ in commands], stopping=True)
        self._ensure_loop()
        assert self._wake is not None
        if not commands:
            return Reply([])
        call = _Call([None] * len(commands), asyncio.get_running_loop().create_future(), len(commands))
        self._queue.extend([_Pending(c, call, i) for i, c in enumerate(commands)])
        self._last_command = time.monotonic()
        self._wake.set()
        await call.future
        return Reply(
            call.outcomes,  # type: ignore[arg-type]  # every one is set before the future
            call.batch_sizes,
            call.commit_seconds,
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
            "launched": self.launched,
            "abandoned": self.abandoned,
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
            self._store = InventoryStore(self._database_url, self.event_id)
            # SQLite takes one writer at a time: there a batch waits for the one before.
            self._depth = PIPELINE_DEPTH if self._store.inline else 1
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Take what is queued, apply it and send it to the store; repeat.

        On MariaDB/MySQL up to PIPELINE_DEPTH batches are in flight: while batch N is
        written and commits, batch N+1 is applied in memory (on top of N) and sent on
        another of the store's connections: its new rows at once, the rest once N's
        statements have run, where it waits for N's row lock on the event; N+2 likewise
        on top of N+1. A batch commits only once the one before it has; if that one does
        not, it is rolled back (and so each after it), memory is rebuilt from the store,
        and their commands (and the failed batch's, when it is worth a retry) run again.
        """
        assert self._wake is not None
        flights: deque[_Flight] = deque()
        while True:
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sleep_for())
                self._wake.clear()
            while flights and (flights[0].fate.done() or len(flights) >= self._in_flight_limit()):
                if await flights[0].fate is not _Fate.COMMITTED:
                    await self._land(flights)
                    break
                flights.popleft()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                flight = await self._launch(batch, flights[-1] if flights else None)
            except Exception:  # never let the loop die: that would hang every caller
                log.exception("event %s: batch failed unexpectedly", self.event_id)
                await self._land(flights)
                # The batch may have been applied in memory: rebuild from the store.
                self._claim = None
                self._fail(batch, Code.UNAVAILABLE, "internal error; retry")
                flight = None
            if flight is not None:
                flights.append(flight)
            if await self._should_stop():
                await self._land(flights)
                await self._stop()
                return

    async def _land(self, flights: deque[_Flight]) -> None:
        """Wait for every batch in flight; put back what must run again, rebuild if needed."""
        again: list[_Pending] = []
        broken = False
        for flight in flights:
            fate = await flight.fate
            if fate is _Fate.RETRY:
                for p in flight.batch:
                    p.attempts += 1
            if fate in (_Fate.RETRY, _Fate.ABANDONED):
                again += flight.batch
            broken = broken or fate is not _Fate.COMMITTED
        flights.clear()
        self._queue[:0] = again
        if broken and not self._closing:
            self._claim = None  # memory holds effects the store does not: rebuild

    def _sleep_for(self) -> float:
        wait = self._idle_s
        if self._room_bytes:
            # From idle_when_full_s on, wake now and then to look at the cluster's room.
            until = self._idle_when_full_s - (time.monotonic() - self._last_command)
            wait = min(wait, until if until > 0 else min(ROOM_CHECK_S, self._idle_when_full_s))
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

    async def _launch(self, batch: list[_Pending], previous: _Flight | None) -> _Flight | None:
        """Apply ``batch`` in memory and send its effects; the flight commits and answers."""
        if not batch:
            due = self._claim.inventory.next_expiry() if self._claim is not None else None
            if due is None or due > time.time():
                return None
        if self._closing:
            self._fail(batch, Code.UNAVAILABLE, "event moved; retry")
            return None
        if self._claim is None and not await self._load():
            code = Code.NOT_FOUND if self._missing else Code.UNAVAILABLE
            self._fail(batch, code, "no such event" if self._missing else "store unavailable")
            return None
        assert self._claim is not None and self._store is not None
        started = time.perf_counter()
        inv = self._claim.inventory
        now = time.time()
        slot = self._free_slot()
        try:
            tx = await self._store.begin(self._claim.epoch, slot)
        except Exception as exc:
            log.warning("event %s: cannot start a batch: %s", self.event_id, exc)
            self._fail(batch, Code.UNAVAILABLE, "store unavailable; retry")
            return None
        try:
            # A retried batch (its first try met a key used before) looks its orders up.
            await self._preload(tx, inv, batch, orders=any(p.attempts for p in batch))
        except Exception as exc:
            # Nothing was applied yet: memory is as it was, only this batch fails.
            await tx.rollback()
            log.warning("event %s: cannot read for a batch: %s", self.event_id, exc)
            self._fail(batch, Code.UNAVAILABLE, "store unavailable; retry")
            return None
        # Check and update happen here, with no await in between: serial.
        inv.expire(now)
        outcomes = [inv.apply(p.command, now) for p in batch]
        effects = inv.take_effects()
        try:
            statements = None if effects.empty else tx.statements(inv, effects, now)
        except Exception:
            await tx.rollback()
            raise  # applied in memory, never written: the loop rebuilds (see _run)
        self.launched += 1
        flight = _Flight(batch, tx, inv, outcomes, effects, statements, started, previous, slot)
        self._busy.add(slot)
        flight.task = asyncio.get_running_loop().create_task(self._commit(flight))
        return flight

    def _in_flight_limit(self) -> int:
        """How many batches may be in flight before the next one is launched.

        A third pays only for large batches, where applying, rendering and loading
        their rows take the time and MariaDB can work on one while the actor prepares
        the next (2-core machine, engine benchmark, batches of about 1,500: about 5%
        more bookings/s). Small ones mostly pay each commit's own cost: with a third in
        flight, HTTP bookings at 64 connections went out in group commits of 16 instead
        of 18 and cost the actor and MariaDB more per booking. So the next batch waits
        for the oldest one instead, and grows meanwhile.
        """
        return self._depth if len(self._queue) >= self._deep_batch else min(self._depth, 2)

    def _free_slot(self) -> int:
        """The lowest store connection no batch in flight is on: an actor opens a second
        or third connection only once it has that many batches in flight at once."""
        return min(set(range(self._depth)) - self._busy)

    async def _commit(self, flight: _Flight) -> _Fate:
        try:
            return await self._settle(flight)
        except Exception:  # the loop awaits this task: it must end with a fate
            log.exception("event %s: batch failed unexpectedly", self.event_id)
            self._fail(flight.batch, Code.UNAVAILABLE, "internal error; retry")
            return _Fate.FAILED
        finally:
            flight.written.set()
            self._busy.discard(flight.slot)
            # Settled: its own predecessor is of no more use. Without this, under steady
            # load every flight would keep the one before alive, and so all of them.
            flight.previous = None
            if self._wake is not None:
                self._wake.set()  # the loop reaps this flight

    async def _settle(self, flight: _Flight) -> _Fate:
        batch, tx, inv, previous = flight.batch, flight.tx, flight.inv, flight.previous
        try:
            try:
                part = Part.ALL
                if flight.statements is not None and previous is not None and not previous.written.is_set():
                    # The rows this batch creates depend on no other batch: they go in
                    # now, while the batch before is still being written (MariaDB works
                    # on both at once). The rest must follow that batch.
                    await tx.send(flight.statements, Part.NEW_ROWS)
                    part = Part.REST
                if previous is not None:
                    # The batch before must hold the event's row lock before this one asks
                    # for it, so that this one waits for its COMMIT and never the other
                    # way round.
                    await previous.written.wait()
                if flight.statements is not None:
                    await tx.send(flight.statements, part)
            finally:
                flight.written.set()
            if not await self._landed(previous):
                await tx.rollback()
                self.abandoned += 1
                return _Fate.ABANDONED
            await tx.commit()
        except Exception as exc:
            await tx.rollback()
            if not await self._landed(previous):
                self.abandoned += 1
                return _Fate.ABANDONED  # built on a batch that did not land
            if isinstance(exc, Fenced):
                log.error("event %s: fenced by a newer incarnation; stopping", self.event_id)
                self._claim = None
                self._closing = True
                self._fail(batch, Code.UNAVAILABLE, "event moved; retry")
                return _Fate.FAILED
            if is_integrity_error(exc) and not any(p.attempts for p in batch):
                # A key used before (see _preload), or a concurrent writer (another
                # event's actor, same key) got there first: the retry's preload
                # reads their rows.
                return _Fate.RETRY
            log.warning("event %s: commit failed: %s", self.event_id, exc)
            self._fail(batch, Code.UNAVAILABLE, "store unavailable; retry")
            return _Fate.FAILED
        inv.mark_committed(flight.effects)
        self.batches += 1
        self._answer(batch, flight.outcomes, time.perf_counter() - flight.started)
        self._trim(inv)
        self._spare_gc()
        return _Fate.COMMITTED

    async def _landed(self, previous: _Flight | None) -> bool:
        """Whether the batch this one was applied on top of committed: only then may it."""
        return previous is None or await previous.fate is _Fate.COMMITTED

    async def _preload(self, tx: Any, inv: Inventory, batch: list[_Pending], *, orders: bool) -> None:
        """Load bookings and orders the batch refers to that memory does not hold.

        A command for a booking that a hold of this same batch creates needs nothing.
        New orders are looked up only when ``orders`` is set, or when memory knows the
        booking of a keyed one: a first attempt writes them optimistically, and an order
        id used before makes its insert fail on the unique id key, after which the batch
        runs again with the lookup. New orders, nearly all of them, cost no read. An id
        is used again by a key's replay after a restart or after memory let it go, and,
        keyed or not, by a command sent again after its answer was lost (the actor died
        between the commit and the answer, and the front end resends the same command).
        """
        booking_ids: set[str] = set()
        order_ids: set[str] = set()
        # The booking ids the batch's holds create, gathered only once a command for a
        # booking memory does not hold asks (a batch of new orders never does).
        created: set[str] | None = None
        for p in batch:
            cmd = p.command
            if isinstance(cmd, Hold):
                new = cmd.new_order
                if new is None:
                    if cmd.booking_id not in inv.bookings:
                        booking_ids.add(cmd.booking_id)
                elif new.order_id not in inv.orders and (
                    orders
                    # A booking memory holds under this id was made by an earlier request
                    # (a multi-event order under the same key): its order decides.
                    or (new.idempotency_key is not None and cmd.booking_id in inv.bookings)
                ):
                    order_ids.add(new.order_id)
            elif isinstance(cmd, (Confirm, Release, Cancel)) and cmd.booking_id not in inv.bookings:
                if created is None:
                    created = {q.command.booking_id for q in batch if isinstance(q.command, Hold)}
                if cmd.booking_id not in created:
                    booking_ids.add(cmd.booking_id)
        for booking in await tx.load_bookings(booking_ids):
            if booking.booking_id not in inv.bookings:
                inv.remember(booking)
        for memo in await tx.load_orders(order_ids):
            inv.remember_order(memo)
            if memo.booking_id and memo.booking_id not in inv.bookings:
                for booking in await tx.load_bookings([memo.booking_id]):
                    inv.remember(booking)

    def _fail(self, batch: list[_Pending], code: Code, detail: str) -> None:
        self._answer(batch, [Outcome(code, detail=detail)] * len(batch), 0.0)

    def _answer(self, batch: list[_Pending], outcomes: list[Outcome], commit_s: float) -> None:
        """Answer every command. The batch's size and commit time ride on one answer only,
        so the front ends count each batch once, however many calls it served."""
        report = True
        for p, outcome in zip(batch, outcomes, strict=True):
            call = p.call
            if call.outcomes[p.index] is not None:
                continue  # answered already
            call.outcomes[p.index] = outcome
            if report:
                report = False
                call.batch_sizes.append(len(batch))
                if commit_s:
                    call.commit_seconds.append(commit_s)
            call.left -= 1
            if not call.left and not call.future.done():
                call.future.set_result(None)

    def _spare_gc(self) -> None:
        """Keep the cyclic collector off the objects the actor keeps.

        Nearly everything the actor allocates lives until its batch commits or longer:
        the queued calls' commands, the batches in flight, the bookings and order memos
        they leave (about eleven tracked objects a booking). A young pass walks all of
        them and finds next to nothing to free: in the engine benchmark (2-core machine,
        about 20,000 bookings/s) young passes every 50,000 allocations ran three times a
        second, walked some 48,000 live objects each, took 19-33 ms each (about a seventh
        of the actor's CPU) and collected 10 objects in 65 passes. So each committed batch
        freezes what is left (constant time): no pass walks it again, and reference
        counting still frees it. The young threshold is ``gc_tuning.ACTOR_YOUNG``, which
        only allocations without a commit for a long while reach. Every FULL_GC_EVERY_S
        it is all thawed and collected once, for any cycle that was frozen along the
        way.
        """
        now = time.monotonic()
        if now - self._collected_at >= FULL_GC_EVERY_S:
            self._collected_at = now
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    def _trim(self, inv: Inventory) -> None:
        """Let the oldest half of the settled bookings, applied commands and committed
        order memos go once there are more than the memory keeps (a dict iterates
        in the order its keys went in)."""
        if len(inv.bookings) > MEMORY_BOOKINGS:
            for booking_id in _oldest(inv.bookings, MEMORY_BOOKINGS // 2):
                inv.forget(booking_id)
        if len(inv.applied) > MEMORY_ORDERS:
            for command_id in _oldest(inv.applied, MEMORY_ORDERS // 2):
                del inv.applied[command_id]
        if len(inv.orders) > MEMORY_ORDERS:
            for order_id in _oldest(inv.orders, MEMORY_ORDERS // 2):
                if inv.orders[order_id].committed:
                    del inv.orders[order_id]

    # ------------------------------------------------------------ idling

    async def _should_stop(self) -> bool:
        if self._missing:
            return True
        if self._queue or self._closing:
            return self._closing and not self._queue
        idle = time.monotonic() - self._last_command
        if idle < self._idle_when_full_s:
            return False
        # Open holds need this actor to expire them on time.
        if self._claim is not None and self._claim.inventory.held:
            return False
        if idle >= self._idle_s:
            return True
        if not await self._room_wanted():
            return False
        # Commands may have come in while Ray was asked: then this actor is not idle.
        return not self._queue and time.monotonic() - self._last_command >= self._idle_when_full_s

    async def _room_wanted(self) -> bool:
        """Whether this idle actor gives its room up (``give_room``): then an actor waiting
        for room (pending in Ray) can start.

        Asked off the loop and briefly: a command that arrives meanwhile is not held up.
        """
        if not self._room_bytes:
            return False
        try:
            return await asyncio.wait_for(asyncio.to_thread(give_room, self._room_bytes, self.event_id), ROOM_CHECK_S)
        except Exception:  # not running under Ray, or the GCS did not answer: stay
            return False

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
