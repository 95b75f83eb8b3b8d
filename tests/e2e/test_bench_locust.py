"""The benchmark kit end to end: ``bench.seed`` fills a live server's store, then
``bench/locustfile.py`` runs headless against it, once per scenario, and the store is
checked against what locust was answered.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reservation.api import metrics
from tests.conftest import metric_samples
from tests.e2e.live import ROOT, LiveServer, clean_env, run_server
from tests.integration.checks import read_event

pytestmark = pytest.mark.slow

LOCUSTFILE = ROOT / "bench" / "locustfile.py"
USERS = 20
EVENTS, ACCOUNTS = 10, 50
CAPACITY, OVERSELL = 6, 1
SPIKE_CAPACITY, SPIKE_OVERSELL = 8, 2
SPIKE_LIMIT = SPIKE_CAPACITY + SPIKE_OVERSELL
READS = ("GET /api/events", "GET /api/events/{id}", "GET /api/orders")
BOOK, BOOK_SOLD_OUT = "POST /api/orders", "POST /api/orders [sold out]"
SPIKE, SPIKE_SOLD_OUT = "POST /api/orders (spike)", "POST /api/orders (spike) [sold out]"
SPIKE_LINE = re.compile(r"spike check: event (\S+) limit (\d+) .*orders_201=(\d+) seats_201=(\d+) .*: (OK|FAILED)")


@dataclass(frozen=True, slots=True)
class LocustRun:
    returncode: int
    output: str
    stats: dict[str, dict[str, str]]  # the --csv stats rows, by request name

    def count(self, name: str) -> int:
        row = self.stats.get(name)
        return int(row["Request Count"]) if row else 0

    def outcomes(self) -> set[str]:
        """Request names seen, without the attempts that were retried (503 and the like)."""
        return {name for name in self.stats if not name.endswith(", retried]")}

    def failures(self) -> dict[str, int]:
        return {name: int(row["Failure Count"]) for name, row in self.stats.items() if int(row["Failure Count"])}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with run_server(tmp_path_factory.mktemp("bench-live")) as live:
        yield live


@pytest.fixture(scope="module")
def pool_file(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pool seeded into the live server's store, with tokens signed by its key."""
    out = tmp_path_factory.mktemp("bench-pool") / "pool.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.seed", "--events", str(EVENTS), "--accounts", str(ACCOUNTS), "--hosts", "2",
         "--capacity", str(CAPACITY), "--oversell", str(OVERSELL), "--spike-capacity", str(SPIKE_CAPACITY),
         "--spike-oversell", str(SPIKE_OVERSELL), "--data-dir", str(server.data_dir), "--out", str(out)],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"seeded {EVENTS} events + 1 spike event" in result.stdout
    return out


def load_pool(path: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(path.read_text())
    return value


def run_locust(server: LiveServer, pool: Path, csv_prefix: Path, *select: str, run_time: str = "6s",
               users: int = USERS) -> LocustRun:
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
         "-t", run_time, "--stop-timeout", "30", "--only-summary", "--csv", str(csv_prefix),
         "--host", server.base_url, *select],
        cwd=ROOT, env={**clean_env(), "RESERVATION_BENCH_POOL": str(pool)},
        capture_output=True, text=True, timeout=120,
    )
    with Path(f"{csv_prefix}_stats.csv").open() as fh:
        stats = {row["Name"]: row for row in csv.DictReader(fh) if row["Name"] != "Aggregated"}
    return LocustRun(result.returncode, result.stdout + result.stderr, stats)


def test_seed_writes_a_pool_the_server_accepts(server: LiveServer, pool_file: Path) -> None:
    pool = load_pool(pool_file)
    assert len(pool["events"]) == EVENTS and len(set(pool["events"])) == EVENTS
    assert len(pool["accounts"]) == ACCOUNTS and len({a["email"] for a in pool["accounts"]}) == ACCOUNTS
    assert pool["spike_event"] not in pool["events"]
    assert (pool["spike_capacity"], pool["spike_oversell"]) == (SPIKE_CAPACITY, SPIKE_OVERSELL)
    for event_id in pool["events"]:
        stored = read_event(server.store_url, event_id)
        assert (stored.capacity, stored.oversell_capacity, stored.sold, stored.held) == (CAPACITY, OVERSELL, 0, 0)
    # The spike event is announced, not yet on sale: the spike scenario opens it.
    with urllib.request.urlopen(f"{server.base_url}/api/events/{pool['spike_event']}", timeout=10) as r:
        assert json.load(r)["status"] == "paused"


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=10) as r:
        return metric_samples(r.read().decode())


