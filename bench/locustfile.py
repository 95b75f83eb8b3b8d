"""Peak-load scenarios for the reservation server (locust, ``FastHttpUser``, run headless).

Pick a scenario by tag (``--tags browse`` / ``--tags spike``) or by user class name
(``BrowseAndBook`` / ``OnSaleSpike``); see the README section "Benchmarks".

- **browse** (``BrowseAndBook``): 80% reads (event list, event detail, my orders) and
  20% bookings of 1-3 attendees on random events, each virtual user its own account.
  A ``409 sold-out`` is an expected answer, reported as ``POST /api/orders [sold out]``.
- **spike** (``OnSaleSpike``): the spike event's host opens its sale when the run starts
  (``PATCH`` status ``on_sale``: the change goes through the event's actor, so the actor
  is up before the crowd arrives, as after a real host's opening); then every user books
  that ONE event (1-2 attendees) the moment it starts. Each booking carries an
  Idempotency-Key that is reused on its retries: on ``503`` (or ``409 in-flight``, or a
  broken connection) the user sleeps ``Retry-After`` and sends the same request again,
  a bounded number of times. ``201`` and ``409 sold-out`` are both expected outcomes.
  When the test stops, the confirmed seats are checked against capacity + oversell
  (see ``check_spike``).

With ``RESERVATION_BENCH_POOL`` naming a pool file from ``python -m bench.seed``, users
take seeded accounts (with their tokens) and events. Without a pool, each locust
process registers a host that creates its own events (and spike event), and every
browse user registers its own account, so the scenarios also run on an empty server.

Tunables (environment):
    RESERVATION_BENCH_POOL            pool.json from ``python -m bench.seed``
    RESERVATION_BENCH_WAIT            browse think time, seconds "min:max" (default 0.5:2)
    RESERVATION_BENCH_SPIKE_WAIT      spike wait between attempts "min:max" (default 0.5:1.5)
    RESERVATION_BENCH_SPIKE_ATTEMPTS  bookings per spike user, 0 = no limit (default 1)
    RESERVATION_BENCH_MAX_RETRIES     retries of one booking on 503 (default 5)
    RESERVATION_BENCH_EVENTS          events a host creates without a pool (default 20)
    RESERVATION_BENCH_BOOK_EVENTS     browse users book only the first N events (reads
                                      still span all); 0 = all (default). Each event
                                      booked needs its own actor process: keep N within
                                      the cluster's room for them (README "Benchmarks")
    RESERVATION_BENCH_SPIKE_CAPACITY, RESERVATION_BENCH_SPIKE_OVERSELL
                                      the spike event made without a pool (default 100, 10)
    RESERVATION_BENCH_CACHE_TTL_S     the server's read cache TTL, waited out before the
                                      spike check (default 1.0)
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import random
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import gevent
from gevent.lock import BoundedSemaphore
from locust import FastHttpUser, User, between, events, tag, task
from locust.contrib.fasthttp import FastHttpSession, ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("bench")

POOL_ENV = "RESERVATION_BENCH_POOL"
SOLD_OUT = "/problems/sold-out"
IN_FLIGHT = "/problems/in-flight"
SETUP_PASSWORD = "bench-password-1"
BOOK = "POST /api/orders"
BOOK_SPIKE = "POST /api/orders (spike)"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_range(name: str, default: tuple[float, float]) -> tuple[float, float]:
    """A "min:max" pair of seconds from the environment."""
    text = os.environ.get(name)
    if not text:
        return default
    low, _, high = text.partition(":")
    return float(low), float(high or low)


MAX_RETRIES = _env_int("RESERVATION_BENCH_MAX_RETRIES", 5)
RETRY_AFTER_CAP_S = 30.0


# ------------------------------------------------------------------ the pool


@functools.cache
def pool() -> dict[str, Any] | None:
    """The seeded pool named by ``RESERVATION_BENCH_POOL``, or None to set up without one."""
    path = os.environ.get(POOL_ENV)
    if not path:
        return None
    with open(path) as fh:
        data: dict[str, Any] = json.load(fh)
    missing = {"events", "spike_event", "spike_capacity", "spike_oversell", "accounts"} - data.keys()
    if missing:
        raise ValueError(f"{path} is not a bench.seed pool: missing {sorted(missing)}")
    if not data["accounts"]:
        raise ValueError(f"{path} has no accounts")
    return data


_account_numbers = itertools.count()
_warned_reuse = False


def take_account(environment: Environment, data: dict[str, Any]) -> dict[str, str]:
    """The next seeded account: one per virtual user until the pool runs out, then reused.

    Locust worker processes start at different offsets (by worker index), so they do not
    hand out the same accounts as long as the pool is large enough.
    """
    global _warned_reuse
    accounts: list[dict[str, str]] = data["accounts"]
    workers = max(1, int(getattr(environment.parsed_options, "expect_workers", 1) or 1))
    index = int(getattr(environment.runner, "worker_index", 0) or 0)
    n = next(_account_numbers)
    share = max(1, len(accounts) // workers)
    if n >= share and not _warned_reuse:
        _warned_reuse = True
        log.warning("more virtual users than pooled accounts (%d per process): accounts are shared", share)
    return accounts[(index * share + n % share) % len(accounts)]


@dataclass(frozen=True, slots=True)
class SpikeTarget:
    event_id: str
    capacity: int
    oversell: int
    host_token: str | None  # lets the final check read sold and held, not only availability

    @property
    def limit(self) -> int:
        return self.capacity + self.oversell


def pool_spike_target(data: dict[str, Any]) -> SpikeTarget:
    host_token = next((h["token"] for h in data.get("hosts", ()) if h["id"] == data.get("spike_host")), None)
    return SpikeTarget(data["spike_event"], int(data["spike_capacity"]), int(data["spike_oversell"]), host_token)


# ------------------------------------------------- set-up without a pool


def register(client: FastHttpSession, role: Literal["customer", "host"]) -> str:
    """Register an account and log in; its bearer token (StopUser if either step fails)."""
    email = f"bench-{role}-{secrets.token_hex(8)}@example.com"
    body = {"name": f"Bench {role}", "email": email, "password": SETUP_PASSWORD, "role": role}
    with client.post("/api/users", json=body, name="setup: POST /api/users", catch_response=True) as r:
        if r.status_code != 201:
            r.failure(f"registration answered {r.status_code}: {r.text}")
            raise StopUser()
    login = {"email": email, "password": SETUP_PASSWORD}
    with client.post("/api/tokens", json=login, name="setup: POST /api/tokens", catch_response=True) as r:
        token = _json(r).get("access_token")
        if r.status_code != 201 or not isinstance(token, str):
            r.failure(f"login answered {r.status_code}: {r.text}")
            raise StopUser()
    return token


def create_event(client: FastHttpSession, token: str, n: int, capacity: int, oversell: int, title: str,
                 status: Literal["on_sale", "paused"] = "on_sale") -> str:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7 + n, hours=n % 12)
    body = {
        "title": title,
        "description": "Created by the benchmark without a pool",
        "venue": f"Bench Hall {n % 5 + 1}",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "capacity": capacity,
        "oversell_capacity": oversell,
        "price": {"amount": 2500, "currency": "EUR"},
        "status": status,
    }
    headers = {"Authorization": f"Bearer {token}"}
    with client.post("/api/events", json=body, headers=headers, name="setup: POST /api/events",
                     catch_response=True) as r:
        event_id = _json(r).get("id")
        if r.status_code != 201 or not isinstance(event_id, str):
            r.failure(f"creating an event answered {r.status_code}: {r.text}")
            raise StopUser()
    return event_id


class SharedSetup:
    """What the users of one locust process share without a pool: a host and its events."""

    def __init__(self) -> None:
        self._lock = BoundedSemaphore()
        self._host_token: str | None = None
        self._events: list[str] = []
        self._spike: SpikeTarget | None = None

    def _host(self, client: FastHttpSession) -> str:
        if self._host_token is None:
            self._host_token = register(client, "host")
        return self._host_token

    def browse_events(self, client: FastHttpSession) -> list[str]:
        with self._lock:
            if not self._events:
                host = self._host(client)
                count = _env_int("RESERVATION_BENCH_EVENTS", 20)
                self._events = [create_event(client, host, n, 200, 10, f"Bench event #{n + 1}") for n in range(count)]
            return self._events

    def spike_target(self, client: FastHttpSession) -> SpikeTarget:
        with self._lock:
            if self._spike is None:
                host = self._host(client)
                capacity = _env_int("RESERVATION_BENCH_SPIKE_CAPACITY", 100)
                oversell = _env_int("RESERVATION_BENCH_SPIKE_OVERSELL", 10)
                event_id = create_event(client, host, 0, capacity, oversell, "Bench on-sale spike", "paused")
                self._spike = SpikeTarget(event_id, capacity, oversell, host)
                # The other users wait on the lock meanwhile: they all book after the opening.
                open_sale(str(client.base_url), self._spike)  # FastHttpUser requires a host
            return self._spike


SETUP = SharedSetup()


# ------------------------------------------------------------------ booking


def _json(r: ResponseContextManager) -> dict[str, Any]:
    try:
        value = json.loads(r.text or "")
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(r: ResponseContextManager) -> float:
    """Seconds to wait before the retry: the server's Retry-After, plus a little jitter."""
    header = r.headers.get("Retry-After") if r.headers is not None else None
    try:
        seconds = float(header) if isinstance(header, str) else 1.0
    except ValueError:  # an HTTP date: not sent by this server
        seconds = 1.0
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S) * (1 + random.random() * 0.2)


