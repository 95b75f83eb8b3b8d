"""The event actor keeps the cyclic collector off what its committed batches leave.

The bookings, order memos and commands a batch leaves live on in the actor; a young
collection would walk every one of them and free nothing (``EventActor._spare_gc``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from actors.event_actor import EventActor
from reservation import gc_tuning
from reservation.domain.commands import Attendee, Code, Hold, one_event_order
from reservation.domain.ids import new_id
from reservation.domain.inventory import Booking, OrderMemo
from tests.conftest import Api


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, after an actor in it has changed it."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


@pytest.mark.usefixtures("collector")
async def test_a_committed_batch_leaves_nothing_for_a_young_collection(api: Api) -> None:
    host = await api.register("host")
    customer = await api.register("customer")
    event = (await api.create_event(host, capacity=500))["id"]
    account = customer["X-Account"]
    actor = EventActor(event, api.runtime.settings.store_url)
    assert gc.get_threshold()[0] == gc_tuning.ACTOR_YOUNG
    frozen_before = gc.get_freeze_count()
    orders: list[Hold] = [
        one_event_order(new_id(), account, event, (Attendee(f"Guest {n}"),), 600.0, f"hash-{n}", None)
        for n in range(200)
    ]
    reply = await actor.submit(list(orders))
    try:
        assert [o.code for o in reply.outcomes] == [Code.OK] * 200
        state = await actor.state()
        assert state["sold"] == 200
        young = gc.get_objects(generation=0)
        left = [o for o in young if isinstance(o, (Booking, OrderMemo, Hold))]
        assert left == [], f"{len(left)} of the batch's objects are still young"
        # They are kept, though: frozen, not gone.
        assert gc.get_freeze_count() - frozen_before >= 3 * len(orders)
    finally:
        await actor.close()
