"""Event actors on a cluster of several Ray nodes (``ray.cluster_utils.Cluster``).

Each scenario starts a head and two worker nodes on this machine, all on 127.0.0.1, in
a process of its own: the rest of the session shares one local Ray, and a process joins
one Ray at a time. The head has less memory than one actor's share, so the event actors
live on the worker nodes.

Room. An event actor lives on one node, so the cluster is full when no single node has
room for one more, whatever the nodes' free memory adds up to. Two worker nodes each
hold one actor's share and a half: with an actor on each, half a share is free on each
and a whole share (and a half, with the head's) in all, and a third event's actor
waits for room. The two, left idle past ``actor_idle_when_full_s``, look at the room at
about the same time; one gives its room up and the third starts there; the other stays,
as nothing waits any more. Control: nodes with room for a second actor each; the third
starts at once and the two idle actors stay, so the stop comes from the full cluster,
not from idleness (``actor_idle_s`` is far off).

Node loss. Bookings stream to one event while the node that runs its actor is removed
without warning. Ray restarts the actor on the other worker node, which rebuilds the
event from the store; the callers retry what failed meanwhile with the same commands
(the same ids, as a client retries with its Idempotency-Key). Every booking ends up
booked exactly once, and the store's counters equal its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reservation.cluster import LOCAL_RAY_ENV
from tests.integration.own_ray import run_python

MIB = 1024 * 1024
SHARE_MB = 200
NAMESPACE = "reservation-cluster-test"
IDLE_WHEN_FULL_S = 3.0
# How long idle actors are watched: past idle_when_full_s and a few room checks.
WATCH_S = 12.0


@contextlib.contextmanager
def _cluster(node_mb: int) -> Iterator[Any]:
    """A head and two worker nodes of ``node_mb`` MiB of Ray memory each; this process
    joins it as a driver."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": SHARE_MB // 2 * MIB})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, memory=node_mb * MIB)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _gateway(url: str, **overrides: Any) -> Any:
    from actors.gateway import GatewayConfig, InventoryGateway

    return InventoryGateway(
        GatewayConfig(database_url=url, namespace=NAMESPACE, actor_memory_bytes=SHARE_MB * MIB, **overrides)
    )


async def _start(gateway: Any, event_id: str) -> None:
    """Start the event's actor, or keep it from idling, with a no-op command; waits out a
    slow start on a busy machine."""
    from reservation.domain.commands import Configure
    from reservation.domain.ids import new_id
    from reservation.errors import Unavailable

    deadline = time.monotonic() + 120
    while True:
        try:
            (outcome,) = await gateway.execute(event_id, [Configure("touch-" + new_id())])
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            continue
        assert outcome.ok, outcome
        return


async def _node_of(event_id: str) -> str:
    import ray

    from actors.gateway import actor_name

    handle = ray.get_actor(actor_name(event_id), namespace=NAMESPACE)
    node: str = await handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id())
    return node


def _alive(event_id: str) -> bool:
    from tests.integration.checks import actor_alive

    return actor_alive(event_id, NAMESPACE)


def room_scenario(node_mb: int, data_dir: str) -> dict[str, Any]:
    """One event actor per worker node, then a third event's, while the two are idle:
    which nodes the two ran on, what each node had free, how long the third waited for
    room, and which of the two stopped."""
    from actors.event_actor import free_memory_per_node
    from bench.engine import _seed

    with _cluster(node_mb) as cluster:
        url = f"sqlite+aiosqlite:///{data_dir}/reservation.db"
        first, second, third = (_seed(url)[1] for _ in range(3))
        gateway = _gateway(url, call_timeout_s=60.0, idle_s=600.0, idle_when_full_s=IDLE_WHEN_FULL_S)

        async def start() -> tuple[list[str], list[int]]:
            for event_id in (first, second):
                await _start(gateway, event_id)
            nodes = [await _node_of(event_id) for event_id in (first, second)]
            return nodes, sorted(round(free / MIB) for free in free_memory_per_node())

        nodes, free_mb = asyncio.run(start())
        started = time.monotonic()
        asyncio.run(_start(gateway, third))  # waits until there is room for it
        waited = time.monotonic() - started
        time.sleep(WATCH_S)  # the two idle actors look at the room again meanwhile
        return {
            "nodes": nodes,
            "head": cluster.head_node.node_id,
            "third_waited_s": waited,
            "stopped": [not _alive(e) for e in (first, second)],
            "free_mb": free_mb,  # on each node, head included, while the two ran
        }


