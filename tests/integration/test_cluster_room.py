"""Room for event actors on a cluster of several nodes (``ray.cluster_utils.Cluster``).

An event actor lives on one node, so the cluster is full when no single node has room
for one more, whatever the nodes' free memory adds up to. Two worker nodes each hold
one actor's share and a half: with an actor on each, half a share is free on each and
a whole share (and a half, with the head's) in all, and no third actor fits. Left idle
past ``actor_idle_when_full_s``, one of the two stops and gives its room up; then the
cluster has room again, and the other stays.

Control: nodes with room for a second actor each. The two idle actors then stay: the
stop above comes from the full cluster, not from idleness (``actor_idle_s`` is far off).

Each scenario runs in a process of its own, since the rest of the session shares one
local Ray and a process joins one Ray at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SHARE_MB = 200
IDLE_WHEN_FULL_S = 2.0
# How long the actors are left idle: past idle_when_full_s and a few room checks.
WATCH_S = 20.0


def _scenario(node_mb: int, data_dir: str) -> dict[str, Any]:
    """Start a head and two worker nodes of ``node_mb`` MiB each, one event actor per
    worker node, leave both idle, and tell which nodes they ran on and which stopped."""
    import ray
    from ray.cluster_utils import Cluster

    from actors.event_actor import free_memory_per_node
    from actors.gateway import GatewayConfig, InventoryGateway, actor_name
    from bench.engine import _seed
    from reservation.domain.commands import Configure

    namespace = "reservation-cluster-room"
    # The head takes no actor: it has less memory than one share.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": SHARE_MB // 2 * MIB})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, memory=node_mb * MIB)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False, configure_logging=False)
        url = f"sqlite+aiosqlite:///{data_dir}/reservation.db"
        events = [_seed(url)[1] for _ in range(2)]
        config = GatewayConfig(
            database_url=url,
            namespace=namespace,
            call_timeout_s=60.0,
            idle_s=600.0,
            actor_memory_bytes=SHARE_MB * MIB,
            idle_when_full_s=IDLE_WHEN_FULL_S,
        )

        async def start() -> tuple[list[str], list[int]]:
            gateway = InventoryGateway(config)
            for event_id in events:
                (outcome,) = await gateway.execute(event_id, [Configure("start-" + event_id)])
                assert outcome.ok, outcome
            nodes = []
            for event_id in events:
                handle = ray.get_actor(actor_name(event_id), namespace=namespace)
                nodes.append(await handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id()))
            return nodes, sorted(round(free / MIB) for free in free_memory_per_node())

        nodes, free_mb = asyncio.run(start())

        def alive(event_id: str) -> bool:
            try:
                ray.get_actor(actor_name(event_id), namespace=namespace)
            except ValueError:
                return False
            return True

        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline and any(alive(e) for e in events):
            time.sleep(0.5)  # the whole time: one stopping must not be followed by the other
        return {
            "nodes": nodes,
            "head": cluster.head_node.node_id,
            "stopped": [not alive(e) for e in events],
            # Free on each node (head included) while both actors ran.
            "free_mb": free_mb,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


def _run(node_mb: int, tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RESERVATION_"))}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every node on 127.0.0.1
    code = (
        "import json, sys; from tests.integration.test_cluster_room import _scenario; "
        "print('RESULT ' + json.dumps(_scenario(int(sys.argv[1]), sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(node_mb), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


@pytest.mark.slow
def test_idle_actors_make_room_when_no_node_has_any(tmp_path: Path) -> None:
    result = _run(SHARE_MB * 3 // 2, tmp_path)
    # One actor on each worker node; half a share free on each, a whole share in all.
    assert len(set(result["nodes"])) == 2 and result["head"] not in result["nodes"], result
    assert sum(result["free_mb"]) >= SHARE_MB, result
    assert sorted(result["stopped"]) == [False, True], result


@pytest.mark.slow
def test_control_idle_actors_stay_while_a_node_has_room(tmp_path: Path) -> None:
    result = _run(SHARE_MB * 5 // 2, tmp_path)
    assert result["head"] not in result["nodes"], result
    assert result["stopped"] == [False, False], result
