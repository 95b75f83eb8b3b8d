"""Shared fixtures: a local Ray, real stores (SQLite file, MariaDB database), HTTP clients.

MySQL tests run when ``RESERVATION_TEST_MYSQL_URL`` names a server (for example
``mysql+aiomysql://root@127.0.0.1:3306``); each test session creates its own
database there and drops it at the end. ``--require-mysql`` (or the environment variable
``RESERVATION_TEST_REQUIRE_MYSQL=1``) turns a missing server into a failure instead
of a skip; CI sets the variable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when ray is imported

import ray
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from reservation.api.app import create_app
from reservation.auth import Principal, Role, issue_token
from reservation.cluster import local_ray_env
from reservation.config import Settings
from reservation.domain.ids import new_id
from reservation.runtime import Runtime
from reservation.store import accounts
from reservation.store.db import migrate, sync_url
from reservation.store.inventory import to_dt

MYSQL_ENV = "RESERVATION_TEST_MYSQL_URL"
REQUIRE_MYSQL_ENV = "RESERVATION_TEST_REQUIRE_MYSQL"
# Fixed per process: pytest may import this module twice (as `conftest` and as
# `tests.conftest`), and both copies must name the same Ray namespace.
NAMESPACE = f"reservation-test-{os.getpid()}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-mysql", action="store_true", help="fail, not skip, without MariaDB/MySQL")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session, bound to 127.0.0.1."""
    if not ray.is_initialized():
        local_ray_env()  # the session's Ray runs as the server's local one
        ray.init(
            address="local",
            namespace=NAMESPACE,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    ray.shutdown()


def _mysql_required(config: pytest.Config) -> bool:
    return bool(config.getoption("--require-mysql")) or os.environ.get(REQUIRE_MYSQL_ENV) == "1"


def _mysql_server(config: pytest.Config) -> str | None:
    url = os.environ.get(MYSQL_ENV)
    if not url:
        if _mysql_required(config):
            pytest.fail(f"MySQL tests are required but {MYSQL_ENV} is not set")
        return None
    return url


@contextlib.contextmanager
def empty_mysql_database(config: pytest.Config, prefix: str = "reservation_test_") -> Iterator[str]:
    """A new, empty MariaDB database (dropped afterwards); skips or fails as configured."""
    server = _mysql_server(config)
    if server is None:
        pytest.skip(f"set {MYSQL_ENV} to run MySQL tests")
    name = prefix + secrets.token_hex(4)
    admin = create_engine(sync_url(server))
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
    except Exception as exc:
        admin.dispose()
        if _mysql_required(config):
            pytest.fail(f"MariaDB/MySQL at {server} is not usable: {exc}")
        pytest.skip(f"MariaDB/MySQL not reachable: {exc}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(scope="session")
def mysql_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated MariaDB database for this session."""
    with empty_mysql_database(request.config) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("store") / "reservation.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both stores."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def make_settings(url: str, tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "data_dir": tmp,
        "secret_key": "test-secret-" + "x" * 32,
        "ray_namespace": NAMESPACE,
        "actor_idle_s": 60.0,
        # The in-process front ends share one Ray all session: their actors reserve no
        # room, so that no test waits for another's; tests of the room set it.
        "actor_memory_mb": 0,
        "db_pool_size": 5,
        **overrides,
    }
    return Settings(**values)


@dataclass
class Api:
    """An in-process HTTP client on one front end, with helpers for common steps."""

    client: httpx.AsyncClient
    runtime: Runtime

    async def register(self, role: str = "customer", name: str = "Test User") -> dict[str, str]:
        """Register an account and return its Authorization header (plus its id)."""
        email = f"{role}-{secrets.token_hex(6)}@example.com"
        password = "correct horse battery"
        r = await self.client.post(
            "/api/users", json={"name": name, "email": email, "password": password, "role": role}
        )
        assert r.status_code == 201, r.text
        t = await self.client.post("/api/tokens", json={"email": email, "password": password})
        assert t.status_code == 201, t.text
        return {"Authorization": f"Bearer {t.json()['access_token']}", "X-Account": r.json()["id"]}

    async def create_event(self, host: dict[str, str], **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": "Concert",
            "description": "An evening of music",
            "venue": "Hall A",
            "starts_at": "2030-06-01T20:00:00Z",
            "ends_at": "2030-06-01T23:00:00Z",
            "capacity": 100,
            "oversell_capacity": 0,
            "price": {"amount": 2500, "currency": "EUR"},
        }
        body.update(fields)
        r = await self.client.post("/api/events", json=body, headers=auth(host))
        assert r.status_code == 201, r.text
        event: dict[str, Any] = r.json()
        return event

    async def book(
        self, who: dict[str, str], event_ids: list[str], attendees: int = 1, key: str | None = None
    ) -> httpx.Response:
        body = {
            "items": [
                {"event_id": e, "attendees": [{"name": f"Guest {n}"} for n in range(attendees)]}
                for e in event_ids
            ]
        }
        headers = auth(who)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post("/api/orders", json=body, headers=headers)


async def account(api: Api, role: str = "customer") -> dict[str, str]:
    """A stored account and a valid token for it, without the (deliberately slow) password hashing."""
    now = to_dt(time.time())
    account_id = new_id()
    row = {
        "id": account_id,
        "name": f"{role} {account_id[-6:]}",
        "email": f"{role}-{account_id}@example.com",
        "password_hash": "unused: this account never logs in",
        "role": role,
        "created_at": now,
        "updated_at": now,
    }
    await accounts.create_user(api.runtime.writer, row)
    token = issue_token(Principal(account_id, Role(role)), api.runtime.signing_key, 3600)
    return {"Authorization": f"Bearer {token}", "X-Account": account_id}

def assert_problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["type"] == f"/problems/{kind}", body
    assert body["status"] == status, body
    assert body["title"] and body["detail"], body
    return body

def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def auth(who: dict[str, str]) -> dict[str, str]:
    return {"Authorization": who["Authorization"]}


@pytest.fixture
async def api(store_url: str, ray_session: None, tmp_path: Path) -> AsyncIterator[Api]:
    """A front end on ``store_url`` (both stores), driven in-process through ASGI."""
    async with open_api(store_url, tmp_path) as value:
        yield value


class open_api:
    """Async context manager: one in-process front end (its own runtime) on a store."""

    def __init__(self, url: str, tmp: Path, actor_class: Any = None, **overrides: Any) -> None:
        self.settings = make_settings(url, tmp, **overrides)
        self.actor_class = actor_class

    async def __aenter__(self) -> Api:
        self.runtime = Runtime.create(self.settings, actor_class=self.actor_class)
        app = create_app(runtime=self.runtime)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        )
        return Api(self.client, self.runtime)

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.runtime.close()
