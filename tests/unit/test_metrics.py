"""Buffered metrics: what ``flush`` hands to prometheus_client is what direct calls
would have recorded, bucket by bucket, on the installed prometheus_client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from reservation.api import metrics
from reservation.api.metrics import BufferedCount, BufferedGauge, BufferedHistogram

BOUNDS = metrics.LATENCY_BUCKETS
# Values on the bounds themselves are where an off-by-one bucket shows.
amounts = st.lists(
    st.one_of(
        st.sampled_from(BOUNDS),
        st.floats(min_value=0, max_value=20, allow_nan=False),
        st.sampled_from([0.0, 10.0000001, 1e9]),
    ),
    max_size=60,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def pair(kind: type, **kwargs: Any) -> tuple[Any, Any, CollectorRegistry, CollectorRegistry]:
    direct_registry, buffered_registry = CollectorRegistry(), CollectorRegistry()
    direct = kind("m", "m", ["route"], registry=direct_registry, **kwargs).labels("/r")
    buffered = kind("m", "m", ["route"], registry=buffered_registry, **kwargs).labels("/r")
    return direct, buffered, direct_registry, buffered_registry


def rounds(flushes: list[list[Any]], direct: Any, buffered: Any, record: str) -> Iterator[None]:
    """Record each round's values on both children, flush the buffered one, then yield."""
    for values in flushes:
        for value in values:
            getattr(direct, record)(value)
            getattr(buffered, record)(value)
        buffered.flush()
        yield


@given(st.lists(amounts, min_size=1, max_size=4))
def test_a_flushed_histogram_equals_one_observed_directly(flushes: list[list[float]]) -> None:
    direct, child, direct_registry, buffered_registry = pair(Histogram, buckets=BOUNDS)
    for _ in rounds(flushes, direct, BufferedHistogram(child), "observe"):
        got, want = samples(buffered_registry), samples(direct_registry)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


@given(st.lists(st.lists(st.integers(min_value=0, max_value=5), max_size=20), min_size=1, max_size=4))
def test_a_flushed_counter_equals_one_counted_directly(flushes: list[list[int]]) -> None:
    direct, child, direct_registry, buffered_registry = pair(Counter)
    for _ in rounds(flushes, direct, BufferedCount(child), "inc"):
        assert samples(buffered_registry) == samples(direct_registry)


def test_nothing_reaches_prometheus_before_a_flush_and_a_gauge_keeps_its_last_value() -> None:
    _, child, _, registry = pair(Histogram, buckets=BOUNDS)
    buffered = BufferedHistogram(child)
    buffered.observe(0.003)
    assert samples(registry)[("m_count", (("route", "/r"),))] == 0
    buffered.flush()
    assert samples(registry)[("m_count", (("route", "/r"),))] == 1
    assert samples(registry)[("m_bucket", (("le", "0.005"), ("route", "/r")))] == 1
    assert samples(registry)[("m_bucket", (("le", "0.0025"), ("route", "/r")))] == 0

    _, gauge_child, _, gauge_registry = pair(Gauge)
    gauge = BufferedGauge(gauge_child)
    gauge.set(7)
    gauge.set(3)
    assert samples(gauge_registry)[("m", (("route", "/r"),))] == 0
    gauge.flush()
    gauge.flush()  # nothing new: the value stays
    assert samples(gauge_registry)[("m", (("route", "/r"),))] == 3


def test_one_buffer_per_metric_and_labels_and_flush_reaches_all() -> None:
    registry = CollectorRegistry()
    counted = Counter("buffered_total", "b", ["kind"], registry=registry)
    a, b = metrics.counter(counted, "a"), metrics.counter(counted, "b")
    assert metrics.counter(counted, "a") is a and a is not b
    a.inc(2)
    b.inc()
    metrics.flush()
    got = samples(registry)
    assert (got[("buffered_total", (("kind", "a"),))], got[("buffered_total", (("kind", "b"),))]) == (2, 1)