def orders_answered(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    labels = (("method", "POST"), ("route", "/api/orders"), ("status", status))
    return samples.get(("reservation_http_requests_total", labels), 0)


def test_browse_scenario_by_tag(server: LiveServer, pool_file: Path, tmp_path: Path) -> None:
    before = scrape(server)
    run = run_locust(server, pool_file, tmp_path / "browse", "--tags", "browse")
    assert run.returncode == 0, run.output[-4000:]
    assert run.failures() == {}, run.output[-4000:]
    # Only the browse scenario ran, on seeded accounts (no set-up requests), over every route.
    assert run.outcomes() <= {*READS, BOOK, BOOK_SOLD_OUT}, sorted(run.stats)
    for name in READS:
        assert run.count(name) > 0, (name, sorted(run.stats))
    reads = sum(run.count(name) for name in READS)
    bookings = run.count(BOOK) + run.count(BOOK_SOLD_OUT)
    assert bookings > 0
    assert 0.6 <= reads / (reads + bookings) <= 0.95, (reads, bookings)
    # Every 201 is one confirmed booking in the store, and no event went past its limit.
    pool = load_pool(pool_file)
    stored = [read_event(server.store_url, event_id) for event_id in pool["events"]]
    assert sum(s.confirmed_rows for s in stored) == run.count(BOOK)
    for s in stored:
        assert s.held == 0 and s.sold == s.confirmed_quantity <= CAPACITY + OVERSELL, s
    # /metrics counts every worker's answers, each as of its last flush (the answering
    # worker's own as of now): two flush periods on, one scrape adds up to what locust got.
    time.sleep(2.5 * metrics.FLUSH_EVERY_S)
    after = scrape(server)
    want = {"201": run.count(BOOK), "409": run.count(BOOK_SOLD_OUT)}
    assert {status: orders_answered(after, status) - orders_answered(before, status) for status in want} == want
    # Each order the service took (a 503 retried by locust included) is timed once.
    statuses = {labels[2][1] for name, labels in after if name == "reservation_http_requests_total"
                and labels[:2] == (("method", "POST"), ("route", "/api/orders"))}
    placed = sum(orders_answered(after, s) - orders_answered(before, s) for s in statuses if s not in {"401", "422"})
    timed = ("reservation_booking_seconds_count", ())
    assert after[timed] - before.get(timed, 0) == placed


def test_spike_scenario_by_class_name(server: LiveServer, pool_file: Path, tmp_path: Path) -> None:
    # Spike users book once, at once: a short run suffices (--stop-timeout lets every booking finish).
    run = run_locust(server, pool_file, tmp_path / "spike", "OnSaleSpike", run_time="4s")
    assert run.returncode == 0, run.output[-4000:]
    assert run.failures() == {}, run.output[-4000:]
    pool = load_pool(pool_file)
    # Its host opened the seeded (paused) event's sale before the users came: else every
    # booking would have been refused (409 sales-paused, a failure).
    assert f"spike: opened the sale of event {pool['spike_event']} (status on_sale)" in run.output, run.output[-4000:]
    assert run.outcomes() <= {SPIKE, SPIKE_SOLD_OUT}, sorted(run.stats)
    # 20 users want 20 to 40 seats of 10: some are booked, the others are told it is sold out.
    orders, sold_out = run.count(SPIKE), run.count(SPIKE_SOLD_OUT)
    assert orders > 0 and sold_out > 0
    assert orders + sold_out == USERS  # one booking per user, each to a final answer
    match = SPIKE_LINE.search(run.output)
    assert match, run.output[-4000:]
    event_id, limit, orders_201, seats_201, verdict = match.groups()
    assert (event_id, int(limit), verdict) == (pool["spike_event"], SPIKE_LIMIT, "OK")
    assert int(orders_201) == orders
    # The store agrees: every 201 seat is sold, nothing beyond capacity + oversell.
    stored = read_event(server.store_url, pool["spike_event"])
    assert stored.sold == stored.confirmed_quantity == int(seats_201), stored
    assert stored.confirmed_rows == orders and stored.held == 0
    assert SPIKE_LIMIT - 1 <= stored.sold <= SPIKE_LIMIT  # sold out (a last seat may be left for 2-seat asks)


def test_spike_check_fails_the_run_when_seats_exceed_the_limit(
    server: LiveServer, pool_file: Path, tmp_path: Path
) -> None:
    """The end-of-run check is not vacuous: told the event holds no seats, it fails loudly."""
    lying = tmp_path / "pool.json"
    lying.write_text(json.dumps({**load_pool(pool_file), "spike_capacity": 0, "spike_oversell": 0}))
    run = run_locust(server, lying, tmp_path / "lying", "--tags", "spike", run_time="1s", users=2)
    assert run.returncode == 1, run.output[-4000:]
    assert "SPIKE CHECK FAILED" in run.output and "OVERSOLD" in run.output, run.output[-4000:]


DASHBOARD = ROOT / "bench" / "grafana-dashboard.json"


def test_the_dashboard_plots_what_the_server_exports(server: LiveServer, pool_file: Path) -> None:
    """Every series the Grafana dashboard queries is in the live server's /metrics, with
    the labels its panels group by, once an order has gone through."""
    pool = load_pool(pool_file)
    body = {"items": [{"event_id": pool["events"][-1], "attendees": [{"name": "Dash Board"}]}]}
    request = urllib.request.Request(
        server.base_url + "/api/orders",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {pool['accounts'][-1]['token']}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status = r.status
    except urllib.error.HTTPError as exc:  # sold out, if a scenario sold the event first
        status = exc.code
    assert status in (201, 409), status
    time.sleep(2.5 * metrics.FLUSH_EVERY_S)  # every worker has flushed since
    samples = scrape(server)
    labels: dict[str, set[str]] = {}
    for name, pairs in samples:
        labels.setdefault(name, set()).update(label for label, _ in pairs)

    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [target["expr"] for panel in panels for target in panel["targets"]]
    assert len(panels) >= 10 and all(panel["targets"] for panel in panels)
    for query in queries:
        (series,) = set(re.findall(r"\breservation_[a-z_]+", query))
        assert series in labels, (query, sorted(labels))
        for grouped in re.findall(r"\bby \(([^)]*)\)", query):
            wanted = {name.strip() for name in grouped.split(",")}
            assert wanted <= labels[series], (query, labels[series])
    # Every kind of 503 has its series from the start, shed or not (at zero if not).
    shed = {dict(pairs)["kind"] for name, pairs in samples if name == "reservation_shed_total"}
    assert shed == {"overloaded", "store-unavailable", "unavailable"}, shed
