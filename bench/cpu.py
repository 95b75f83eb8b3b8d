"""CPU time of processes on this machine, from /proc (Linux), for the benchmarks' cost lines."""

from __future__ import annotations

import os


def cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_pids() -> list[int]:
    """The MariaDB/MySQL server processes on this machine (none when it runs elsewhere)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm in ("mariadbd", "mysqld"):
                found.append(int(entry))
    return found


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

    def _read(self) -> dict[int, float]:
        return {pid: used for pids in self.groups.values() for pid in pids if (used := cpu_s(pid)) is not None}

    def stop(self) -> None:
        """End the window now (``per_unit_us`` ends it if this was not called)."""
        now = self._read()
        self.end = {pid: now.get(pid, used) for pid, used in self.start.items()}

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


def per_unit_us(seconds: dict[str, float], units: int) -> dict[str, float]:
    """Microseconds of CPU per unit of work in each group, and their ``total``."""
    used = {name: s * 1e6 / max(units, 1) for name, s in seconds.items()}
    used["total"] = sum(used.values())
    return used