def node_loss_scenario(data_dir: str) -> dict[str, Any]:
    """Book one event from several callers; remove the actor's node mid-stream; retry
    what failed with the same commands; report what was answered and what is stored."""
    from sqlalchemy import create_engine, func, select

    from bench.engine import _seed, booking_commands
    from reservation.domain.commands import Code, Hold
    from reservation.errors import ReservationError
    from reservation.store.db import sync_url
    from reservation.store.schema import bookings, events

    with _cluster(SHARE_MB * 3 // 2) as cluster:
        url = f"sqlite+aiosqlite:///{data_dir}/reservation.db"
        _, event_id = _seed(url)
        gateway = _gateway(url, call_timeout_s=20.0)
        sent: list[Hold] = []
        booked: set[str] = set()
        failed_meanwhile = 0
        # Why each command still to retry was last refused.
        refusals: dict[str, str] = {}

        async def send(commands: list[Hold]) -> list[Hold]:
            """Send; the commands still to retry (refused for a while, not for good)."""
            nonlocal failed_meanwhile
            try:
                outcomes = await gateway.execute(event_id, commands)
            except ReservationError as exc:
                failed_meanwhile += len(commands)
                refusals.update((c.booking_id, f"{type(exc).__name__}: {exc}") for c in commands)
                return commands
            again = []
            for command, outcome in zip(commands, outcomes, strict=True):
                if outcome.ok:
                    booked.add(command.booking_id)
                    refusals.pop(command.booking_id, None)
                elif outcome.code is Code.UNAVAILABLE:
                    failed_meanwhile += 1
                    refusals[command.booking_id] = f"{outcome.code}: {outcome.detail}"
                    again.append(command)
                else:
                    raise AssertionError(f"{command.booking_id}: {outcome}")
            return again

        async def caller(stop: asyncio.Event, pending: list[Hold]) -> None:
            while not stop.is_set():
                commands = booking_commands(event_id, 5)
                sent.extend(commands)
                pending.extend(await send(commands))
                await asyncio.sleep(0.01)

        async def run() -> dict[str, Any]:
            await _start(gateway, event_id)
            before = await _node_of(event_id)
            stop, pending = asyncio.Event(), []
            callers = [asyncio.create_task(caller(stop, pending)) for _ in range(4)]
            await asyncio.sleep(3.0)
            booked_before = len(booked)
            (lost,) = [n for n in cluster.list_all_nodes() if n.node_id == before]
            await asyncio.to_thread(cluster.remove_node, lost, False)  # no warning, as a machine dies
            removed_at = time.monotonic()
            # Go on until bookings are answered again for a while.
            while len(booked) < booked_before + 200 and time.monotonic() - removed_at < 90:
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*callers)
            # Retry what was refused meanwhile, with the same commands.
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                retry, pending[:] = pending[:], []
                for start in range(0, len(retry), 50):
                    pending.extend(await send(retry[start : start + 50]))
                if pending:
                    await asyncio.sleep(1.0)
            after = await _node_of(event_id)
            state = await gateway.state(event_id)
            return {
                "node_before": before,
                "node_after": after,
                "booked_before_loss": booked_before,
                "still_refused": len(pending),
                "refused_for": sorted({refusals.get(c.booking_id, "?") for c in pending}),
                "actor_sold": state["sold"],
            }

        result = asyncio.run(run())
        engine = create_engine(sync_url(url))
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(bookings.c.id, bookings.c.quantity, bookings.c.status).where(bookings.c.event_id == event_id)
                ).all()
                sold = conn.execute(select(events.c.sold, events.c.held).where(events.c.id == event_id)).one()
                rows_stored = conn.execute(select(func.count()).select_from(bookings)).scalar_one()
        finally:
            engine.dispose()
        result.update(
            sent=len(sent),
            distinct_sent=len({c.booking_id for c in sent}),
            booked=len(booked),
            failed_meanwhile=failed_meanwhile,
            stored_ids=sorted(r.id for r in rows),
            booked_ids=sorted(booked),
            stored_confirmed_seats=sum(r.quantity for r in rows if r.status == "confirmed"),
            stored_rows=rows_stored,
            sold=sold.sold,
            held=sold.held,
        )
        return result


def _run(tmp_path: Path, scenario: str, *args: object) -> dict[str, Any]:
    code = (
        "import json, sys; from tests.integration import test_cluster as t; "
        "print('RESULT ' + json.dumps(getattr(t, sys.argv[1])(*json.loads(sys.argv[2]))))"
    )
    encoded = json.dumps([str(a) if isinstance(a, Path) else a for a in args])
    # Every node on 127.0.0.1, event actors at nice 0.
    result: dict[str, Any] = run_python(code, scenario, encoded, env=LOCAL_RAY_ENV)
    return result


@pytest.mark.slow
def test_idle_actors_make_room_when_no_node_has_any(tmp_path: Path) -> None:
    result = _run(tmp_path, "room_scenario", SHARE_MB * 3 // 2, tmp_path)
    # One actor on each worker node; half a share free on each, more than a share in all.
    assert len(set(result["nodes"])) == 2 and result["head"] not in result["nodes"], result
    assert sum(result["free_mb"]) >= SHARE_MB, result
    # One gave its room up to the third, not both.
    assert sorted(result["stopped"]) == [False, True], result


@pytest.mark.slow
def test_control_idle_actors_stay_while_a_node_has_room(tmp_path: Path) -> None:
    result = _run(tmp_path, "room_scenario", SHARE_MB * 5 // 2, tmp_path)
    assert result["head"] not in result["nodes"], result
    assert result["stopped"] == [False, False], result


@pytest.mark.slow
def test_losing_the_actors_node_under_load_books_everything_once(tmp_path: Path) -> None:
    r = _run(tmp_path, "node_loss_scenario", tmp_path)
    summary = {k: v for k, v in r.items() if not k.endswith("_ids")}
    # The actor moved to the other worker node, and bookings went on there.
    assert r["node_after"] != r["node_before"], summary
    assert r["booked_before_loss"] > 0 and r["booked"] > r["booked_before_loss"], summary
    # Every booking sent was booked in the end, once: answered, stored, counted.
    assert r["still_refused"] == 0, (r["refused_for"], summary)
    assert r["distinct_sent"] == r["sent"] == r["booked"], summary
    assert r["stored_ids"] == r["booked_ids"], summary
    assert r["stored_rows"] == r["sent"], summary
    assert r["sold"] == r["stored_confirmed_seats"] == r["actor_sold"] == r["sent"] and r["held"] == 0, summary
