"""Engines for the two supported stores, and the one-time migration step.

SQLite (the embedded default) runs in WAL mode with full fsync, so a commit that
returned survives a crash. Writers open their transactions with ``BEGIN IMMEDIATE``:
several processes (front ends and actors) write one file, and taking the write lock
up front avoids the deadlock of two readers upgrading at once. Readers use a second
engine with deferred transactions so they never wait for the write lock.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sync_url(url: str) -> str:
    """The blocking-driver twin of an async URL (used by migrations)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "pysqlite", "mysql": "pymysql", "mariadb": "pymysql"}.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or mysql/mariadb")
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, immediate: bool) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _install_sqlite_hooks(engine: AsyncEngine, immediate: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        _sqlite_pragmas(dbapi_connection, immediate)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, pool_size: int = 5, writer: bool = True, multi_statements: bool = False) -> AsyncEngine:
    """An async engine for ``url``; for SQLite, ``writer`` picks BEGIN IMMEDIATE.

    ``multi_statements`` lets a MySQL/MariaDB connection take several statements in one
    query (the event actors' group commits); off everywhere else.
    """
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"timeout": 10},
        )
        _install_sqlite_hooks(engine, immediate=writer)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if multi_statements:
        from pymysql.constants import CLIENT

        # Replaces SQLAlchemy's own flags, so FOUND_ROWS (rowcount = rows matched) stays.
        connect_args["client_flag"] = CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=3600,
        pool_pre_ping=False,
        connect_args=connect_args,
    )


@contextlib.contextmanager
def _migration_lock(url: str, conn: Connection | None) -> Iterator[None]:
    """Serialise migrations between processes and machines sharing one store."""
    if conn is None:
        path = make_url(url).database or ":memory:"
        if path == ":memory:":
            yield
            return
        lock_path = Path(path).with_suffix(".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    got = conn.execute(text("SELECT GET_LOCK('reservation_migrate', 120)")).scalar()
    if got != 1:
        raise RuntimeError("could not take the migration lock within 120 s")
    try:
        yield
    finally:
        conn.execute(text("SELECT RELEASE_LOCK('reservation_migrate')"))


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent; safe when several processes start)."""
    _alembic(url, "upgrade", revision)


def migrate_down(url: str, revision: str) -> None:
    """Take the schema back to ``revision`` (e.g. before going back to an older release)."""
    _alembic(url, "downgrade", revision)


def _alembic(url: str, step: str, revision: str) -> None:
    """Run alembic's ``upgrade`` or ``downgrade`` under the migration lock."""
    from alembic import command
    from alembic.config import Config

    run = {"upgrade": command.upgrade, "downgrade": command.downgrade}[step]
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = create_engine(sync_url(url))
    try:
        if is_sqlite(url):
            with _migration_lock(url, None), engine.begin() as conn:
                cfg.attributes["connection"] = conn
                run(cfg, revision)
        else:
            with engine.connect() as lock_conn, _migration_lock(url, lock_conn), engine.begin() as conn:
                cfg.attributes["connection"] = conn
                run(cfg, revision)
    finally:
        engine.dispose()
