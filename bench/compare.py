"""Side-by-side peak-load benchmark on this machine, in one run: ``python -m bench.compare``.

It starts everything it measures, drives each HTTP target with the same load generator
(wrk, with the Lua scripts in ``bench/wrk/``) for the same time after the same warm-up,
and reports requests/s, p50/p90/p99 latency, errors and the CPU share wrk itself used.
The floor and the reads, served by the same server, take turns in ``--rounds`` rounds
so that drift in the machine's speed falls on them alike:

* floor: ``GET /healthz`` of our server (the HTTP stack's own ceiling);
* ours: durable bookings on one hot event (``POST /api/orders``) on MariaDB and on SQLite;
* ours, reads: ``GET /api/events`` and ``GET /api/events/{id}`` (MariaDB);
* baseline: ``bench/baseline.py`` (FastAPI + aiomysql, one transaction per booking), same
  request body, same tokens, same MariaDB server;
* engine: ``python -m bench.engine`` (one event actor driven directly, no HTTP), batched
  and unbatched; reported as missing if that module is absent or fails;
* store ceiling: ``python -m bench.engine --store-ceiling``, the rows the actor writes
  for its batches, built beforehand and sent straight to MariaDB at the batch size the
  batched engine ran at: what the store itself accepts, which the engine cannot beat.

After every booking phase it checks the store: seats taken never above capacity +
oversell, the event's counters equal its booking rows, and the 201 answers wrk counted
equal the confirmed booking rows created (and the sold delta); after every engine run,
the same of the engine's event and every booking it counted. A failed check is printed
loudly and the exit status is 1. It also reports the CPU each target used per request
(per committed booking for the engine rows), read from /proc and split by role: the
server's front ends, its event actors, the rest of Ray, MariaDB and the load generator.
Results go to ``bench/results/compare-<time>.json`` and ``.png`` (or ``--out DIR``), and
Markdown tables are printed.

    python -m bench.compare [--seconds 20] [--warmup 5] [--rounds 4] [--connections 64]
                            [--threads 2] [--workers 2] [--tiny] [--out DIR] [--mysql-url URL]

Needs MariaDB/MySQL (``--mysql-url``, default ``$RESERVATION_TEST_MYSQL_URL`` or
``mysql+aiomysql://root@127.0.0.1:3306``): it creates ``reservation_bench_<hex>*``
databases there and drops them at the end. Needs ``wrk`` (installed with apt-get when
running as root) and matplotlib (installed with pip when missing).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine, make_url

from bench.cpu import CpuMeter, database_pids, per_unit_us, proc_stat, server_groups, stolen_pct

ROOT = Path(__file__).resolve().parents[1]
WRK_DIR = ROOT / "bench" / "wrk"
RESULTS_DIR = ROOT / "bench" / "results"
MYSQL_ENV = "RESERVATION_TEST_MYSQL_URL"
DEFAULT_MYSQL = "mysql+aiomysql://root@127.0.0.1:3306"
# The reads' Accept-Encoding by default: what locust's FastHttpUser sends, as browsers do.
READS_ACCEPT = "gzip, deflate, br"
HOT_CAPACITY = 10_000_000  # the schema's maximum: the hot event never sells out in a run
HOT_OVERSELL = 1_000
BUFFER_POOL_BYTES = 2 << 30
PASSWORD = "bench-password-1"
TOKEN_TTL_S = 12 * 3600
BENCH_JSON = "BENCH_JSON "


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    kind: str  # "floor", "booking", "read", "baseline", "engine", "ceiling"


TARGETS: tuple[Target, ...] = (
    Target("floor_healthz", "floor: GET /healthz", "floor"),
    Target("ours_bookings_mariadb", "ours: POST /api/orders (MariaDB)", "booking"),
    Target("ours_bookings_sqlite", "ours: POST /api/orders (SQLite)", "booking"),
    Target("ours_reads_list", "ours: GET /api/events", "read"),
    Target("ours_reads_detail", "ours: GET /api/events/{id}", "read"),
    Target("baseline_bookings_mariadb", "baseline: FastAPI+aiomysql (MariaDB)", "baseline"),
    Target("engine_batched", "engine: actor, batched (MariaDB, no HTTP)", "engine"),
    Target("engine_unbatched", "engine: actor, unbatched (MariaDB, no HTTP)", "engine"),
    Target("store_ceiling", "store ceiling: the engine's rows, no actor (MariaDB)", "ceiling"),
)
BY_KEY = {t.key: t for t in TARGETS}


# Targets that run together (one server start each); ``--only`` picks some of them.
GROUPS = ("mariadb", "sqlite", "baseline", "engine")
# The groups that need a MariaDB/MySQL server; ``--only sqlite`` runs without one.
MARIADB_GROUPS = frozenset({"mariadb", "baseline", "engine"})


class BenchError(Exception):
    """The benchmark could not run (a target did not start, wrk failed...)."""


_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup: float
    connections: int
    threads: int
    workers: int
    accounts: int
    extra_events: int
    max_drain: float
    tiny: bool
    out: Path
    mysql_url: str
    keep: bool
    only: frozenset[str] = frozenset(GROUPS)
    size_buffer_pool: bool = True
    # The floor and the reads take turns in this many rounds (see Bench.measure_gets).
    rounds: int = 4
    # The Accept-Encoding of the floor's and the reads' requests ("" sends none).
    accept_encoding: str = ""


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Peak-load benchmark: floor, ours (MariaDB, SQLite, reads), baseline and engine, side by side.",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per target (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up load per target before it (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of ours and the baseline (default 2)")
    parser.add_argument("--accounts", type=int, help="customer accounts the bookings rotate over (default 1000)")
    parser.add_argument("--max-drain", type=float, default=10.0, help="longest wait for answers after the load")
    parser.add_argument("--tiny", action="store_true", help="a quick check: 2 s per target, 1 s warm-up, 8 connections")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON and PNG go (bench/results)")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get(MYSQL_ENV) or DEFAULT_MYSQL,
        help=f"MariaDB/MySQL server (no database), default ${MYSQL_ENV} or {DEFAULT_MYSQL}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, SQLite store)")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help="comma-separated groups to run: mariadb (floor, reads and bookings), sqlite, baseline, engine "
        "(default: all; ratios need floor and baseline in the same run; sqlite alone needs no MariaDB)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds in which the floor and the reads take turns (default 4; 2 with --tiny)",
    )
    parser.add_argument(
        "--accept-encoding",
        default=READS_ACCEPT,
        help=f"Accept-Encoding of the floor's and the reads' requests (default {READS_ACCEPT!r}, what browsers and "
        "locust's FastHttpUser send; 'identity' asks for uncompressed answers)",
    )
    parser.add_argument(
        "--keep-buffer-pool",
        action="store_true",
        help="leave innodb_buffer_pool_size as it is (by default it is raised to 2 GiB for the run and restored)",
    )
    args = parser.parse_args(argv)
    only = frozenset(g.strip() for g in args.only.split(",") if g.strip())
    if not only or not only <= set(GROUPS):
        parser.error(f"--only takes some of: {', '.join(GROUPS)}")
    if args.tiny:
        args.seconds, args.warmup, args.connections = 2.0, 1.0, min(args.connections, 8)
        args.max_drain = min(args.max_drain, 5.0)
    accounts = args.accounts or (200 if args.tiny else 1000)
    rounds = args.rounds if args.rounds is not None else 2 if args.tiny else 4
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.seconds <= 0 or args.warmup < 0 or args.connections < 1 or args.threads < 1 or args.workers < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --connections, --threads, --workers >= 1")
    if args.threads > args.connections:
        parser.error("--threads cannot exceed --connections (wrk gives every thread its connections)")
    if make_url(args.mysql_url).get_backend_name() not in ("mysql", "mariadb"):
        parser.error("--mysql-url must be a mysql+aiomysql:// URL")
    return Options(
        seconds=args.seconds,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        workers=args.workers,
        accounts=accounts,
        extra_events=5 if args.tiny else 20,
        max_drain=args.max_drain,
        tiny=args.tiny,
        out=args.out,
        mysql_url=args.mysql_url,
        keep=args.keep,
        only=only,
        size_buffer_pool=not args.keep_buffer_pool and not args.tiny,
        rounds=rounds,
        accept_encoding=args.accept_encoding,
    )


# ---------------------------------------------------------------- processes


def _start_time(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def family(leader: int) -> dict[int, int]:
    """pid -> start time of every process in ``leader``'s session or descending from it."""
    parents: dict[int, list[int]] = defaultdict(list)
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))) is not None:
            stats[int(entry)] = fields
            parents[int(fields[1])].append(int(entry))
    members = {pid for pid, fields in stats.items() if int(fields[3]) == leader}
    members.add(leader)
    todo = list(members)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in members:
                members.add(child)
                todo.append(child)
    return {pid: int(stats[pid][19]) for pid in members if pid in stats}


