"""Prometheus metrics of a front end (and, through its replies, of the actors).

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` makes every worker write
its samples to that directory and ``/metrics`` aggregates them.

The hot paths count into plain Python numbers (``counter``, ``histogram`` and
``gauge`` below) that ``flush`` hands to prometheus_client in bulk: a front end
flushes every ``FLUSH_EVERY_S`` and before it renders ``/metrics``. In multiprocess
mode each prometheus_client update takes a lock and writes a memory-mapped file, 1.5
to 3.4 µs on the 2-core machine; a booking request made four of them, about a tenth
of a front end's time per booking. A scrape therefore sees the other workers' counts
as of their last flush, at most ``FLUSH_EVERY_S`` old; a worker that is killed loses
what it had not flushed.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from reservation.errors import Unavailable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

REQUESTS = Counter("reservation_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "reservation_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
BOOKINGS = Counter("reservation_bookings_total", "Order outcomes per event item", ["outcome"])
BOOKING_LATENCY = Histogram(
    "reservation_booking_seconds",
    "Time to answer an order (holds and confirms included)",
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "reservation_actor_batch_size",
    "Commands per actor group commit",
    buckets=SIZE_BUCKETS,
)
CALL_SIZE = Histogram(
    "reservation_actor_call_size",
    "Commands per front-end call to an actor (front-end coalescing)",
    buckets=SIZE_BUCKETS,
)
COMMIT_SECONDS = Histogram(
    "reservation_actor_commit_seconds",
    "Duration of an actor's group commit",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
QUEUE_DEPTH = Gauge(
    "reservation_actor_queue_depth",
    "Commands waiting in this front end for an actor call",
    multiprocess_mode="livesum",
)
HOLDS_OPEN = Gauge(
    "reservation_holds_open_seats",
    "Seats held and not yet confirmed, over the events this front end talks to (as last reported)",
    multiprocess_mode="max",
)
SHED = Counter(
    "reservation_shed_total",
    "Requests answered 503, by problem kind: overloaded (an event's queue was full), store-unavailable, unavailable",
    ["kind"],
)


FLUSH_EVERY_S = 1.0


class BufferedCount:
    """A counter child's increments, held until the next ``flush``."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.pending = 0.0

    def inc(self, amount: float = 1) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self._child.inc(amount)


class BufferedHistogram:
    """A histogram child's observations, bucketed here and held until the next ``flush``.

    A value lands in the first bucket whose upper bound it does not exceed, as
    ``Histogram.observe`` puts it. The flush adds each bucket's count and the sum to
    the child's own values (``_buckets``, ``_sum``): prometheus_client has no public
    call that adds many observations at once. tests/unit/test_metrics.py checks the
    result against ``observe`` on the installed version.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = tuple(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        if not any(self._counts):
            return
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        self._child._sum.inc(total)
        for bucket, count in zip(self._child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class BufferedGauge:
    """A gauge child's latest value, set on the next ``flush``."""

    __slots__ = ("_child", "_value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._value: float | None = None

    def set(self, value: float) -> None:
        self._value = value

    def flush(self) -> None:
        if self._value is not None:
            value, self._value = self._value, None
            self._child.set(value)


# Keyed by the metric itself (not its id), so that a key's metric lives as long as its buffer.
_BUFFERS: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _buffer(metric: Any, labels: tuple[str, ...], kind: type) -> Any:
    key = (metric, labels)
    found = _BUFFERS.get(key)
    if found is None:
        found = _BUFFERS[key] = kind(metric.labels(*labels) if labels else metric)
    return found


def counter(metric: Counter, *labels: str) -> BufferedCount:
    """The buffered child of ``metric`` for these label values (one per process)."""
    found: BufferedCount = _buffer(metric, labels, BufferedCount)
    return found


def histogram(metric: Histogram, *labels: str) -> BufferedHistogram:
    """The buffered child of ``metric`` for these label values (one per process)."""
    found: BufferedHistogram = _buffer(metric, labels, BufferedHistogram)
    return found


def gauge(metric: Gauge, *labels: str) -> BufferedGauge:
    """The buffered child of ``metric`` for these label values (one per process)."""
    found: BufferedGauge = _buffer(metric, labels, BufferedGauge)
    return found


def count_from_zero() -> None:
    """Make the 503s a front end may shed, one series per kind (every ``Unavailable``),
    visible at zero from its start: a dashboard's rate of them then reads 0 before the
    first one, rather than no data. (In multiprocess mode only a series that has a
    value is exported; a child made here has one.)"""
    kinds, classes = set(), [Unavailable]
    while classes:
        cls = classes.pop()
        kinds.add(cls.kind)
        classes += cls.__subclasses__()
    for kind in sorted(kinds):
        counter(SHED, kind)


def flush() -> None:
    """Hand everything counted in this process since the last flush to prometheus_client."""
    for buffered in list(_BUFFERS.values()):
        buffered.flush()


async def flush_periodically(every_s: float = FLUSH_EVERY_S, sample: Callable[[], None] | None = None) -> None:
    """Flush every ``every_s`` seconds until cancelled, then once more; ``sample`` runs
    before each flush (to set gauges read off the process's state)."""
    try:
        while True:
            await asyncio.sleep(every_s)
            if sample is not None:
                sample()
            flush()
    finally:
        flush()


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