@dataclass(frozen=True, slots=True)
class Booked:
    outcome: Literal["booked", "sold_out", "failed"]
    seats: int = 0
    retries: int = 0


def place_order(client: FastHttpSession, token: str, event_id: str, attendees: int, name: str) -> Booked:
    """Book ``attendees`` seats on one event with an Idempotency-Key, retried on 503 with that key.

    ``201`` and ``409 sold-out`` are successes (the latter named ``<name> [sold out]``);
    a retried attempt is reported as a success named ``<name> [<why>, retried]``; what is
    left once the retries are spent, or any other answer, is a failure.
    """
    body = {"items": [{"event_id": event_id, "attendees": [{"name": f"Guest {n + 1}"} for n in range(attendees)]}]}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
    for attempt in range(MAX_RETRIES + 1):
        wait: float | None = None
        with client.post("/api/orders", json=body, headers=headers, name=name, catch_response=True) as r:
            answer = _json(r)
            kind = answer.get("type")
            if r.status_code == 201:
                items = answer.get("items") or [{}]
                seats = items[0].get("quantity")
                if answer.get("status") != "confirmed" or seats != attendees:
                    r.failure(f"201 with an unexpected order: {r.text[:300]}")
                    return Booked("failed", retries=attempt)
                r.success()
                return Booked("booked", seats, attempt)
            if r.status_code == 409 and kind == SOLD_OUT:
                r.request_meta["name"] = f"{name} [sold out]"
                r.success()
                return Booked("sold_out", retries=attempt)
            why = (
                "503" if r.status_code == 503
                else "in-flight" if r.status_code == 409 and kind == IN_FLIGHT
                else "connection error" if not r.status_code
                else None
            )
            if why is None or attempt == MAX_RETRIES:
                detail = f"{why}, retries spent" if why else (answer.get("detail") or r.text or r.error)
                r.failure(f"{r.status_code} {kind or ''}: {str(detail)[:300]}")
                return Booked("failed", retries=attempt)
            r.request_meta["name"] = f"{name} [{why}, retried]"
            r.success()
            wait = _retry_after(r)
        gevent.sleep(wait)
    raise AssertionError("unreachable")


