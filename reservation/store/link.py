"""An event actor's connections to the store, on the drivers alone (no SQLAlchemy).

The front ends reach the store through SQLAlchemy (``db.make_engine``). An event actor
needs far less: a couple of long-lived connections, a few fixed queries to load its
event, and its group commits, which it already renders itself (``inventory``). Going
to aiomysql and aiosqlite directly spares each actor process SQLAlchemy's import
(see ``rows``), while both stores are set up as ``db.make_engine`` sets them up:

- MySQL/MariaDB: autocommit off (the first statement opens the transaction), rowcount
  as rows matched (``FOUND_ROWS``), several statements per query (``MULTI_STATEMENTS``,
  for the group commits), a 5 s connect timeout, and ``LOAD DATA LOCAL`` for a batch's
  new rows, which go from memory and never from a file (``offer_loads``);
- SQLite: WAL, ``synchronous=FULL``, a 10 s busy timeout, foreign keys on, and every
  transaction opened with ``BEGIN IMMEDIATE`` (the actor writes).

Statements are written with ``%s`` marks; on SQLite they become ``?``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MYSQL_SCHEMES = ("mysql+aiomysql", "mariadb+aiomysql")
SQLITE_SCHEMES = ("sqlite+aiosqlite",)
# URL query options passed on to aiomysql as they are (text) or as numbers.
_MYSQL_TEXT_OPTIONS = ("charset", "unix_socket", "init_command")
_MYSQL_NUMBER_OPTIONS = ("connect_timeout",)


class UnsupportedURL(ValueError):
    """A database URL the event actors cannot connect to."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a link connects: ``kind`` is ``"mysql"`` or ``"sqlite"``."""

    kind: str
    path: str = ""  # SQLite: the database file
    options: dict[str, Any] = field(default_factory=dict)  # MySQL: aiomysql.connect's arguments


def target_for(url: str) -> Target:
    """The connection a database URL names, as ``db.make_engine`` reads it.

    Raises UnsupportedURL for a scheme or an option the actors do not handle, so that a
    server refuses it at start rather than its actors at the first booking.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme in SQLITE_SCHEMES:
        if query:
            raise UnsupportedURL(f"SQLite URL options are not supported: {sorted(query)}")
        # As SQLAlchemy reads it: sqlite:///relative.db, sqlite:////absolute.db.
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        if not path or path == ":memory:":
            raise UnsupportedURL("an in-memory SQLite database cannot be shared with the event actors")
        return Target("sqlite", path=path)
    if scheme in MYSQL_SCHEMES:
        options: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else "",
            "db": unquote(parts.path[1:]) or None,
            "connect_timeout": 5,
        }
        if parts.port is not None:
            options["port"] = parts.port
        for name, value in query.items():
            if name in _MYSQL_TEXT_OPTIONS:
                options[name] = value
            elif name in _MYSQL_NUMBER_OPTIONS and value.isdigit():
                options[name] = int(value)
            else:
                known = ", ".join(_MYSQL_TEXT_OPTIONS + _MYSQL_NUMBER_OPTIONS)
                raise UnsupportedURL(f"MySQL URL option {name!r} is not supported (supported: {known})")
        return Target("mysql", options=options)
    supported = ", ".join(MYSQL_SCHEMES + SQLITE_SCHEMES)
    raise UnsupportedURL(f"unsupported database URL scheme {parts.scheme!r}: use one of {supported}")


class Link:
    """One connection. ``inline`` marks MySQL/MariaDB: group commits go to ``driver``
    as multi-statement queries, updates with their values inlined and new rows loaded
    beside them (``inventory.Statements``)."""

    inline = False
    driver: Any = None
    # Whether the server takes LOAD DATA LOCAL (MariaDB's local_infile; on by default).
    can_load = False

    async def begin(self) -> None:
        """Open a transaction (on MySQL/MariaDB the first statement opens it)."""

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; answers its row count (rows matched, for an UPDATE)."""
        raise NotImplementedError

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class MySQLLink(Link):
    inline = True

    def __init__(self, driver: Any) -> None:
        self.driver = driver  # ``connect`` then asks the server whether it takes loads

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self.driver.cursor() as cursor:
            await cursor.execute(sql, params)
            return list(await cursor.fetchall())

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        async with self.driver.cursor() as cursor:
            await cursor.execute(sql, params)
            return int(cursor.rowcount)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self.driver.cursor() as cursor:
            await cursor.executemany(sql, rows)

    async def commit(self) -> None:
        await self.driver.commit()

    async def rollback(self) -> None:
        await self.driver.rollback()

    async def close(self) -> None:
        self.driver.close()


