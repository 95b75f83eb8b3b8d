"""Prometheus metrics of a front end (and, through its replies, of the actors).

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` makes every worker write
its samples to that directory and ``/metrics`` aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
SHED = Counter("reservation_shed_total", "Requests answered 503 because a queue was full or a part was down", ["kind"])


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
