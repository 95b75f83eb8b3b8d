"""bench.compare's rounds: a target's runs reported as one, latencies pooled exactly."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.compare import PERCENTILES, WrkRun, merge_runs

samples = st.lists(st.integers(min_value=30, max_value=2_000_000), min_size=1, max_size=400)


def _run(latencies_us: list[int], status: str, cpu: dict[str, float], stolen_s: float = 0.0) -> WrkRun:
    """A run as bench/wrk/common.lua reports it: counts and every latency with its count."""
    hist = Counter(latencies_us)
    values = sorted(hist)
    n = len(latencies_us)
    report = {
        "duration_s": 1.0,
        "requests": n,
        "bytes": 100 * n,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 0, "timeout": 0},
        "sent": n,
        "answered": n,
        "statuses": {status: n},
        "drain_s": [0.001],
        "latency_ms": {"percentiles": {p: -1.0 for p in PERCENTILES}, "min": -1.0, "max": -1.0},
        "latency_us": {"values": values, "counts": [hist[v] for v in values]},
    }
    return WrkRun(report, 5.0, cpu.get("wrk", 0.0), 5.5, cpu, (stolen_s, 11.0))


def _percentile_ms(pooled: list[int], p: str) -> float:
    """The p-th percentile as wrk ranks it: the value at rank floor(p/100 * n + 1)."""
    ordered = sorted(pooled)
    rank = min(len(ordered), math.floor(float(p) / 100 * len(ordered) + 1))
    return ordered[rank - 1] / 1000.0


@settings(max_examples=200, deadline=None)
@given(st.lists(samples, min_size=2, max_size=5))
def test_rounds_merge_into_the_run_of_all_their_requests(rounds: list[list[int]]) -> None:
    runs = [
        _run(latencies, "200" if i % 2 == 0 else "503", {"wrk": 0.5, "front ends": 1.0 + i}, stolen_s=0.25 * i)
        for i, latencies in enumerate(rounds)
    ]
    merged = merge_runs(runs)
    pooled = [v for latencies in rounds for v in latencies]
    rep = merged.report

    assert rep["requests"] == rep["sent"] == rep["answered"] == len(pooled)
    assert rep["bytes"] == 100 * len(pooled)
    assert rep["errors"]["read"] == len(rounds)
    assert rep["statuses"].get("200", 0) + rep["statuses"].get("503", 0) == len(pooled)
    assert rep["statuses"]["200"] == sum(len(r) for r in rounds[::2])
    assert merged.seconds == 5.0 * len(rounds)
    assert merged.wall_s == 5.5 * len(rounds)
    assert merged.cpu_s == 0.5 * len(rounds)
    assert merged.cpu["front ends"] == sum(1.0 + i for i in range(len(rounds)))
    assert merged.machine == (sum(0.25 * i for i in range(len(rounds))), 11.0 * len(rounds))

    lat = rep["latency_ms"]
    for p in PERCENTILES:
        assert lat["percentiles"][p] == _percentile_ms(pooled, p), p
    assert lat["min"] == min(pooled) / 1000.0
    assert lat["max"] == max(pooled) / 1000.0
    assert math.isclose(lat["mean"], sum(pooled) / len(pooled) / 1000.0, rel_tol=1e-9)
    assert sum(rep["latency_us"]["counts"]) == len(pooled)


def test_one_round_is_reported_as_wrk_reported_it() -> None:
    run = _run([100, 200, 300], "200", {"wrk": 0.1})
    assert merge_runs([run]) is run