@dataclass(slots=True)
class SpikeTally:
    """What this process's spike users were answered (final outcomes, one per Idempotency-Key)."""

    target: SpikeTarget | None = None
    bookings: int = 0
    orders: int = 0
    seats: int = 0
    sold_out: int = 0
    failed: int = 0
    retries: int = 0

    def add(self, booked: Booked) -> None:
        self.bookings += 1
        self.retries += booked.retries
        if booked.outcome == "booked":
            self.orders += 1
            self.seats += booked.seats
        elif booked.outcome == "sold_out":
            self.sold_out += 1
        else:
            self.failed += 1


TALLY = SpikeTally()


# ------------------------------------------------------------------- users


class BrowseAndBook(FastHttpUser):
    """80% reads (list, detail, my orders), 20% bookings over many events; one account per user."""

    wait_time = between(*_env_range("RESERVATION_BENCH_WAIT", (0.5, 2.0)))

    token: str
    event_ids: list[str]
    book_ids: list[str]
    cursor: str | None = None

    def on_start(self) -> None:
        data = pool()
        if data is not None:
            self.token = take_account(self.environment, data)["token"]
            self.event_ids = data["events"]
        else:
            self.event_ids = SETUP.browse_events(self.client)
            self.token = register(self.client, "customer")
        if not self.event_ids:
            raise ValueError("the pool has no events to browse and book")
        on_sale = _env_int("RESERVATION_BENCH_BOOK_EVENTS", 0)
        self.book_ids = self.event_ids[:on_sale] if on_sale > 0 else self.event_ids
        self.auth = {"Authorization": f"Bearer {self.token}"}

    @tag("browse")
    @task(4)
    def list_events(self) -> None:
        query: dict[str, Any] = {"page_size": random.choice((10, 20, 50))}
        if self.cursor and random.random() < 0.5:
            query["cursor"] = self.cursor  # the next page of what this user saw last
        with self.client.get(f"/api/events?{urlencode(query)}", headers=self.auth, name="GET /api/events",
                             catch_response=True) as r:
            if r.status_code == 200:
                page = _json(r)
                if not isinstance(page.get("items"), list):
                    r.failure("no items in the event page")
                    return
                self.cursor = page.get("next_cursor")

    @tag("browse")
    @task(3)
    def event_detail(self) -> None:
        event_id = random.choice(self.event_ids)
        with self.client.get(f"/api/events/{event_id}", headers=self.auth, name="GET /api/events/{id}",
                             catch_response=True) as r:
            if r.status_code == 200 and _json(r).get("availability", {}).get("remaining", -1) < 0:
                r.failure("event without availability")

    @tag("browse")
    @task(1)
    def my_orders(self) -> None:
        with self.client.get("/api/orders?page_size=10", headers=self.auth, name="GET /api/orders",
                             catch_response=True) as r:
            if r.status_code == 200 and not isinstance(_json(r).get("items"), list):
                r.failure("no items in the order page")

    @tag("browse")
    @task(2)
    def book(self) -> None:
        place_order(self.client, self.token, random.choice(self.book_ids), random.randint(1, 3), BOOK)


