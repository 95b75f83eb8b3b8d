"""Seed a store for benchmarks: hosts, events, one "spike" event and customer accounts.

    python -m bench.seed --events 1000 --accounts 10000 --out bench/results/pool.json

It reads the same settings as the server (``RESERVATION_DATABASE_URL``,
``RESERVATION_DATA_DIR``, ``RESERVATION_SECRET_KEY``; ``--database-url`` and
``--data-dir`` override them), migrates the store, and writes every row with
SQLAlchemy Core ``executemany`` in chunks on the blocking driver, in one transaction.
All seeded accounts share the pool's password and ONE argon2 hash of it, computed
once: hashing ten thousand passwords would take minutes. A bearer token is minted for
every account with the server's signing key, so load generators never log in.

The spike event is announced but not yet on sale (``paused``): the locustfile's spike
scenario opens its sale as its host when the run starts, as a host opens an on-sale.

The pool file (JSON) is what ``bench/locustfile.py`` reads (``RESERVATION_BENCH_POOL``)::

    {"events": [ids], "spike_event": id, "spike_capacity": n, "spike_oversell": n,
     "accounts": [{"id", "email", "token"}], "hosts": [{"id", "email", "token"}],
     "password": "...", ...}
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from reservation.auth import Principal, Role, hash_password, issue_token
from reservation.config import Settings
from reservation.domain.ids import new_id
from reservation.store.db import is_sqlite, migrate, sync_url
from reservation.store.schema import event_policies, events, users

CHUNK = 1000
DEFAULT_PASSWORD = "bench-password-1"
DEFAULT_OUT = Path("bench/results/pool.json")

GENRES = (
    "Jazz", "Rock", "Chamber music", "Stand-up", "Opera", "Techno", "Folk", "Poetry", "Film",
    "Theatre", "Ballet", "Blues", "Hip-hop", "Choir", "Piano", "Magic",
)
FORMATS = ("night", "matinee", "festival", "showcase", "session", "gala", "evening", "marathon", "workshop")
VENUES = (
    "Blue Hall", "Riverside Stage", "Old Mill", "Room 2", "Grand Theatre", "Harbour Club", "City Arena",
    "Garden Pavilion", "The Cellar", "North Dock",
)
CITIES = ("Berlin", "Lisbon", "Oslo", "Vienna", "Lyon", "Turin", "Ghent", "Kraków")
PRICES = (900, 1500, 2500, 4500, 7900, 12000)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to seed."""

    events: int
    accounts: int
    hosts: int = 10
    capacity: int = 500
    oversell: int = 20
    spike_capacity: int = 100
    spike_oversell: int = 10
    days: int = 365
    password: str = DEFAULT_PASSWORD
    seed: int | None = None


@dataclass(slots=True)
class Rows:
    """The rows to insert, hosts first (events reference them)."""

    users: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    host_ids: list[str] = field(default_factory=list)
    account_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    spike_event: str = ""


