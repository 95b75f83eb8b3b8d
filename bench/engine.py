"""Engine benchmark: bookings per second one event actor commits durably, no HTTP.

Concurrent callers drive one ``EventActor`` under Ray, over the actor's own channel as
the front ends do (``--transport ray``: as Ray actor calls). Batched, each call carries
``--call-size`` bookings (what the front ends' coalescing hands an actor under load)
and the actor group-commits everything queued. The callers together offer 4,000
bookings at a time by default (16 calls of 250), so that when a batch commits the next
one is already queued. Offering 2,000 (4 calls of 500), about what the actor's two
batches in flight held then, left it waiting for calls between commits: 8,541-12,141
against 13,045-13,229 bookings/s in alternating runs on a 2-core machine, at the same
CPU per booking (batches of 1,000 against 1,330 on average). Unbatched, every booking
is its own call and its own transaction (the actor's batch is capped at one booking).
The warm-up's callers build their calls as they go; the timed run's are built (and
pickled) beforehand, at twice the warm-up's rate or 10,000 bookings/s, whichever is
more (``prepared_calls``).

``--store-ceiling`` measures what the store itself accepts: the same rows the actor
writes for its batches (built beforehand by the store's own code, from commands applied
to an in-memory inventory), sent straight to the database over as many connections as
the actor keeps batches in flight: a batch's new rows while the batch before is still
being written, its counters after that, then a COMMIT; no actor, no Ray, no Python work
in the timed loop beyond sending. The engine cannot beat
it on the same machine; the ratio of the two says how much of the store's speed the
actor uses. Its latencies are per batch, from sending it to its commit.

    python -m bench.engine --database-url mysql+aiomysql://root@127.0.0.1:3306/bench --seconds 10 --batched --json

It creates its own host and event in the given (migrated on the fly) database and
prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pickle
import statistics
import sys
import time
from typing import Any

import orjson

from bench.cpu import CpuMeter, database_pids


def booking_commands(event: str, n: int) -> list[Any]:
    """``n`` one-seat orders of ``event``, as a front end turns a request into a command
    (``OrderService._place_one``): a new order id, the booking id derived from it, the
    request's fingerprint, the attendee, held and confirmed in one command. Each order
    is a customer's of ``CUSTOMERS`` in turn, for a guest of its own: what differs from
    order to order in a real on-sale differs here too (a batch of one account's orders
    for one name would store, index and compress unlike a crowd's)."""
    from reservation.domain.commands import Attendee, one_event_order
    from reservation.domain.ids import new_id, request_hash

    out: list[Any] = []
    for _ in range(n):
        number = next(_ORDERS)
        account = _customers()[number % CUSTOMERS]
        name = f"Guest {number}"
        body = {"items": [{"attendees": [{"email": None, "name": name}], "event_id": event}]}
        fingerprint = request_hash(orjson.dumps(body))
        out.append(one_event_order(new_id(), account, event, (Attendee(name),), 600.0, fingerprint, None))
    return out


# Bookings per second the timed run's calls are built for at the least (``run``),
# batched and unbatched (one booking a transaction commits some 800-1,400/s here).
MIN_PREPARED_RATE = 10_000
MIN_PREPARED_RATE_UNBATCHED = 500
# The customers who book in the engine benchmark (accounts need no row of their own).
CUSTOMERS = 10_000
_ORDERS = itertools.count()
_customer_ids: list[str] = []


def _customers() -> list[str]:
    if not _customer_ids:
        from reservation.domain.ids import new_id

        _customer_ids.extend(new_id() for _ in range(CUSTOMERS))
    return _customer_ids


def _latency_ms(latencies: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": _percentile(latencies, q / 100) * 1000 for q in (50, 90, 99)}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seed(url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine

    from reservation.domain.ids import new_id
    from reservation.store.db import migrate, sync_url
    from reservation.store.inventory import to_dt
    from reservation.store.schema import event_policies, events, users

    migrate(url)
    engine = create_engine(sync_url(url))
    host, event = new_id(), new_id()
    now = to_dt(time.time())
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            {"id": host, "name": "Bench host", "email": f"{host}@example.com", "password_hash": "-",
             "role": "host", "created_at": now, "updated_at": now},
        )
        conn.execute(
            events.insert(),
            {"id": event, "host_id": host, "title": "Engine benchmark", "description": "", "venue": "-",
             "starts_at": now, "ends_at": now, "capacity": 100_000_000, "oversell_capacity": 0,
             "price_minor": 1000, "currency": "EUR", "status": "on_sale", "sold": 0, "held": 0, "epoch": 0,
             "version": 0, "created_at": now, "updated_at": now},
        )
        conn.execute(
            event_policies.insert(),
            {"event_id": event, "cancellation_allowed": True, "cancel_deadline_hours": 0, "refund_percent": 100,
             "updated_at": now},
        )
    engine.dispose()
    return host, event


def prepared_calls(event: str, bookings: int, call_size: int, pickled: bool) -> list[Any]:
    """Calls of ``call_size`` bookings (``booking_commands``), at least ``bookings`` in
    all, made before the timed run; ``pickled`` as the channel sends them.

    Built in the timed loop, they cost the callers 23-28 µs of CPU per booking, a
    quarter of the machine's (2-core machine, 11-28, a slow spell; more than half of it
    building and pickling the commands, by py-spy), CPU the actor and MariaDB did not
    get; built beforehand, 4.5-5.2 µs, and the engine committed 16,999, 16,900 and
    15,160 bookings/s against 15,640, 15,408 and 12,920 (alternating runs). In a
    cluster front ends build commands on machines of their own, so the benchmark
    builds them before it starts its clock, as wrk's script does its bodies."""
    out: list[Any] = []
    for _ in range(-(-bookings // call_size)):
        call = booking_commands(event, call_size)
        out.append(pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL) if pickled else call)
    return out


async def _drive(
    actor: Any,
    event: str,
    seconds: float,
    callers: int,
    call_size: int,
    endpoint: Any = None,
    calls: list[Any] | None = None,
) -> dict[str, Any]:
    """Drive the actor for ``seconds``: with ``calls`` (``prepared_calls``) until they
    run out, else with calls built as it goes."""
    from actors.channel import Channel
    from reservation import gc_tuning

    gc_tuning.tune()  # as a front end does

    booked = errors = 0
    latencies: list[float] = []
    batches: list[int] = []
    stop = time.monotonic() + seconds
    ready = None if calls is None else iter(calls)
    ran_out = False

    channel = None if endpoint is None else await Channel.open(endpoint)

    async def caller() -> None:
        nonlocal booked, errors, ran_out
        while time.monotonic() < stop:
            if ready is None:
                call = booking_commands(event, call_size)
            else:
                call = next(ready, None)
                if call is None:
                    ran_out = True
                    return
            started = time.perf_counter()
            if channel is None:
                reply = await actor.submit.remote(call)
            elif ready is None:
                reply = await channel.call(call, timeout_s=60)
            else:
                reply = await channel.call_pickled(call, timeout_s=60)
            latencies.append(time.perf_counter() - started)
            batches.extend(reply.batch_sizes)
            ok = sum(1 for o in reply.outcomes if o.ok)
            booked += ok
            errors += call_size - ok

    started = time.perf_counter()
    try:
        await asyncio.gather(*(caller() for _ in range(callers)))
    finally:
        if channel is not None:
            channel.close()
    elapsed = time.perf_counter() - started
    return {
        "bookings_per_s": booked / elapsed,
        **_latency_ms(latencies),
        "errors": errors,
        # Bookings (commands) per group commit.
        "mean_batch": statistics.fmean(batches) if batches else 0.0,
        "bookings": booked,
        "seconds": elapsed,
        "ran_out": ran_out,
    }


async def _store_ceiling(url: str, event: str, seconds: float, batch: int) -> dict[str, Any]:
    from actors.event_actor import PIPELINE_DEPTH
    from reservation.store.inventory import InventoryStore, Part, Query, batch_statements, send_queries
    from reservation.store.link import connect

    store = InventoryStore(url, event)
    claim = await store.claim()
    inv = claim.inventory
    # Enough batches for 100,000 bookings/s, above the ceiling measured on a 2-core
    # machine (55,700-70,000 at batches of 1,000); a run that uses them all stops early
    # ("ran_out") and its rate still counts what it sent.
    budget = max(4, int(seconds * 100_000 / batch))
    # Rows go as the actor sends them to this server: loads, unless it refuses them.
    probe = await connect(store.target)
    can_load = probe.can_load
    await probe.close()
    # Per batch: its new rows, then the rest (the fenced counters first).
    texts: list[tuple[list[Query], list[Query]]] = []
    for _ in range(budget):
        now = time.time()
        for command in booking_commands(event, batch):
            inv.apply(command, now)
        effects = inv.take_effects()
        statements = batch_statements(True, event, claim.epoch, inv, effects, now)
        texts.append(
            (
                statements.queries(part=Part.NEW_ROWS, can_load=can_load),
                statements.queries(part=Part.REST, can_load=can_load),
            )
        )
        inv.mark_committed(effects)
        for b in effects.created:
            inv.forget(b.booking_id)
        inv.applied.clear()
        inv.orders.clear()

    latencies: list[float] = []
    booked = errors = 0
    queue = iter(texts)
    stop = 0.0
    # As in the actor, a batch's new rows go at once, and the rest only once the
    # statements of the batch before have run (its counters' update then waits for that
    # batch's row lock): the counters are absolute values, written in batch order.
    previous = asyncio.Event()
    previous.set()

    async def sender() -> None:
        nonlocal booked, errors, previous
        conn = (await connect(store.target)).driver  # as the actor connects
        try:
            while time.monotonic() < stop:
                parts = next(queue, None)
                if parts is None:
                    return
                new_rows, rest = parts
                before, ran = previous, asyncio.Event()
                previous = ran
                started = time.perf_counter()
                try:
                    # (The actor sends both parts in one query when the batch before
                    # has been written already.)
                    await send_queries(conn, new_rows, fenced=False)
                    await before.wait()
                    fenced = await send_queries(conn, rest) == 0
                finally:
                    ran.set()
                await conn.commit()
                latencies.append(time.perf_counter() - started)
                if fenced:
                    errors += batch
                else:
                    booked += batch
        finally:
            conn.close()

    meter = CpuMeter({"sender": [os.getpid()], "database": database_pids()})
    stop = time.monotonic() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(PIPELINE_DEPTH)))
    elapsed = time.perf_counter() - started
    return {
        "cpu_us_per_booking": meter.per_unit_us(booked),
        "stolen_pct": meter.stolen_pct(),
        "bookings_per_s": booked / elapsed,
        **_latency_ms(latencies),
        "errors": errors,
        "mean_batch": float(batch),
        "callers": PIPELINE_DEPTH,  # senders, one connection each
        "bookings": booked,
        "seconds": elapsed,
        "batches_prepared": len(texts),
        "ran_out": next(queue, None) is None,
    }


