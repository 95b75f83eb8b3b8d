"""Processes on this machine, read from /proc (Linux): their CPU time and their roles,
for the benchmarks' cost report and for stopping what a benchmark started."""

from __future__ import annotations

import os
from pathlib import Path


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, session, ..., utime at [11]);
    None if the process is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()


def comm(pid: int) -> str | None:
    """The process's command name (/proc/<pid>/comm); None if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None if it is gone."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_times() -> tuple[float, float]:
    """(stolen, all) CPU seconds of the whole machine since boot, summed over its CPUs
    (/proc/stat). ``stolen`` is time this virtual machine's CPUs had work and the
    hypervisor did not run them: on a shared host, one visible cause of drift in speed."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    ticks = [int(v) for v in fields[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    return ticks[7] / hz, sum(ticks) / hz


def stolen_pct(stolen_s: float, all_s: float) -> float | None:
    """The stolen share of a window's CPU time, in percent (None for no window)."""
    return 100.0 * stolen_s / all_s if all_s > 0 else None


def database_pids() -> list[int]:
    """The MariaDB/MySQL server processes on this machine (none when it runs elsewhere)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and comm(int(e)) in ("mariadbd", "mysqld")]


def server_groups(pids: list[int]) -> dict[str, list[int]]:
    """A server's processes by role: Ray's event actors, the rest of Ray (raylet, GCS,
    idle workers, dashboard), and the front ends (the HTTP workers and their parent)."""
    groups: dict[str, list[int]] = {"front ends": [], "actors": [], "ray": []}
    for pid in pids:
        name = comm(pid)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            name = None
        if name is None:  # gone
            continue
        if name.startswith("ray::") and "Actor" in name:
            groups["actors"].append(pid)
        elif name.startswith("ray::") or name in ("raylet", "gcs_server") or b"/ray/" in cmdline:
            groups["ray"].append(pid)
        else:
            groups["front ends"].append(pid)
    return groups


class CpuMeter:
    """CPU time that named groups of processes use over a window, per unit of work.

    The processes share the machine's cores, so what one unit (a booking, a request)
    costs in each group says which bounds the rate: on ``cores`` cores, a total of
    ``t`` seconds per unit allows at most ``cores / t`` units per second. A process
    that ends inside the window counts what it used until it was last seen.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items() if pids}
        self.start = self._read()
        self.end: dict[int, float] | None = None
        self._machine = machine_times()
        # The machine's (stolen, all) CPU seconds over the window, once it ends.
        self.machine = (0.0, 0.0)

    def _read(self) -> dict[int, float]:
        return {pid: used for pids in self.groups.values() for pid in pids if (used := cpu_s(pid)) is not None}

    def stop(self) -> None:
        """End the window now (``per_unit_us`` ends it if this was not called)."""
        now = self._read()
        self.end = {pid: now.get(pid, used) for pid, used in self.start.items()}
        stolen, total = machine_times()
        self.machine = (stolen - self._machine[0], total - self._machine[1])

    def seconds(self) -> dict[str, float]:
        """CPU seconds each group used in the window."""
        if self.end is None:
            self.stop()
        assert self.end is not None
        end = self.end
        return {
            name: sum(end[pid] - self.start[pid] for pid in pids if pid in end) for name, pids in self.groups.items()
        }

    def per_unit_us(self, units: int) -> dict[str, float]:
        return per_unit_us(self.seconds(), units)

    def stolen_pct(self) -> float | None:
        """The stolen share of the machine's CPU time over the window, in percent."""
        if self.end is None:
            self.stop()
        return stolen_pct(*self.machine)


def per_unit_us(seconds: dict[str, float], units: int) -> dict[str, float]:
    """Microseconds of CPU per unit of work in each group, and their ``total``."""
    used = {name: s * 1e6 / max(units, 1) for name, s in seconds.items()}
    used["total"] = sum(used.values())
    return used