def _signal_known(pids: dict[int, int], sig: signal.Signals) -> int:
    """Send ``sig`` to those of ``pids`` still alive and still the same process; count them."""
    alive = 0
    for pid, started in pids.items():
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                alive += 1
    return alive


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes] | None


class Processes:
    """Everything the benchmark starts, each in a session of its own; stopped by process id.

    Stopping sends SIGTERM to the process started (uvicorn stops its workers, a Ray
    driver its Ray processes), escalates to SIGKILL on its process group, then ends
    whatever is left of its family: Ray puts its workers in process groups of their own,
    but they stay in the session and below the process started.
    """

    def __init__(self) -> None:
        self.started: list[Started] = []
        self.stopping: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ) -> subprocess.Popen[bytes]:
        log = log_path.open("wb")
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError:
            log.close()
            raise
        with self._lock:
            self.started.append(Started(name, proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
        with self._lock:
            entry = next((s for s in self.started if s.proc is proc), None)
            if entry is None:
                return  # already stopped
            self.started.remove(entry)
        try:
            members = family(proc.pid)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace_s)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            members.update(family(proc.pid))  # what its session started meanwhile
            members.pop(proc.pid, None)
            if _signal_known(members, signal.SIGTERM):
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and any(_start_time(p) == t for p, t in members.items()):
                    time.sleep(0.1)
                _signal_known(members, signal.SIGKILL)
        finally:
            if entry.log is not None:
                entry.log.close()

    def stop_later(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop in the background (while the next target starts); ``settle`` waits for it."""

        def run() -> None:
            try:
                self.stop(proc)
            except Exception as exc:
                print(f"could not stop pid {proc.pid}: {exc}", file=sys.stderr)

        thread = threading.Thread(target=run, name=f"stop {proc.pid}")
        thread.start()
        self.stopping.append(thread)

    def settle(self) -> None:
        """Wait until everything being stopped has stopped (before measuring anything)."""
        for thread in self.stopping:
            thread.join()
        self.stopping.clear()

    def stop_all(self) -> None:
        self.settle()
        for entry in reversed(list(self.started)):
            try:
                self.stop(entry.proc, grace_s=10.0)
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {entry.name} (pid {entry.proc.pid}): {exc}", file=sys.stderr)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray/reservation settings (each target gets its own)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "RESERVATION_")) and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # not listening yet, or not yet HTTP
            pass
        if proc.poll() is not None:
            raise BenchError(f"{url} did not come up (exit {proc.returncode}):\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{url} not ready after {timeout_s:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.3)


# -------------------------------------------------------------------- set-up


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            "bench.compare needs wrk on PATH. On Debian/Ubuntu: sudo apt-get install -y wrk "
            "(run as root and bench.compare installs it itself)."
        )
    progress("wrk is missing: installing it (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(f"could not install wrk with apt-get:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return found


def ensure_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        progress("matplotlib is missing: installing it (pip install matplotlib)")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise SystemExit(f"could not install matplotlib:\n{result.stdout[-2000:]}{result.stderr[-2000:]}") from None
        importlib.invalidate_caches()
        importlib.import_module("matplotlib")


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0].strip() if (result.stdout or result.stderr) else "?"


# ----------------------------------------------------------------- databases


class MariaDB:
    """The MariaDB server: creates this run's databases and drops them at the end.

    ``size_buffer_pool`` makes InnoDB's buffer pool at least ``BUFFER_POOL_BYTES`` for the
    run and puts the old size back at the end. MariaDB's default (128 MiB) is smaller
    than what a 20 s booking run writes with its indexes; past it, every insert into a
    random-key index waits on a disk read and the figures measure the disk. Every
    target runs on the same server with the same setting.
    """

    def __init__(self, server_url: str, prefix: str) -> None:
        from reservation.store.db import sync_url

        self.server_url = server_url
        self.prefix = prefix
        self.admin = create_engine(sync_url(server_url), pool_pre_ping=True)
        self.created: list[str] = []
        try:
            with self.admin.connect() as conn:
                self.version = str(conn.execute(text("SELECT VERSION()")).scalar())
            self.buffer_pool = self.buffer_pool_before = self._pool_size()
        except Exception as exc:
            self.admin.dispose()
            raise SystemExit(f"MariaDB/MySQL at {server_url} is not reachable ({exc}); see --mysql-url") from None

    def size_buffer_pool(self) -> None:
        if self.buffer_pool >= BUFFER_POOL_BYTES:
            return
        try:
            with self.admin.begin() as conn:
                conn.execute(text(f"SET GLOBAL innodb_buffer_pool_size = {BUFFER_POOL_BYTES}"))
            deadline = time.monotonic() + 60
            while self._pool_size() < BUFFER_POOL_BYTES and time.monotonic() < deadline:
                time.sleep(0.5)
        except Exception as exc:
            progress(f"could not grow innodb_buffer_pool_size ({exc}); bookings may be bound by disk reads")
        self.buffer_pool = self._pool_size()

    def _pool_size(self) -> int:
        with self.admin.connect() as conn:
            return int(conn.execute(text("SELECT @@innodb_buffer_pool_size")).scalar() or 0)

    def create(self, suffix: str = "") -> str:
        name = self.prefix + suffix
        with self.admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.created:
            try:
                with self.admin.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            except Exception as exc:
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
        self.created.clear()
        if self.buffer_pool != self.buffer_pool_before:
            try:
                with self.admin.begin() as conn:
                    conn.execute(text(f"SET GLOBAL innodb_buffer_pool_size = {self.buffer_pool_before}"))
            except Exception as exc:
                print(f"could not restore innodb_buffer_pool_size: {exc}", file=sys.stderr)
        self.admin.dispose()


@dataclass(frozen=True)
class Accounts:
    host_id: str
    host_token: str
    customer_ids: list[str]
    tokens: list[str]


def make_accounts(count: int, secret: str) -> Accounts:
    from reservation.auth import Principal, Role, issue_token
    from reservation.domain.ids import new_id

    host_id = new_id()
    ids = [new_id() for _ in range(count)]
    return Accounts(
        host_id=host_id,
        host_token=issue_token(Principal(host_id, Role.HOST), secret, TOKEN_TTL_S),
        customer_ids=ids,
        tokens=[issue_token(Principal(i, Role.CUSTOMER), secret, TOKEN_TTL_S) for i in ids],
    )


def seed_store(url: str, accounts: Accounts, run_id: str) -> None:
    """Migrate ``url`` and insert the host and the customers (one shared password hash)."""
    from reservation.auth import hash_password
    from reservation.store.db import migrate, sync_url
    from reservation.store.schema import users

    migrate(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    password_hash = hash_password(PASSWORD)
    rows = [
        {
            "id": accounts.host_id,
            "name": "Bench Host",
            "email": f"bench-host-{run_id}@example.com",
            "password_hash": password_hash,
            "role": "host",
            "created_at": now,
            "updated_at": now,
        }
    ]
    rows += [
        {
            "id": account_id,
            "name": f"Bench Customer {n}",
            "email": f"bench-{n}-{run_id}@example.com",
            "password_hash": password_hash,
            "role": "customer",
            "created_at": now,
            "updated_at": now,
        }
        for n, account_id in enumerate(accounts.customer_ids)
    ]
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(users.insert(), rows)
    finally:
        engine.dispose()


# The server's group-commit figures: (histogram, sample) pairs read off /metrics.
COMMIT_SAMPLES = {
    "commits": "reservation_actor_batch_size_count",
    "commands": "reservation_actor_batch_size_sum",
    "calls": "reservation_actor_call_size_count",
    "call_commands": "reservation_actor_call_size_sum",
}


def commit_samples(base: str) -> dict[str, float]:
    """Our server's group-commit counters now, from its ``/metrics`` (all workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        text_ = r.read().decode()
    found = {s.name: s.value for family in text_string_to_metric_families(text_) for s in family.samples}
    return {key: found.get(name, 0.0) for key, name in COMMIT_SAMPLES.items()}


def group_commits(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the actors committed between two ``commit_samples``: commits, the commands in
    them, the front ends' calls, and the means (commands per commit and per call)."""
    delta = {key: after[key] - before[key] for key in COMMIT_SAMPLES}
    return {
        "commits": delta["commits"],
        "commands": delta["commands"],
        "calls": delta["calls"],
        "mean_batch": delta["commands"] / delta["commits"] if delta["commits"] else 0.0,
        "mean_call": delta["call_commands"] / delta["calls"] if delta["calls"] else 0.0,
    }


def http_json(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{method} {url} answered {exc.code}: {exc.read()[:500]!r}") from None


def create_events(base: str, host_token: str, extra: int) -> str:
    """The hot event (never sells out in a run) and a few others to list; returns the hot id."""

    def event(title: str, day: int, capacity: int, oversell: int) -> dict[str, Any]:
        return {
            "title": title,
            "description": "Created by bench.compare",
            "venue": "Bench Hall",
            "starts_at": f"2031-01-{day:02d}T20:00:00Z",
            "ends_at": f"2031-01-{day:02d}T23:00:00Z",
            "capacity": capacity,
            "oversell_capacity": oversell,
            "price": {"amount": 2500, "currency": "EUR"},
        }

    hot = http_json("POST", f"{base}/api/events", event("Hot on-sale", 1, HOT_CAPACITY, HOT_OVERSELL), host_token)
    for n in range(extra):
        http_json("POST", f"{base}/api/events", event(f"Bench event {n}", 2 + n % 27, 500, 10), host_token)
    return str(hot["id"])


@dataclass(frozen=True)
class Snapshot:
    capacity: int
    oversell: int
    sold: int
    held: int
    confirmed_rows: int
    confirmed_qty: int
    held_qty: int


def our_snapshot(engine: Engine, event_id: str) -> Snapshot:
    from reservation.store.schema import bookings, events

    with engine.connect() as conn:
        ev = conn.execute(
            select(events.c.capacity, events.c.oversell_capacity, events.c.sold, events.c.held).where(
                events.c.id == event_id
            )
        ).one()
        by_status = {
            str(status): (int(count), int(qty))
            for status, count, qty in conn.execute(
                select(bookings.c.status, func.count(), func.coalesce(func.sum(bookings.c.quantity), 0))
                .where(bookings.c.event_id == event_id)
                .group_by(bookings.c.status)
            ).all()
        }
    confirmed = by_status.get("confirmed", (0, 0))
    return Snapshot(
        capacity=int(ev.capacity),
        oversell=int(ev.oversell_capacity),
        sold=int(ev.sold),
        held=int(ev.held),
        confirmed_rows=confirmed[0],
        confirmed_qty=confirmed[1],
        held_qty=by_status.get("held", (0, 0))[1],
    )


# A correctness check: its name, whether it passed, and the figures it compared.
Check = tuple[str, bool, str]


def store_checks(after: Snapshot) -> list[Check]:
    """What must hold of an event in its store after any run: its seats taken within
    capacity + oversell, and its counters equal to its booking rows."""
    return [
        (
            "seats taken within capacity + oversell",
            after.sold + after.held <= after.capacity + after.oversell,
            f"sold {after.sold} + held {after.held} <= {after.capacity} + {after.oversell}",
        ),
        (
            "counters equal booking rows",
            after.sold == after.confirmed_qty and after.held == after.held_qty,
            f"sold {after.sold} = confirmed quantity {after.confirmed_qty}, "
            f"held {after.held} = held quantity {after.held_qty}",
        ),
    ]


def booking_checks(before: Snapshot, after: Snapshot, report: dict[str, Any]) -> list[Check]:
    """The checks after a booking phase: ``store_checks``, and every 201 in the store, from
    the event's store before and after the phase and wrk's report of it (its 201s, and
    the requests it sent and saw answered)."""
    created = int((report.get("statuses") or {}).get("201", 0))
    unanswered = int(report["sent"]) - int(report["answered"])
    rows = after.confirmed_rows - before.confirmed_rows
    sold = after.sold - before.sold
    found = store_checks(after)
    if unanswered == 0:
        found.append(
            (
                "every 201 is in the store",
                created == rows == sold,
                f"201 answers {created} = new confirmed rows {rows} = sold delta {sold}",
            )
        )
    else:
        # Requests wrk sent but never saw answered may have been booked: bound, not equality.
        found.append(
            (
                "every 201 is in the store",
                rows == sold and created <= rows <= created + unanswered,
                f"201 answers {created} <= new confirmed rows {rows} = sold delta {sold} "
                f"<= 201 answers + {unanswered} unanswered",
            )
        )
    return found


def engine_checks(after: Snapshot, result: dict[str, Any]) -> list[Check]:
    """The checks after an engine (or ceiling) run: ``store_checks``, and every booking the
    run counted in the store."""
    counted = int(result["bookings"])
    # The engine's count leaves out its warm-up; the actor's own counter covers both.
    stored = int(result.get("actor_sold", counted))
    return [
        *store_checks(after),
        (
            "every counted booking is in the store",
            counted <= stored == after.confirmed_rows == after.sold,
            f"counted {counted} <= committed {stored} = confirmed rows {after.confirmed_rows} = sold {after.sold}",
        ),
    ]


def baseline_snapshot(engine: Engine, event_id: str) -> Snapshot:
    with engine.connect() as conn:
        capacity, oversell, sold = conn.execute(
            text("SELECT capacity, oversell_capacity, sold FROM events WHERE id = :id"), {"id": event_id}
        ).one()
        rows, qty = conn.execute(
            text("SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM bookings WHERE event_id = :id"), {"id": event_id}
        ).one()
    # Every baseline booking row is a confirmed booking; it has no holds.
    return Snapshot(int(capacity), int(oversell), int(sold), 0, int(rows), int(qty), 0)


# ----------------------------------------------------------------------- wrk


@dataclass
class WrkRun:
    report: dict[str, Any]
    seconds: float
    cpu_s: float
    wall_s: float
    # CPU seconds over the load phase: wrk, and the target's processes ("server",
    # "database") when they are known.
    cpu: dict[str, float]
    # The machine's CPU seconds over the load phase: (stolen by the hypervisor, all).
    machine: tuple[float, float] = (0.0, 0.0)


def merge_runs(runs: Sequence[WrkRun]) -> WrkRun:
    """Several runs of one target (its rounds) as one: counts, time and CPU added up,
    latencies pooled from every run's recorded values, percentiles taken as wrk takes them."""
    if len(runs) == 1:
        return runs[0]
    reports = [run.report for run in runs]
    counts: Counter[int] = Counter()
    for rep in reports:
        hist = rep.get("latency_us") or {}
        for value, n in zip(hist.get("values") or [], hist.get("counts") or [], strict=True):
            counts[int(value)] += int(n)
    statuses: Counter[str] = Counter()
    for rep in reports:
        statuses.update({str(k): int(v) for k, v in (rep.get("statuses") or {}).items()})
    cpu: Counter[str] = Counter()
    for run in runs:
        cpu.update(run.cpu)
    ordered = sorted(counts.items())
    report = {
        "duration_s": sum(float(rep["duration_s"]) for rep in reports),
        "requests": sum(int(rep["requests"]) for rep in reports),
        "bytes": sum(int(rep["bytes"]) for rep in reports),
        "errors": {k: sum(int(rep["errors"][k]) for rep in reports) for k in reports[0]["errors"]},
        "sent": sum(int(rep["sent"]) for rep in reports),
        "answered": sum(int(rep["answered"]) for rep in reports),
        "statuses": dict(statuses),
        "drain_s": [d for rep in reports for d in (rep.get("drain_s") or [])],
        "latency_ms": latency_summary(ordered),
        "latency_us": {"values": [v for v, _ in ordered], "counts": [c for _, c in ordered]},
    }
    return WrkRun(
        report,
        sum(run.seconds for run in runs),
        sum(run.cpu_s for run in runs),
        sum(run.wall_s for run in runs),
        dict(cpu),
        (sum(run.machine[0] for run in runs), sum(run.machine[1] for run in runs)),
    )


def latency_summary(ordered: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """min, max, mean, stdev and percentiles (ms) of latencies given in µs as (value,
    count) pairs in ascending order of value.

    A percentile p is the smallest value whose cumulative count reaches
    floor(p/100 * n + 1), the rank wrk's own percentiles use."""
    n = sum(c for _, c in ordered)
    if n == 0:
        zero = {"min": 0.0, "max": 0.0, "mean": 0.0, "stdev": 0.0}
        return {**zero, "percentiles": {p: 0.0 for p in PERCENTILES}}
    mean = sum(v * c for v, c in ordered) / n
    var = sum(c * (v - mean) ** 2 for v, c in ordered) / (n - 1) if n > 1 else 0.0
    percentiles: dict[str, float] = {}
    for key in PERCENTILES:
        rank = min(n, math.floor(float(key) / 100 * n + 1))
        seen = 0
        for value, c in ordered:
            seen += c
            if seen >= rank:
                percentiles[key] = value / 1000.0
                break
    return {
        "min": ordered[0][0] / 1000.0,
        "max": ordered[-1][0] / 1000.0,
        "mean": mean / 1000.0,
        "stdev": math.sqrt(var) / 1000.0,
        "percentiles": percentiles,
    }


# The percentiles wrk's scripts report (bench/wrk/common.lua), as its JSON names them.
PERCENTILES = ("50", "75", "90", "99", "99.9")



def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class Bench:
    """One run: options, the started processes, the load generator and the findings."""

    def __init__(self, opts: Options, wrk: str, procs: Processes, work: Path) -> None:
        self.opts = opts
        self.wrk = wrk
        self.procs = procs
        self.work = work
        self.run_id = secrets.token_hex(4)
        self.secret = secrets.token_urlsafe(48)
        self.rows: dict[str, dict[str, Any] | None] = {t.key: None for t in TARGETS}
        self.missing: dict[str, str] = {}
        self.checks: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.tokens_file = work / "tokens.txt"
        # The measured server's process (its descendants are measured with it), and
        # whether it uses the MariaDB server, whose CPU is then measured too.
        self.server: int | None = None
        self.server_uses_database = False

    # -- the load generator

    def run_wrk(self, name: str, script: str, url: str, seconds: float, args: list[str]) -> WrkRun:
        """Load ``url`` for ``seconds``, let the requests in flight finish, return wrk's report."""
        opts = self.opts
        limit = seconds + opts.max_drain
        argv = [
            self.wrk,
            "-t", str(opts.threads),
            "-c", str(opts.connections),
            "-d", f"{math.ceil(limit)}s",
            "--timeout", f"{math.ceil(opts.max_drain + 5)}s",
            "-s", str(WRK_DIR / script),
            url,
            "--",
            f"seconds={seconds}",
            *args,
        ]  # fmt: skip
        log_path = self.work / f"wrk-{name}.log"
        started = time.monotonic()
        proc = self.procs.start(f"wrk {name}", argv, env=clean_env(), cwd=self.work, log_path=log_path)
        try:
            # CPU over the load phase: its start to its end (the drain is idle).
            groups = {"wrk": [proc.pid]}
            if self.server is not None:
                groups.update(server_groups(list(family(self.server))))
                groups["database"] = database_pids() if self.server_uses_database else []
            meter = CpuMeter(groups)
            end_of_load = started + seconds
            while (left := end_of_load - time.monotonic()) > 0 and proc.poll() is None:
                time.sleep(min(left, 0.2))
            meter.stop()
            wall = time.monotonic() - started
            # Every wrk thread stops itself once its last request is answered; then only
            # wrk's main thread (sleeping out -d) is left: interrupt it so it reports now.
            deadline = started + limit + 10
            while proc.poll() is None and time.monotonic() < deadline:
                if _threads(proc.pid) == 1:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.05)
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"wrk did not finish:\n{log_tail(log_path)}") from None
        finally:
            self.procs.stop(proc, grace_s=2)
        output = log_path.read_text(errors="replace")
        line = next((ln for ln in reversed(output.splitlines()) if ln.startswith(BENCH_JSON)), None)
        if line is None:
            raise BenchError(f"wrk gave no report for {name} (exit {proc.returncode}):\n{output[-3000:]}")
        report: dict[str, Any] = json.loads(line[len(BENCH_JSON) :])
        cpu = meter.seconds()
        return WrkRun(report, seconds, cpu.get("wrk", 0.0), wall, cpu, meter.machine)

    def row(self, target: Target, url: str, run: WrkRun, warm: WrkRun | None) -> dict[str, Any]:
        rep = run.report
        statuses = {str(k): int(v) for k, v in (rep.get("statuses") or {}).items()}
        ok = sum(n for code, n in statuses.items() if 200 <= int(code) < 300)
        sold_out = statuses.get("409", 0) if target.kind in ("booking", "baseline") else 0
        bad_status = sum(n for code, n in statuses.items() if not 200 <= int(code) < 300) - sold_out
        socket_errors = {k: int(rep["errors"][k]) for k in ("connect", "read", "write", "timeout")}
        pct = rep["latency_ms"]["percentiles"]
        cpu_core = 100.0 * run.cpu_s / run.wall_s if run.wall_s > 0 else 0.0
        return {
            "target": target.key,
            "label": target.label,
            "kind": target.kind,
            "url": url,
            "seconds": run.seconds,
            "requests": int(rep["requests"]),
            "bytes": int(rep["bytes"]),
            "requests_per_s": int(rep["requests"]) / run.seconds,
            "ok": ok,
            "ok_per_s": ok / run.seconds,
            "p50_ms": pct["50"],
            "p90_ms": pct["90"],
            "p99_ms": pct["99"],
            "max_ms": rep["latency_ms"]["max"],
            "errors": bad_status + sum(socket_errors.values()),
            "sold_out_409": sold_out,
            "status_counts": statuses,
            "socket_errors": socket_errors,
            "unanswered": int(rep["sent"]) - int(rep["answered"]),
            "cpu_us_per_request": per_unit_us(run.cpu, int(rep["requests"])),
            "stolen_pct": stolen_pct(*run.machine),
            "load_generator": {
                "cpu_s": run.cpu_s,
                "wall_s": run.wall_s,
                "pct_of_core": cpu_core,
                "pct_of_machine": cpu_core / (os.cpu_count() or 1),
            },
            "warmup": None
            if warm is None
            else {
                "seconds": warm.seconds,
                "requests": int(warm.report["requests"]),
                "statuses": warm.report["statuses"],
            },
        }

    def quiet(self) -> None:
        """Nothing else of ours may run while a target is measured."""
        if self.procs.stopping:
            progress("waiting for the previous target to stop")
            self.procs.settle()

    def measure_gets(self, base: str, paths: Sequence[tuple[Target, str]]) -> None:
        """GET targets of one server, measured in alternating rounds.

        Each target is warmed up once, then the targets take turns: ``--rounds`` rounds,
        each giving every target ``seconds / rounds`` of load, so the same machine drift
        falls on all of them alike and their ratios (reads against the floor) compare
        like with like. A target's rounds are reported as one run (``merge_runs``).
        """
        self.quiet()
        rounds = self.opts.rounds
        share = self.opts.seconds / rounds
        warm: dict[str, WrkRun] = {}
        args = [f"accept={self.opts.accept_encoding}"]
        if self.opts.warmup > 0:
            for target, path in paths:
                progress(f"{target.label}: warm-up {self.opts.warmup:g} s")
                warm[target.key] = self.run_wrk(
                    f"{target.key}-warm", "get.lua", base + path, self.opts.warmup, [f"path={path}", *args]
                )
        runs: dict[str, list[WrkRun]] = defaultdict(list)
        for n in range(1, rounds + 1):
            progress(f"round {n}/{rounds}: {share:g} s per target, {self.opts.connections} connections")
            for target, path in paths:
                run = self.run_wrk(f"{target.key}-{n}", "get.lua", base + path, share, [f"path={path}", *args])
                progress(f"  {target.label}: {int(run.report['requests']) / share:,.0f} req/s")
                runs[target.key].append(run)
        for target, path in paths:
            self.record(target, base + path, merge_runs(runs[target.key]), warm.get(target.key), rounds)

    def measure_bookings(self, target: Target, base: str, event_id: str, snapshot: Callable[[], Snapshot]) -> None:
        self.quiet()
        url = base + "/api/orders"
        phases: list[tuple[str, float]] = [("warm-up", self.opts.warmup)] if self.opts.warmup > 0 else []
        phases.append(("run", self.opts.seconds))
        before = snapshot()
        runs: dict[str, WrkRun] = {}
        # Our server reports its group commits (the baseline has none).
        ours = target.kind == "booking"
        counted: dict[str, float] | None = None
        for phase, seconds in phases:
            if phase == "run" and ours:
                counted = self.flushed_commit_samples(base)
            progress(f"{target.label}: {phase} {seconds:g} s, {self.opts.connections} connections")
            args = [
                f"tokens={self.tokens_file}",
                f"event={event_id}",
                f"prefix={self.run_id}-{target.key}-{phase}",
                f"threads={self.opts.threads}",
                "path=/api/orders",
            ]
            run = self.run_wrk(f"{target.key}-{phase}", "booking.lua", url, seconds, args)
            after = snapshot()
            self.check(target, phase, before, after, run.report)
            runs[phase] = run
            before = after
        self.record(target, url, runs["run"], runs.get("warm-up"))
        if counted is not None:
            self.rows[target.key]["group_commits"] = group_commits(counted, self.flushed_commit_samples(base))

    @staticmethod
    def flushed_commit_samples(base: str) -> dict[str, float]:
        """``commit_samples`` once every front end has flushed what it counted so far
        (each flushes once a second; see reservation/api/metrics.py)."""
        from reservation.api.metrics import FLUSH_EVERY_S

        time.sleep(2 * FLUSH_EVERY_S)
        return commit_samples(base)

    def record(self, target: Target, url: str, run: WrkRun, warm: WrkRun | None, rounds: int = 1) -> None:
        row = self.row(target, url, run, warm)
        row["rounds"] = rounds
        self.rows[target.key] = row
        if row["ok"] == 0:
            self.problems.append(f"{target.key}: no successful response in the run ({row['status_counts']})")
        lg = row["load_generator"]
        progress(
            f"  {row['requests_per_s']:,.0f} req/s, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
            f"errors {row['errors']}, wrk CPU {lg['pct_of_core']:.0f}% of a core"
        )

    # -- correctness

    def check(self, target: Target, phase: str, before: Snapshot, after: Snapshot, report: dict[str, Any]) -> None:
        self.record_checks(target, phase, booking_checks(before, after, report))

    def record_checks(self, target: Target, phase: str, found: list[Check]) -> None:
        for name, passed, detail in found:
            self.checks.append({"target": target.key, "phase": phase, "check": name, "pass": passed, "detail": detail})
            if not passed:
                progress(f"  CORRECTNESS FAILURE {target.key} ({phase}): {name}: {detail}")

    def check_engine(self, target: Target, url: str, result: dict[str, Any]) -> None:
        """The engine's (or the ceiling's) event in its store after the run (``engine_checks``)."""
        from reservation.store.db import sync_url

        engine = create_engine(sync_url(url))
        try:
            after = our_snapshot(engine, str(result["event_id"]))
        finally:
            engine.dispose()
        self.record_checks(target, "run", engine_checks(after, result))

    # -- targets

    def write_tokens(self, accounts: Accounts) -> None:
        self.tokens_file.write_text("\n".join(accounts.tokens) + "\n")

    def start_ours(self, name: str, data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        argv = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--workers", str(self.opts.workers)]
        argv += ["--data-dir", str(data_dir)]
        if database_url:
            argv += ["--database-url", database_url]
        log_path = self.work / f"{name}.log"
        progress(f"starting ours ({name}): server.py --workers {self.opts.workers} on port {port}")
        proc = self.procs.start(
            name, argv, env=clean_env(RESERVATION_SECRET_KEY=self.secret), cwd=data_dir, log_path=log_path
        )
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", proc, log_path)
        return proc, base

    def ours(self, store: str, url: str, accounts: Accounts, *, with_reads: bool) -> None:
        from reservation.store.db import sync_url

        data_dir = self.work / f"ours-{store}"
        data_dir.mkdir()
        progress(f"seeding ours ({store}): 1 host, {len(accounts.tokens)} customers")
        seed_store(url, accounts, self.run_id)
        proc, base = self.start_ours(f"ours-{store}", data_dir, None if store == "sqlite" else url)
        self.server, self.server_uses_database = proc.pid, store != "sqlite"
        engine = create_engine(sync_url(url))
        try:
            hot = create_events(base, accounts.host_token, self.opts.extra_events)
            progress(f"hot event {hot}: capacity {HOT_CAPACITY:,} + oversell {HOT_OVERSELL:,}")
            if with_reads:
                self.measure_gets(
                    base,
                    [
                        (BY_KEY["floor_healthz"], "/healthz"),
                        (BY_KEY["ours_reads_list"], "/api/events?page_size=20"),
                        (BY_KEY["ours_reads_detail"], f"/api/events/{hot}"),
                    ],
                )
            self.measure_bookings(BY_KEY[f"ours_bookings_{store}"], base, hot, lambda: our_snapshot(engine, hot))
        finally:
            self.server = None
            engine.dispose()
            progress(f"stopping ours ({store}) in the background")
            self.procs.stop_later(proc)

    def baseline(self, url: str) -> None:
        from reservation.domain.ids import new_id
        from reservation.store.db import sync_url

        port = free_port()
        argv = [sys.executable, "-m", "bench.baseline", "--port", str(port), "--database-url", url]
        argv += ["--workers", str(self.opts.workers)]
        log_path = self.work / "baseline.log"
        progress(f"starting baseline: bench.baseline --workers {self.opts.workers} on port {port}")
        proc = self.procs.start(
            "baseline", argv, env=clean_env(RESERVATION_SECRET_KEY=self.secret), cwd=ROOT, log_path=log_path
        )
        self.server, self.server_uses_database = proc.pid, True
        engine = create_engine(sync_url(url))
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/healthz", proc, log_path, timeout_s=60)
            hot = new_id()
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO events (id, capacity, oversell_capacity, sold) VALUES (:id, :c, :o, 0)"),
                    {"id": hot, "c": HOT_CAPACITY, "o": HOT_OVERSELL},
                )
            self.measure_bookings(
                BY_KEY["baseline_bookings_mariadb"], base, hot, lambda: baseline_snapshot(engine, hot)
            )
        finally:
            self.server = None
            engine.dispose()
            progress("stopping baseline in the background")
            self.procs.stop_later(proc)

    def engine(self, target: Target, mode: str, dbs: MariaDB, extra: Sequence[str] = ()) -> None:
        """``python -m bench.engine`` in a subprocess, on a database of its own."""
        if not (ROOT / "bench" / "engine.py").exists():
            self.missing[target.key] = "bench/engine.py is absent"
            progress(f"{target.label}: missing (bench/engine.py is absent)")
            return
        url = dbs.create(f"_engine_{mode}")
        self.quiet()
        seconds = self.opts.seconds
        argv = [sys.executable, "-m", "bench.engine", "--database-url", url, "--seconds", f"{seconds:g}"]
        if mode != "store-ceiling":  # the ceiling sends rows built beforehand: nothing to warm up
            argv += ["--warmup", f"{self.opts.warmup:g}"]  # the same warm-up as every other target
        argv += [f"--{mode}", *extra, "--json"]
        log_path = self.work / f"engine-{mode}.log"
        progress(f"{target.label}: python -m bench.engine --{mode} --seconds {seconds:g}")
        started = time.monotonic()
        proc = self.procs.start(f"engine {mode}", argv, env=clean_env(), cwd=ROOT, log_path=log_path)
        try:
            proc.wait(timeout=seconds + 240)
        except subprocess.TimeoutExpired:
            self.missing[target.key] = "bench.engine did not finish in time"
        finally:
            self.procs.stop(proc, grace_s=10)
        wall = time.monotonic() - started
        if target.key in self.missing:
            progress(f"  missing: {self.missing[target.key]}")
            return
        output = log_path.read_text(errors="replace")
        lines = [ln for ln in output.splitlines() if ln.strip()]
        try:
            if proc.returncode != 0:
                raise ValueError(f"exit status {proc.returncode}")
            result = json.loads(lines[-1]) if lines else None
            if not isinstance(result, dict):
                raise ValueError("no JSON object on its last line")
            keys = ("bookings_per_s", "p50_ms", "p90_ms", "p99_ms", "errors", "mean_batch", "bookings", "event_id")
            absent = [k for k in keys if k not in result]
            if absent:
                raise ValueError(f"its JSON lacks {', '.join(absent)}")
        except ValueError as exc:
            self.missing[target.key] = f"bench.engine failed: {exc}: {output[-1500:]}"
            progress(f"  missing: bench.engine failed ({exc}); its output is in the JSON")
            return
        self.check_engine(target, url, result)
        self.rows[target.key] = {
            "target": target.key,
            "label": target.label,
            "kind": target.kind,
            "seconds": seconds,
            "requests_per_s": float(result["bookings_per_s"]),
            "bookings_per_s": float(result["bookings_per_s"]),
            "p50_ms": float(result["p50_ms"]),
            "p90_ms": float(result["p90_ms"]),
            "p99_ms": float(result["p99_ms"]),
            "errors": int(result["errors"]),
            "mean_batch": float(result["mean_batch"]),
            "cpu_us_per_booking": result.get("cpu_us_per_booking"),
            "stolen_pct": result.get("stolen_pct"),
            "load_generator": None,
            "wall_s": wall,
            "engine": result,
        }
        offered = ""
        if mode != "store-ceiling" and "callers" in result:
            size = result["call_size"]
            offered = f" ({result['callers']} callers, {size} booking{'' if size == 1 else 's'} per call)"
        if result.get("ran_out"):
            offered += "; its calls built beforehand ran out early, the rate counts until then"
        progress(
            f"  {result['bookings_per_s']:,.0f} bookings/s, p99 {result['p99_ms']:.1f} ms, "
            f"mean batch {result['mean_batch']:.1f}, errors {result['errors']}{offered}"
        )

    def run(self, dbs: MariaDB | None) -> None:
        """Every target of the groups asked for; ``dbs`` may be None only if no group
        needs MariaDB (``MARIADB_GROUPS``)."""
        accounts = make_accounts(self.opts.accounts, self.secret)
        self.write_tokens(accounts)
        only = self.opts.only
        assert dbs is not None or not only & MARIADB_GROUPS
        if "mariadb" in only and dbs is not None:
            self.ours("mariadb", dbs.create(), accounts, with_reads=True)
        if "sqlite" in only:
            sqlite_url = f"sqlite+aiosqlite:///{self.work / 'ours-sqlite' / 'reservation.db'}"
            self.ours("sqlite", sqlite_url, accounts, with_reads=False)
        if "baseline" in only and dbs is not None:
            self.baseline(dbs.create("_baseline"))
        if "engine" in only and dbs is not None:
            for mode in ("batched", "unbatched"):
                self.engine(BY_KEY[f"engine_{mode}"], mode, dbs)
            # At the batch size the batched engine ran at (1,000 when it did not run).
            batched = self.rows.get("engine_batched")
            size = max(1, round(batched["mean_batch"])) if batched else 1000
            self.engine(BY_KEY["store_ceiling"], "store-ceiling", dbs, ["--batch", str(size)])


# -------------------------------------------------------------------- report


def ratios(rows: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, float | None]]:
    def rate(key: str) -> float | None:
        row = rows.get(key)
        return float(row["requests_per_s"]) if row and row["requests_per_s"] > 0 else None

    baseline, floor = rate("baseline_bookings_mariadb"), rate("floor_healthz")
    out: dict[str, dict[str, float | None]] = {}
    for target in TARGETS:
        mine = rate(target.key)
        vs_baseline = vs_floor = None
        if mine is not None and target.kind in ("booking", "engine", "ceiling") and baseline:
            vs_baseline = mine / baseline
        if mine is not None and target.kind in ("booking", "read", "baseline") and floor:
            vs_floor = mine / floor
        out[target.key] = {"vs_baseline": vs_baseline, "vs_floor": vs_floor}
    ceiling, batched = rate("store_ceiling"), rate("engine_batched")
    out["engine_batched"]["vs_store_ceiling"] = batched / ceiling if batched and ceiling else None
    return out


def markdown(result: dict[str, Any]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    cores = os.cpu_count() or 1
    lines = [
        "| target | req/s | p50 ms | p90 ms | p99 ms | errors | 409 | wrk CPU (core / machine) "
        "| ours/baseline | /floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in TARGETS:
        row = result["targets"][target.key]
        ratio = result["ratios"][target.key]
        if row is None:
            reason = result["missing"].get(target.key, "not run")
            lines.append(f"| {target.label} | missing: {reason[:60]} | | | | | | | | |")
            continue
        lg = row.get("load_generator")
        cpu = "n/a (in-process)" if lg is None else f"{lg['pct_of_core']:.0f}% / {lg['pct_of_machine']:.0f}%"
        vs_b = "–" if ratio["vs_baseline"] is None else f"{ratio['vs_baseline']:.2f}×"
        vs_f = "–" if ratio["vs_floor"] is None else f"{ratio['vs_floor']:.2f}×"
        lines.append(
            f"| {target.label} | {row['requests_per_s']:,.0f} | {num(row['p50_ms'], '.1f')} "
            f"| {num(row['p90_ms'], '.1f')} | {num(row['p99_ms'], '.1f')} | {row['errors']} "
            f"| {row.get('sold_out_409', '–')} | {cpu} | {vs_b} | {vs_f} |"
        )
    lines.append("")
    lines.append(
        f"{result['config']['seconds']:g} s per target after {result['config']['warmup']:g} s warm-up, "
        f"{result['config']['connections']} connections, {result['config']['threads']} wrk threads, "
        f"{result['config']['workers']} workers; {cores} cores shared by server, database and wrk"
        + (
            "."
            if result["machine"]["innodb_buffer_pool_bytes"] is None
            else f"; innodb_buffer_pool_size {result['machine']['innodb_buffer_pool_bytes'] >> 20} MiB."
        )
    )
    rounds = result["config"].get("rounds", 1)
    if rounds > 1 and any(result["targets"].get(k) for k in ("floor_healthz", "ours_reads_list", "ours_reads_detail")):
        lines.append(
            f"The floor and the reads took turns in {rounds} rounds of "
            f"{result['config']['seconds'] / rounds:g} s each (their figures add the rounds up)."
        )
    gets = [t for t in TARGETS if t.kind in ("floor", "read") and result["targets"].get(t.key)]
    if gets:
        accept = result["config"].get("accept_encoding")
        sizes = ", ".join(
            f"{t.label.split(': ', 1)[1]} {row['bytes'] / row['requests']:,.0f}"
            for t in gets
            if (row := result["targets"][t.key])["requests"]
        )
        lines.append(
            f"The floor and the reads sent {f'Accept-Encoding: {accept}' if accept else 'no Accept-Encoding'}; "
            f"bytes per answer, headers included: {sizes}."
        )
    engine = result["targets"].get("engine_batched")
    share = result["ratios"].get("engine_batched", {}).get("vs_store_ceiling")
    if engine and share is not None:
        ceiling = result["targets"]["store_ceiling"]
        lines.append(
            f"The batched engine commits {share:.2f}× of the store ceiling ({engine['requests_per_s']:,.0f} of "
            f"{ceiling['requests_per_s']:,.0f} bookings/s: the same rows, {ceiling['mean_batch']:,.0f} bookings "
            f"per transaction, built beforehand and sent straight to MariaDB over {ceiling['engine']['callers']} "
            "connections, as the actor keeps batches in flight)."
        )
    for target in TARGETS:
        commits = (result["targets"].get(target.key) or {}).get("group_commits")
        if commits:
            lines.append(
                f"{target.label}: {commits['commits']:,.0f} group commits of {commits['mean_batch']:.1f} bookings "
                f"on average, sent by the front ends in calls of {commits['mean_call']:.1f} (the server's /metrics)."
            )
    lines.extend(["", *cpu_table(result), ""])
    checks = result["correctness"]["checks"]
    failed = sum(not c["pass"] for c in checks)
    lines.append(
        f"Correctness: {len(checks) - failed}/{len(checks)} checks passed"
        + ("." if not failed else f" – {failed} FAILED (see correctness.checks in the JSON).")
    )
    return "\n".join(lines)


def cpu_table(result: dict[str, Any]) -> list[str]:
    """Where the CPU goes: microseconds per request (booking) by process group, and the
    rate the machine's cores would allow at that cost if nothing waited on anything."""
    cores = os.cpu_count() or 1
    out = [
        f"CPU per request (per committed booking for the engine rows), µs, from /proc over the measured phase "
        "(the server's processes by role: its HTTP front ends, Ray's event actors, the rest of Ray); "
        f"then what {cores} cores allow at that cost, the measured rate's share of it, and the share of the "
        "machine's CPU time stolen meanwhile (/proc/stat's steal: time its virtual CPUs had work and the "
        "hypervisor did not run them; the more, the slower every figure of that phase).",
        "",
        "| target | front ends | actors | Ray, other | database | load generator (engine: callers) | total "
        "| allows /s | measured | stolen |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    found = False
    for target in TARGETS:
        row = result["targets"].get(target.key)
        cpu = row and (row.get("cpu_us_per_request") or row.get("cpu_us_per_booking"))
        if not cpu or cpu.get("total", 0) <= 0:
            continue
        found = True

        def part(*names: str, cpu: dict[str, float] = cpu) -> str:
            value = next((cpu[n] for n in names if n in cpu), None)
            return "–" if value is None else f"{value:,.1f}"

        allows = cores * 1e6 / cpu["total"]
        out.append(
            f"| {target.label} | {part('front ends')} | {part('actors', 'actor')} | {part('ray')} "
            f"| {part('database')} | "
            f"{part('wrk', 'callers', 'sender')} | {cpu['total']:,.1f} | {allows:,.0f} | "
            f"{row['requests_per_s'] / allows:.2f} | {_pct(row.get('stolen_pct'))} |"
        )
    return out if found else []


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def draw_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _pos: f"{value:,.0f}" if value >= 1 else f"{value:g}")

    shown = [(t, result["targets"][t.key]) for t in TARGETS if result["targets"][t.key] is not None]
    labels = [t.label for t, _ in shown]
    colours = {"floor": "#999999", "booking": "#1f77b4", "read": "#17becf", "baseline": "#d62728", "engine": "#2ca02c",
               "ceiling": "#98df8a"}
    fig, (ax_rate, ax_lat) = plt.subplots(1, 2, figsize=(15, 1.0 + 0.6 * max(len(shown), 1)), sharey=True)
    ys = list(range(len(shown)))
    rates = [max(float(r["requests_per_s"]), 1e-3) for _, r in shown]
    ax_rate.barh(ys, rates, color=[colours[t.kind] for t, _ in shown])
    for y, value in zip(ys, rates, strict=True):
        ax_rate.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax_rate.set_xscale("log")
    ax_rate.xaxis.set_major_formatter(plain)
    ax_rate.xaxis.set_minor_formatter(NullFormatter())
    ax_rate.set_xlabel("requests (bookings) per second, log scale")
    ax_rate.set_yticks(ys, labels, fontsize=8)
    ax_rate.invert_yaxis()
    height = 0.27
    for offset, (key, name) in zip(
        (-height, 0.0, height), (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")), strict=True
    ):
        values = [max(float(r[key]), 1e-3) for _, r in shown]
        ax_lat.barh([y + offset for y in ys], values, height=height, label=name)
    ax_lat.set_xscale("log")
    ax_lat.xaxis.set_major_formatter(plain)
    ax_lat.xaxis.set_minor_formatter(NullFormatter())
    ax_lat.set_xlabel("latency, ms, log scale")
    ax_lat.legend(fontsize=8)
    cfg = result["config"]
    fig.suptitle(
        f"bench.compare {result['started_at']} – {cfg['seconds']:g} s per target, {cfg['connections']} connections, "
        f"{cfg['workers']} workers, {os.cpu_count()} cores"
        + ("" if result["correctness"]["pass"] else " – CORRECTNESS FAILURE"),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- main


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def correct(result: dict[str, Any]) -> bool:
    """Whether the run's correctness held; if not, every failed check under a banner on
    stderr, after the report, where nobody can miss it."""
    if result["correctness"]["pass"]:
        return True
    failed = [c for c in result["correctness"]["checks"] if not c["pass"]]
    banner = "!" * 72
    what = f"{len(failed)} check(s) failed" if failed else "bookings ran and no check was made"
    print(f"\n{banner}\nCORRECTNESS FAILURE: {what}", file=sys.stderr)
    for c in failed:
        print(f"  {c['target']} ({c['phase']}): {c['check']}: {c['detail']}", file=sys.stderr)
    print(banner, file=sys.stderr)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    progress(
        f"bench.compare{' --tiny' if opts.tiny else ''}: {opts.seconds:g} s per target after {opts.warmup:g} s "
        f"warm-up, {opts.connections} connections, {opts.threads} threads, {opts.workers} workers"
    )
    wrk = ensure_wrk()
    ensure_matplotlib()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    dbs: MariaDB | None = None
    result: dict[str, Any] = {}
    load_before = os.getloadavg()
    try:
        with _signals_interrupt():
            bench = Bench(opts, wrk, procs, work)
            if opts.only & MARIADB_GROUPS:
                dbs = MariaDB(opts.mysql_url, f"reservation_bench_{bench.run_id}")
                if opts.size_buffer_pool:
                    dbs.size_buffer_pool()
                progress(
                    f"MariaDB {dbs.version} at {opts.mysql_url} (innodb_buffer_pool_size {dbs.buffer_pool >> 20} MiB"
                    f"{'' if dbs.buffer_pool == dbs.buffer_pool_before else ' for this run'}); scratch dir {work}"
                )
            else:
                progress(f"no group asked for needs MariaDB; scratch dir {work}")
            bench.run(dbs)
            booked = bool(opts.only & {"mariadb", "sqlite", "baseline"})
            passed = all(c["pass"] for c in bench.checks) and (bool(bench.checks) or not booked)
            result = {
                "started_at": started_at.isoformat(timespec="seconds"),
                "duration_s": time.monotonic() - _T0,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_before": load_before,
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "wrk": wrk_version(wrk),
                    "mariadb": dbs.version if dbs else None,
                    "innodb_buffer_pool_bytes": dbs.buffer_pool if dbs else None,
                    "innodb_buffer_pool_bytes_before": dbs.buffer_pool_before if dbs else None,
                },
                "config": {
                    "seconds": opts.seconds,
                    "warmup": opts.warmup,
                    "connections": opts.connections,
                    "threads": opts.threads,
                    "workers": opts.workers,
                    "accounts": opts.accounts,
                    "tiny": opts.tiny,
                    "rounds": opts.rounds,
                    "accept_encoding": opts.accept_encoding,
                    "hot_event": {"capacity": HOT_CAPACITY, "oversell_capacity": HOT_OVERSELL},
                },
                "targets": bench.rows,
                "missing": bench.missing,
                "ratios": ratios(bench.rows),
                "correctness": {"pass": passed, "checks": bench.checks},
                "problems": bench.problems,
            }
    except KeyboardInterrupt:
        progress("interrupted: stopping everything it started")
        return 130
    except BenchError as exc:
        print(f"\nbench.compare failed: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
        if dbs is not None:
            dbs.drop_all()
        if opts.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    opts.out.mkdir(parents=True, exist_ok=True)
    json_path = opts.out / f"compare-{stamp}.json"
    png_path = opts.out / f"compare-{stamp}.png"
    json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    draw_chart(result, png_path)
    print()
    print(markdown(result))
    print()
    progress(f"wrote {json_path} and {png_path}")
    if not correct(result):
        return 1
    progress(f"correctness: all {len(result['correctness']['checks'])} checks passed")
    if result["problems"]:
        for problem in result["problems"]:
            print(f"problem: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