class OnSaleSpike(FastHttpUser):
    """Every user books the one spike event at once; retries reuse their Idempotency-Key."""

    wait_time = between(*_env_range("RESERVATION_BENCH_SPIKE_WAIT", (0.5, 1.5)))

    token: str
    target: SpikeTarget
    attempts_left: int

    def on_start(self) -> None:
        data = pool()
        if data is not None:
            self.target = pool_spike_target(data)
            self.token = take_account(self.environment, data)["token"]
        else:
            self.target = SETUP.spike_target(self.client)
            self.token = register(self.client, "customer")
        TALLY.target = self.target
        attempts = _env_int("RESERVATION_BENCH_SPIKE_ATTEMPTS", 1)
        self.attempts_left = attempts if attempts > 0 else -1

    @tag("spike")
    @task
    def book_spike(self) -> None:
        TALLY.add(place_order(self.client, self.token, self.target.event_id, random.randint(1, 2), BOOK_SPIKE))
        self.attempts_left -= 1
        if self.attempts_left == 0:
            raise StopUser()  # this customer is done: booked, or saw it sold out


# ------------------------------------------------------ scenario selection


def _selected(user_class: type[User], tags: set[str], exclude: set[str]) -> bool:
    """Whether any task of the class survives ``--tags`` / ``--exclude-tags``."""
    for t in user_class.tasks:
        marks: set[str] = getattr(t, "locust_tag_set", set())
        if (not tags or marks & tags) and not marks & exclude:
            return True
    return False


@events.init.add_listener
def _keep_selected_scenarios(environment: Environment, **_: Any) -> None:
    """``--tags spike`` runs only spike users (locust would otherwise spawn task-less browse users)."""
    options = environment.parsed_options
    tags = set(getattr(options, "tags", None) or ())
    exclude = set(getattr(options, "exclude_tags", None) or ())
    if tags or exclude:
        kept = [u for u in environment.user_classes if _selected(u, tags, exclude)]
        if kept:
            environment.user_classes[:] = kept
    data = pool()
    if data is not None:
        log.info(
            "pool %s: %d events, %d accounts, spike event %s (capacity %s + oversell %s)",
            os.environ[POOL_ENV], len(data["events"]), len(data["accounts"]), data["spike_event"],
            data["spike_capacity"], data["spike_oversell"],
        )


# ------------------------------------------------------ the spike's check