def store_ceiling(url: str, *, seconds: float, batch: int) -> dict[str, Any]:
    _, event = _seed(url)
    result = asyncio.run(_store_ceiling(url, event, seconds, batch))
    result.update(mode="store-ceiling", call_size=batch, transport="none", event_id=event)
    return result


def run(
    url: str, *, seconds: float, batched: bool, callers: int, call_size: int, warmup: float, transport: str = "direct"
) -> dict[str, Any]:
    from reservation.cluster import local_ray_env

    local_ray_env()  # as the server starts its local Ray
    import ray

    from actors.gateway import RemoteEventActor

    _, event = _seed(url)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        actor = RemoteEventActor.options(num_cpus=0, max_concurrency=100_000).remote(
            event, url, max_batch=10_000 if batched else 1
        )
        ray.get(actor.state.remote())
        endpoint = ray.get(actor.endpoint.remote()) if transport == "direct" else None
        size = call_size if batched else 1
        width = callers if batched else max(callers, 32)
        warm = asyncio.run(_drive(actor, event, warmup, width, size, endpoint))
        # Calls for twice the warm-up's rate, whose callers built theirs as they went
        # (and at least MIN_PREPARED_RATE, for a short or no warm-up): a run that uses
        # them all stops early ("ran_out") and its rate still counts.
        rate = max(2 * warm["bookings_per_s"], MIN_PREPARED_RATE if batched else MIN_PREPARED_RATE_UNBATCHED)
        calls = prepared_calls(event, int(rate * seconds) + size * width, size, pickled=endpoint is not None)
        actor_pid: int = ray.get(actor.__ray_call__.remote(lambda _self: os.getpid()))
        meter = CpuMeter({"actor": [actor_pid], "callers": [os.getpid()], "database": database_pids()})
        result = asyncio.run(_drive(actor, event, seconds, width, size, endpoint, calls))
        del calls
        result["cpu_us_per_booking"] = meter.per_unit_us(result["bookings"])
        result["stolen_pct"] = meter.stolen_pct()
        state = ray.get(actor.state.remote())
        result.update(mode="batched" if batched else "unbatched", callers=width, call_size=size, transport=transport,
                      warmup=warmup, actor_sold=state["sold"], event_id=event)
        return result
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--batched", dest="batched", action="store_true", default=True)
    mode.add_argument("--unbatched", dest="batched", action="store_false")
    mode.add_argument("--store-ceiling", dest="ceiling", action="store_true", default=False,
                      help="no actor: the actor's rows, built beforehand, sent straight to the database")
    parser.add_argument("--batch", type=int, default=1000, help="bookings per transaction with --store-ceiling")
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers, one call in flight each")
    parser.add_argument("--call-size", type=int, default=250, help="bookings per call when batched")
    parser.add_argument("--transport", choices=("direct", "ray"), default="direct", help="how calls reach the actor")
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    args = parser.parse_args()
    if args.ceiling:
        result = store_ceiling(args.database_url, seconds=args.seconds, batch=args.batch)
    else:
        result = run(args.database_url, seconds=args.seconds, batched=args.batched, callers=args.callers,
                     call_size=args.call_size, warmup=args.warmup, transport=args.transport)
    if not args.json:
        print(f"{result['mode']}: {result['bookings_per_s']:.0f} bookings/s, p99 {result['p99_ms']:.1f} ms, "
              f"mean batch {result['mean_batch']:.0f}", file=sys.stderr)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
