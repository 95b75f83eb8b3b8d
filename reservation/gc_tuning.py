"""How often the cyclic garbage collector runs in the processes on the booking path.

CPython starts a young-generation pass every 700 container objects allocated (and not
yet freed). A front end or an actor under load allocates far more than that per
batch: one reply of 500 bookings unpickles into some 4,000 objects, nearly all of
them freed by reference counting moments later. With the default threshold the
collector walked each of them several times on its way to the old generation, which
cost more than the unpickling itself (2.6 vs 7.4 us per booking, measured with the
collector off and on). Passes every 50,000 allocations leave the collector its job
(reference cycles still go, a little later) at a fraction of the cost. An event actor
keeps most of what it allocates, and goes further (``ACTOR_YOUNG``).
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # allocations between young-generation passes (CPython's default: 700)
MIDDLE = 20  # young passes per middle-generation pass (default 10)
OLD = 10  # middle passes per full pass (default 10)
# An event actor freezes what each committed batch leaves (EventActor._spare_gc), which
# also restarts the count: its young passes are for when commits stop for a long while.
ACTOR_YOUNG = 1_000_000


def tune(young: int = YOUNG) -> None:
    """Apply the thresholds above to this process's collector."""
    gc.set_threshold(young, MIDDLE, OLD)