def _event_request(base_url: str, target: SpikeTarget, change: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event as the server shows it (to its host, with the host's token), after ``change``
    (a ``PATCH``) if one is given. Outside locust's statistics."""
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api/events/{target.event_id}",
        data=None if change is None else json.dumps(change).encode(),
        method="GET" if change is None else "PATCH",
        headers={} if change is None else {"Content-Type": "application/json"},
    )
    if target.host_token:
        request.add_header("Authorization", f"Bearer {target.host_token}")
    with urllib.request.urlopen(request, timeout=60) as r:
        value: dict[str, Any] = json.load(r)
        return value


def open_sale(base_url: str, target: SpikeTarget) -> None:
    """Open the spike event's sale as its host, as a host opens an on-sale.

    The status change goes through the event's actor, which is started and loaded from
    the store by it if it was not running; so the crowd meets a running actor, and the
    run measures the booking path rather than one actor start (about a second of CPU).
    An event on sale already stays on sale. Logs the outcome; a failure is logged as an
    error, and the bookings then show it (``409 sales-paused`` is a failure).
    """
    if not target.host_token:
        log.warning("spike: no host token for event %s: its sale is not opened (it must be on sale already)",
                    target.event_id)
        return
    started = time.monotonic()
    try:
        event = _event_request(base_url, target, {"status": "on_sale"})
    except (OSError, ValueError) as exc:
        log.error("spike: could not open the sale of event %s: %s", target.event_id, exc)
        return
    log.info("spike: opened the sale of event %s (status %s) in %.2f s", target.event_id, event.get("status"),
             time.monotonic() - started)


def check_spike(environment: Environment, target: SpikeTarget, tally: SpikeTally | None) -> list[str]:
    """Compare what the users were sold with the event's limit and with what the server shows.

    Every seat answered ``201`` must fit within capacity + oversell; the server's
    ``availability.remaining`` must not be negative; with the host's token (seeded pool,
    or an event made here) its ``sold + held`` must fit too and ``sold`` must cover every
    seat answered ``201`` (a confirmed booking is in the store). Returns the violations.
    ``tally`` is None on a distributed master: its users' answers are counted by the workers.
    """
    problems: list[str] = []
    if tally is not None and tally.seats > target.limit:
        problems.append(f"OVERSOLD: 201s confirmed {tally.seats} seats, capacity+oversell is {target.limit}")
    if not environment.host:
        problems.append("no --host: cannot read the event back")
        return problems
    gevent.sleep(_env_float("RESERVATION_BENCH_CACHE_TTL_S", 1.0) + 0.2)  # let the server's read cache expire
    try:
        event = _event_request(environment.host, target)
    except (OSError, ValueError) as exc:
        problems.append(f"cannot read event {target.event_id}: {exc}")
        return problems
    remaining = event.get("availability", {}).get("remaining")
    server = f"remaining={remaining}"
    if not isinstance(remaining, int) or remaining < 0:
        problems.append(f"availability.remaining is {remaining!r}")
    if "sold" in event:
        sold, held = int(event["sold"]), int(event["held"])
        server += f" sold={sold} held={held}"
        if sold + held > target.limit:
            problems.append(f"OVERSOLD: the server shows sold {sold} + held {held} > {target.limit}")
        if tally is not None and sold < tally.seats:
            problems.append(f"LOST: {tally.seats} seats were answered 201 but the server shows sold {sold}")
    answers = (
        "answers counted by the workers" if tally is None
        else f"bookings={tally.bookings} orders_201={tally.orders} seats_201={tally.seats} "
        f"sold_out={tally.sold_out} failed={tally.failed} retries={tally.retries}"
    )
    log.info(
        "spike check: event %s limit %d (capacity %d + oversell %d): %s; server %s: %s",
        target.event_id, target.limit, target.capacity, target.oversell, answers, server,
        "FAILED" if problems else "OK",
    )
    return problems


@events.quitting.add_listener
def _flush_csv(environment: Environment, **_: Any) -> None:
    """Locust rewrites its --csv files once a second: give it that second, so they hold the final numbers."""
    options = environment.parsed_options
    if getattr(options, "csv_prefix", None) and not getattr(options, "worker", False):
        gevent.sleep(1.2)


@events.test_start.add_listener
def _open_the_spike_sale(environment: Environment, **_: Any) -> None:
    """Before any user spawns, the seeded spike event's sale opens (once: not on workers,
    whose users the master spawns after this). Without a pool, the first spike user's
    set-up opens the event it creates."""
    data = pool()
    if (OnSaleSpike in environment.user_classes and data is not None and environment.host
            and not isinstance(environment.runner, WorkerRunner)):
        open_sale(environment.host, pool_spike_target(data))


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if OnSaleSpike not in environment.user_classes:
        return
    target = TALLY.target
    data = pool()
    if target is None and data is not None:
        target = pool_spike_target(data)
    if target is None:
        return
    problems = check_spike(environment, target, None if isinstance(environment.runner, MasterRunner) else TALLY)
    if problems:
        banner = "!" * 72
        log.error("\n%s\nSPIKE CHECK FAILED for event %s:\n  %s\n%s", banner, target.event_id,
                  "\n  ".join(problems), banner)
        environment.process_exit_code = 1