def build_rows(plan: Plan, password_hash: str, run: str, now: datetime, rng: random.Random) -> Rows:
    """Every row of the plan, in memory (ids are time-ordered, as the server makes them)."""
    rows = Rows()

    def user(role: Role, n: int) -> str:
        uid = new_id()
        label = "Host" if role is Role.HOST else "Customer"
        rows.users.append(
            {
                "id": uid,
                "name": f"Bench {label} {n}",
                "email": f"bench-{run}-{role.value}-{n:06d}@example.com",
                "password_hash": password_hash,
                "role": role.value,
                "created_at": now,
                "updated_at": now,
            }
        )
        return uid

    rows.host_ids = [user(Role.HOST, n) for n in range(plan.hosts)]
    rows.account_ids = [user(Role.CUSTOMER, n) for n in range(plan.accounts)]

    def event(host_id: str, title: str, venue: str, starts: datetime, hours: int, capacity: int, oversell: int,
              price: int, policy: dict[str, Any], status: str = "on_sale") -> str:
        eid = new_id()
        rows.events.append(
            {
                "id": eid,
                "host_id": host_id,
                "title": title,
                "description": f"{title} at {venue}. Seeded for benchmarks.",
                "venue": venue,
                "starts_at": starts,
                "ends_at": starts + timedelta(hours=hours),
                "capacity": capacity,
                "oversell_capacity": oversell,
                "price_minor": price,
                "currency": "EUR",
                "status": status,
                "sold": 0,
                "held": 0,
                "epoch": 0,
                "version": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        rows.policies.append({"event_id": eid, **policy, "updated_at": now})
        return eid

    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(plan.events):
        day = midnight + timedelta(days=rng.randint(1, max(1, plan.days)))
        starts = day.replace(hour=rng.randint(10, 21), minute=rng.choice((0, 15, 30, 45)))
        policy = rng.choice(
            (
                {"cancellation_allowed": True, "cancel_deadline_hours": 24, "refund_percent": 100},
                {"cancellation_allowed": True, "cancel_deadline_hours": 48, "refund_percent": 50},
                {"cancellation_allowed": False, "cancel_deadline_hours": 0, "refund_percent": 0},
            )
        )
        rows.event_ids.append(
            event(
                rows.host_ids[n % len(rows.host_ids)],
                f"{rng.choice(GENRES)} {rng.choice(FORMATS)} #{n + 1}",
                f"{rng.choice(VENUES)}, {rng.choice(CITIES)}",
                starts,
                rng.randint(1, 4),
                plan.capacity,
                plan.oversell,
                rng.choice(PRICES),
                policy,
            )
        )
    rows.spike_event = event(
        rows.host_ids[0],
        f"On-sale spike: headliner live ({run})",
        "City Arena, Berlin",
        midnight + timedelta(days=30, hours=20),
        3,
        plan.spike_capacity,
        plan.spike_oversell,
        9900,
        {"cancellation_allowed": True, "cancel_deadline_hours": 24, "refund_percent": 100},
        status="paused",  # announced; the spike scenario opens the sale
    )
    return rows


def chunks(items: list[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert(url: str, rows: Rows) -> None:
    """Write every row in one transaction, ``CHUNK`` rows per executemany."""
    connect_args: dict[str, Any] = {"timeout": 30} if is_sqlite(url) else {}
    engine = create_engine(sync_url(url), connect_args=connect_args)
    try:
        with engine.begin() as conn:
            for table, items in ((users, rows.users), (events, rows.events), (event_policies, rows.policies)):
                for chunk in chunks(items):
                    conn.execute(table.insert(), chunk)
    finally:
        engine.dispose()


def mint(
    ids: Sequence[str], emails: dict[str, str], role: Role, key: str, ttl_s: int, now: float
) -> list[dict[str, str]]:
    """A bearer token for each account, signed as the server signs them."""
    return [
        {"id": i, "email": emails[i], "token": issue_token(Principal(i, role), key, ttl_s, now=now)} for i in ids
    ]


def seed(plan: Plan, settings: Settings, ttl_s: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Migrate, insert and mint; the pool document and the seconds each step took."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    url = settings.store_url
    migrate(url)
    key = settings.signing_key()  # the server's key: same data dir or RESERVATION_SECRET_KEY
    timings["migrate"] = time.perf_counter() - started

    mark = time.perf_counter()
    password_hash = hash_password(plan.password)  # once, shared by every seeded account
    timings["hash"] = time.perf_counter() - mark

    mark = time.perf_counter()
    run = secrets.token_hex(3)  # keeps emails unique when one store is seeded twice
    wall = time.time()
    now = datetime.fromtimestamp(wall, UTC).replace(tzinfo=None)
    rows = build_rows(plan, password_hash, run, now, random.Random(plan.seed))
    timings["build"] = time.perf_counter() - mark

    mark = time.perf_counter()
    insert(url, rows)
    timings["insert"] = time.perf_counter() - mark

    mark = time.perf_counter()
    emails = {u["id"]: u["email"] for u in rows.users}
    hosts = mint(rows.host_ids, emails, Role.HOST, key, ttl_s, wall)
    accounts = mint(rows.account_ids, emails, Role.CUSTOMER, key, ttl_s, wall)
    timings["tokens"] = time.perf_counter() - mark

    pool: dict[str, Any] = {
        "run": run,
        "created_at": datetime.fromtimestamp(wall, UTC).isoformat(),
        "store": make_url(url).render_as_string(hide_password=True),
        "token_expires_at": datetime.fromtimestamp(int(wall) + ttl_s, UTC).isoformat(),
        "password": plan.password,
        "events": rows.event_ids,
        "event_capacity": plan.capacity,
        "event_oversell": plan.oversell,
        "spike_event": rows.spike_event,
        "spike_capacity": plan.spike_capacity,
        "spike_oversell": plan.spike_oversell,
        "spike_host": rows.host_ids[0],
        "hosts": hosts,
        "accounts": accounts,
    }
    return pool, timings


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=_non_negative, required=True, help="events to create (plus one spike event)")
    p.add_argument("--accounts", type=_positive, required=True, help="customer accounts to create")
    p.add_argument("--hosts", type=_positive, default=10, help="host accounts owning the events (default 10)")
    p.add_argument("--capacity", type=_non_negative, default=500, help="seats per event (default 500)")
    p.add_argument("--oversell", type=_non_negative, default=20, help="oversell seats per event (default 20)")
    p.add_argument("--spike-capacity", type=_non_negative, default=100, help="seats of the spike event (default 100)")
    p.add_argument("--spike-oversell", type=_non_negative, default=10, help="oversell of the spike event (default 10)")
    p.add_argument("--days", type=_positive, default=365, help="events start over the next DAYS days (default 365)")
    p.add_argument("--password", default=DEFAULT_PASSWORD, help="password of every seeded account")
    p.add_argument("--token-ttl", type=_positive, help="token lifetime in seconds (default: the server's)")
    p.add_argument("--seed", type=int, help="random seed for titles, venues and dates")
    p.add_argument("--database-url", help="store URL (default: RESERVATION_DATABASE_URL, or SQLite in the data dir)")
    p.add_argument("--data-dir", help="the server's data dir (default: RESERVATION_DATA_DIR or ./var)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"pool file to write (default {DEFAULT_OUT})")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        sys.exit(f"configuration error: {exc}")
    plan = Plan(
        events=args.events,
        accounts=args.accounts,
        hosts=args.hosts,
        capacity=args.capacity,
        oversell=args.oversell,
        spike_capacity=args.spike_capacity,
        spike_oversell=args.spike_oversell,
        days=args.days,
        password=args.password,
        seed=args.seed,
    )
    started = time.perf_counter()
    pool, timings = seed(plan, settings, args.token_ttl or settings.token_ttl_s)
    mark = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(pool))
    tmp.replace(args.out)
    timings["write"] = time.perf_counter() - mark
    total = time.perf_counter() - started
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
    print(
        f"seeded {plan.events} events + 1 spike event ({pool['spike_event']}), {plan.hosts} hosts and "
        f"{plan.accounts} accounts into {pool['store']} in {total:.2f}s ({steps}); pool written to {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    main()
