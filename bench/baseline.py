"""Baseline for ``bench.compare``: the booking server most people would write instead.

FastAPI under uvicorn with an aiomysql pool, and one database transaction per booking:
a conditional ``UPDATE events SET sold = sold + n WHERE id = ? AND sold + n <= capacity
+ oversell_capacity`` (the row lock serialises bookings of one event) and an INSERT of
the booking, then COMMIT. It takes the same request body as ``POST /api/orders`` and
the same bearer tokens (HS256 JWT, checked with ``RESERVATION_SECRET_KEY``), answers
201 with a small JSON order, 409 when sold out. The Idempotency-Key header is ignored.

    RESERVATION_SECRET_KEY=... python -m bench.baseline --port 8100 --workers 2 \\
        --database-url mysql+aiomysql://root@127.0.0.1:3306/baseline

It creates its own tables (``events``, ``bookings``) in that database; events are
inserted by whoever runs the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import aiomysql
import jwt
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

URL_ENV = "BENCH_BASELINE_DATABASE_URL"
POOL_ENV = "BENCH_BASELINE_POOL_SIZE"
SECRET_ENV = "RESERVATION_SECRET_KEY"

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS events (
        id VARCHAR(36) NOT NULL PRIMARY KEY,
        capacity INT NOT NULL,
        oversell_capacity INT NOT NULL DEFAULT 0,
        sold INT NOT NULL DEFAULT 0
    ) ENGINE=InnoDB
    """,
    """
    CREATE TABLE IF NOT EXISTS bookings (
        id VARCHAR(36) NOT NULL PRIMARY KEY,
        order_id VARCHAR(36) NOT NULL,
        event_id VARCHAR(36) NOT NULL,
        account_id VARCHAR(36) NOT NULL,
        quantity INT NOT NULL,
        attendees TEXT NOT NULL,
        created_at DATETIME(6) NOT NULL,
        INDEX ix_bookings_event_id (event_id)
    ) ENGINE=InnoDB
    """,
)

BOOK = "UPDATE events SET sold = sold + %s WHERE id = %s AND sold + %s <= capacity + oversell_capacity"
INSERT = (
    "INSERT INTO bookings (id, order_id, event_id, account_id, quantity, attendees, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


class Attendee(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Annotated[str, Field(max_length=320)] | None = None


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=36)]
    attendees: Annotated[list[Attendee], Field(min_length=1, max_length=20)]


class OrderIn(BaseModel):
    """The same body as ``POST /api/orders`` of the reservation server."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[Item], Field(min_length=1, max_length=10)]


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    user: str
    password: str
    db: str


def connection_params(url: str) -> Connection:
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.database:
        raise ValueError(f"the baseline needs a MySQL/MariaDB URL with a database, not {url!r}")
    return Connection(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        db=parsed.database,
    )


def problem(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"/problems/{kind}", "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def create_app() -> FastAPI:
    url = os.environ[URL_ENV]
    secret = os.environ[SECRET_ENV]
    pool_size = int(os.environ.get(POOL_ENV, "16"))
    params = connection_params(url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await aiomysql.create_pool(
            host=params.host,
            port=params.port,
            user=params.user,
            password=params.password,
            db=params.db,
            minsize=1,
            maxsize=pool_size,
            autocommit=False,
        )
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()
            await pool.wait_closed()

    app = FastAPI(title="Baseline booking server", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders", status_code=201, response_model=None)
    async def place(
        body: OrderIn, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any] | JSONResponse:
        if authorization is None or not authorization.startswith("Bearer "):
            return problem(401, "unauthorized", "send a bearer token")
        try:
            claims = jwt.decode(authorization[7:], secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
        except jwt.PyJWTError:
            return problem(401, "unauthorized", "invalid or expired token")
        account_id = str(claims["sub"])
        order_id = str(uuid.uuid4())
        now = datetime.now(UTC).replace(tzinfo=None)
        items: list[dict[str, Any]] = []
        pool: aiomysql.Pool = request.app.state.pool
        async with pool.acquire() as conn:
            try:
                await conn.begin()
                async with conn.cursor() as cur:
                    for item in body.items:
                        n = len(item.attendees)
                        await cur.execute(BOOK, (n, item.event_id, n))
                        if cur.rowcount != 1:
                            await cur.execute("SELECT 1 FROM events WHERE id = %s", (item.event_id,))
                            exists = await cur.fetchone() is not None
                            await conn.rollback()
                            if not exists:
                                return problem(404, "not-found", f"no event {item.event_id}")
                            return problem(409, "sold-out", f"not enough seats (event {item.event_id})")
                        booking_id = str(uuid.uuid4())
                        people = json.dumps([a.model_dump() for a in item.attendees])
                        await cur.execute(INSERT, (booking_id, order_id, item.event_id, account_id, n, people, now))
                        items.append({"id": booking_id, "event_id": item.event_id, "quantity": n})
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
        return {"id": order_id, "status": "confirmed", "items": items}

    return app


async def create_schema(url: str) -> None:
    params = connection_params(url)
    conn = await aiomysql.connect(
        host=params.host, port=params.port, user=params.user, password=params.password, db=params.db
    )
    try:
        async with conn.cursor() as cur:
            for statement in SCHEMA:
                await cur.execute(statement)
        await conn.commit()
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", required=True, help="mysql+aiomysql://user:pass@host:3306/db")
    parser.add_argument("--pool-size", type=int, default=16, help="database connections per worker at most")
    args = parser.parse_args(argv)
    if not os.environ.get(SECRET_ENV):
        sys.exit(f"set {SECRET_ENV}: the baseline checks the same bearer tokens as the reservation server")
    os.environ[URL_ENV] = args.database_url
    os.environ[POOL_ENV] = str(args.pool_size)
    asyncio.run(create_schema(args.database_url))

    import uvicorn

    print(f"baseline listening on http://{args.host}:{args.port} ({args.workers} worker(s))", flush=True)
    uvicorn.run(
        "bench.baseline:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def __getattr__(name: str) -> Any:
    # `uvicorn bench.baseline:app` builds the app from the environment on demand.
    if name == "app":
        return create_app()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
