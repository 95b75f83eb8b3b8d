"""bench.cpu's window over the whole machine: its CPU time, and the hypervisor's share."""

from __future__ import annotations

import os
import time

from bench.cpu import CpuMeter, stolen_pct


def test_a_window_counts_the_machines_cpu_time_and_what_was_stolen() -> None:
    meter = CpuMeter({"self": [os.getpid()]})
    started = time.monotonic()
    while time.monotonic() - started < 0.5:  # keep one CPU busy
        pass
    meter.stop()
    wall = time.monotonic() - started
    stolen, total = meter.machine
    cores = os.cpu_count() or 1
    # Every CPU's time passes, busy, idle or stolen: about cores x wall seconds.
    assert 0.8 * cores * wall <= total <= 1.2 * cores * wall + 0.05, (total, wall)
    # This process's own time is part of it.
    assert 0.3 <= meter.seconds()["self"] <= total
    assert 0 <= stolen <= total
    pct = meter.stolen_pct()
    assert pct is not None and 0 <= pct <= 100
    assert stolen_pct(1.0, 4.0) == 25.0 and stolen_pct(0.0, 0.0) is None