class SQLiteLink(Link):
    def __init__(self, db: Any) -> None:
        self.db = db

    async def begin(self) -> None:
        await self._run("BEGIN IMMEDIATE")

    async def _run(self, sql: str) -> None:
        async with self.db.execute(sql):
            pass

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self.db.execute(sql.replace("%s", "?"), params) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        async with self.db.execute(sql.replace("%s", "?"), params) as cursor:
            return int(cursor.rowcount)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self.db.executemany(sql.replace("%s", "?"), rows)

    async def commit(self) -> None:
        if self.db.in_transaction:
            await self._run("COMMIT")

    async def rollback(self) -> None:
        if self.db.in_transaction:
            await self._run("ROLLBACK")

    async def close(self) -> None:
        await self.db.close()


def offer_loads(driver: Any, loads: dict[str, bytes]) -> None:
    """The rows the connection's next query loads, by the names its ``LOAD DATA LOCAL
    INFILE 'name'`` statements give; what an earlier query left unasked is dropped.

    aiomysql answers the server's request for a load's rows with ``LoadLocalFile``,
    which reads the file of that name. An actor's links answer it with ``_RowsInMemory``
    instead: the rows offered here under that name, once, and nothing for any other
    name, so no file is ever read, whatever the server asks for.
    """
    setattr(driver, _PENDING, dict(loads))


async def quiet_cursor(driver: Any) -> Any:
    """A cursor on ``driver`` that leaves the server's warnings to its caller
    (``loaded_warnings``): aiomysql's own asks the server for them after a query's last
    statement and reports them through ``warnings.warn``."""
    global _QuietCursor
    if _QuietCursor is None:
        import aiomysql

        class QuietCursor(aiomysql.Cursor):
            async def _show_warnings(self, conn: Any) -> None:
                return None

        _QuietCursor = QuietCursor
    return await driver.cursor(_QuietCursor)


_QuietCursor: Any = None


def loaded_warnings(cursor: Any) -> int:
    """The warnings of the statement whose result ``cursor`` holds (a load's cut values)."""
    result = getattr(cursor, "_result", None)
    return int(getattr(result, "warning_count", 0) or 0)


_PENDING = "_reservation_loads"
# A load's rows go in data packets of at most this many bytes (well inside MariaDB's
# max_allowed_packet).
LOAD_PACKET_BYTES = 1 << 20


class _RowsInMemory:
    """Sends a load's rows from memory (see ``offer_loads``); stands in for aiomysql's
    ``LoadLocalFile``, whose constructor and ``send_data`` it keeps."""

    def __init__(self, filename: bytes | str, connection: Any) -> None:
        # As the server sent it (bytes); names are ASCII.
        self.filename = filename.decode(errors="replace") if isinstance(filename, bytes) else filename
        self.connection = connection

    async def send_data(self) -> None:
        import pymysql

        conn = self.connection
        pending: dict[str, bytes] = getattr(conn, _PENDING, {})
        rows = pending.pop(self.filename, None)
        try:
            if rows is None:
                raise pymysql.err.OperationalError(
                    2000, f"the server asked for rows by the name {self.filename!r}, which were not sent"
                )
            view = memoryview(rows)
            for start in range(0, len(view), LOAD_PACKET_BYTES):
                conn.write_packet(view[start : start + LOAD_PACKET_BYTES])
        finally:
            conn.write_packet(b"")  # the end of the rows (an empty load if refused)


async def connect(target: Target) -> Link:
    """A new connection to ``target``, set up as described in the module doc."""
    if target.kind == "mysql":
        import aiomysql
        import aiomysql.connection
        from pymysql.constants import CLIENT

        # Process-wide: aiomysql looks the class up by name for every connection. Those
        # opened without local_infile (the front ends') refuse a load before it; with
        # this one, a load can only send rows a batch offered.
        aiomysql.connection.LoadLocalFile = _RowsInMemory
        driver = await aiomysql.connect(
            **target.options,
            autocommit=False,
            local_infile=True,
            client_flag=CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS,
        )
        link = MySQLLink(driver)
        try:
            # A server with local_infile off refuses every load: its batches go as inserts.
            ((allowed,),) = await link.fetch("SELECT @@local_infile")
            await link.commit()
        except BaseException:
            await link.close()
            raise
        link.can_load = bool(int(allowed))
        return link
    import aiosqlite

    Path(target.path).parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(target.path, timeout=10, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON"):
            async with db.execute(f"PRAGMA {pragma}"):
                pass
    except BaseException:
        await db.close()
        raise
    return SQLiteLink(db)
