"""Event actors run at the front ends' CPU priority, not below it.

Ray starts its worker processes at nice 15 unless ``RAY_worker_niceness`` says
otherwise. An event actor is the serial point of its event's bookings: at nice 15 it
waits for a core behind the front ends and the database whenever the node is busy,
and every caller of the event waits with it. ``join_ray`` (how the server starts its
local Ray) sets the niceness to 0.

Negative control: with ``RAY_worker_niceness=15`` already in the environment (a value
set by the operator wins), the same probe finds the actor at 15, so the probe reads the
actor's real niceness.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.own_ray import run_python

# Starts a local Ray the way the server does, once as it is and once with the
# operator's niceness preset to 15; each time reads an event actor's niceness and the
# niceness of this process (the front end's).
PROBE = """
import json, os, sys
import ray
from actors.gateway import RemoteEventActor
from reservation.cluster import join_ray
from reservation.config import Settings

found = []
for preset in (None, "15"):
    if preset is not None:
        os.environ["RAY_worker_niceness"] = preset
    join_ray(Settings(ray_namespace="priority-probe"))
    actor = RemoteEventActor.options(num_cpus=0).remote("probe", sys.argv[1])
    pid = ray.get(actor.pid.remote(), timeout=120)
    found.append({"actor": os.getpriority(os.PRIO_PROCESS, pid), "front_end": os.getpriority(os.PRIO_PROCESS, 0)})
    ray.shutdown()
print("RESULT " + json.dumps(found))
"""


def test_event_actors_run_at_the_front_ends_priority(tmp_path: Path) -> None:
    as_is, preset = run_python(PROBE, f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    assert as_is["actor"] == as_is["front_end"], as_is
    # Negative control: the operator's value is kept, and the probe sees it.
    assert preset["actor"] == 15 != preset["front_end"], preset
