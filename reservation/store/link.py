"""An event actor's connections to the store, on the drivers alone (no SQLAlchemy).

The front ends reach the store through SQLAlchemy (``db.make_engine``). An event actor
needs far less: a couple of long-lived connections, a few fixed queries to load its
event, and its group commits, which it already renders itself (``inventory``). Going
to aiomysql and aiosqlite directly spares each actor process SQLAlchemy's import
(see ``rows``), while both stores are set up as ``db.make_engine`` sets them up:

- MySQL/MariaDB: autocommit off (the first statement opens the transaction), rowcount
  as rows matched (``FOUND_ROWS``), several statements per query (``MULTI_STATEMENTS``,
  for the group commits), a 5 s connect timeout, and ``LOAD DATA LOCAL`` for a batch's
  new rows, which go from memory right behind the query and never from a file
  (``offer_loads``);
- SQLite: WAL, ``synchronous=FULL``, a 10 s busy timeout, foreign keys on, and every
  transaction opened with ``BEGIN IMMEDIATE`` (the actor writes).

Statements are written with ``%s`` marks; on SQLite they become ``?``.
"""

from __future__ import annotations

from collections.abc import Iterator
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


def offer_loads(driver: Any, loads: list[tuple[str, bytes] | None]) -> None:
    """The rows the connection's next query loads: for each of its statements in order,
    the name its ``LOAD DATA LOCAL INFILE 'name'`` gives and the rows, or None for a
    statement that loads nothing (an INSERT or an UPDATE: its answer is one packet).
    What an earlier query left unasked is dropped.

    The server asks for a load's rows when it reaches the statement, and aiomysql
    answers with ``LoadLocalFile``, which reads the file of that name. An actor's links
    send the rows from memory instead, right behind the query (``_numbered``), so that
    the server reads them as soon as it asks rather than waiting for the actor's loop
    to read its request and answer. Where they cannot be numbered safely they go when
    asked, as aiomysql would send a file. Either way ``_RowsInMemory`` answers the
    request: with the rows offered under that name, once, and nothing for any other
    name, so no file is ever read, whatever the server asks for.
    """
    setattr(driver, _OFFERED, loads if any(loads) else None)
    setattr(driver, _ASKED, {})
    setattr(driver, _AHEAD, {})


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


_OFFERED = "_reservation_offered"  # the next query's loads (``offer_loads``)
_ASKED = "_reservation_asked"  # name -> rows, sent when the server asks for them
_AHEAD = "_reservation_ahead"  # name -> numbers of its first data packet and of its OK
# A load's rows go in data packets of at most this many bytes (well inside MariaDB's
# max_allowed_packet).
LOAD_PACKET_BYTES = 1 << 20
# The highest number a packet sent ahead may carry. Packets are numbered from 0 within
# a command and the numbers wrap at 256. A server that stops before a load asks for its
# rows (a statement before it failed) reads what was sent ahead as the next command:
# it drops the connection at a packet numbered other than 0, but would run one
# numbered 0 as a command of its own. A query whose loads would need more numbers
# sends its rows when asked.
LAST_NUMBER_AHEAD = 255


def _chunks(rows: bytes) -> Iterator[memoryview]:
    """A load's rows as the payloads of its data packets (LOAD_PACKET_BYTES at most)."""
    view = memoryview(rows)
    return (view[start : start + LOAD_PACKET_BYTES] for start in range(0, len(view), LOAD_PACKET_BYTES))


# A load's name, the numbers of its first data packet and of the server's OK after it.
Marks = dict[str, tuple[int, int]]


def _numbered(query_bytes: int, loads: list[tuple[str, bytes] | None]) -> tuple[bytes, Marks] | None:
    """The data packets of a query's loads, numbered as the server will read them, and
    for each load the numbers of its first data packet and of the server's OK after it;
    None where a number would pass LAST_NUMBER_AHEAD.

    The query is packet 0 (one packet, below pymysql's MAX_PACKET_LEN) and the
    server's answer to its first statement packet 1. A load's answer is a request for
    its rows, their data packets and an empty one from the client, then the server's
    OK; any other statement's answer is one packet.
    """
    from pymysql.connections import MAX_PACKET_LEN

    if query_bytes + 1 >= MAX_PACKET_LEN:
        return None
    number = 1
    packets: list[bytes | memoryview] = []
    marks: Marks = {}
    for load in loads:
        if load is None:
            number += 1
            continue
        name, rows = load
        number += 1  # past the server's request
        first = number
        for chunk in _chunks(rows):
            packets += (len(chunk).to_bytes(3, "little") + bytes((number % 256,)), chunk)
            number += 1
        packets.append(b"\0\0\0" + bytes((number % 256,)))  # the end of the rows
        if number > LAST_NUMBER_AHEAD:
            return None
        marks[name] = (first % 256, (number + 1) % 256)
        number += 2  # past the empty packet and the OK
    return b"".join(packets), marks


def _send_rows_ahead(driver: Any) -> None:
    """Make ``driver`` (an aiomysql connection) send the loads offered for a query right
    behind the query, where ``_numbered`` can number them; else they wait to be asked."""
    from pymysql.constants import COMMAND

    send = driver._execute_command

    async def execute_command(command: int, sql: bytes | str) -> None:
        await send(command, sql)
        offered: list[tuple[str, bytes] | None] | None = getattr(driver, _OFFERED, None)
        if command != COMMAND.COM_QUERY or not offered:
            return
        setattr(driver, _OFFERED, None)
        size = len(sql) if isinstance(sql, bytes) else len(sql.encode())
        numbered = _numbered(size, offered)
        if numbered is None:
            setattr(driver, _ASKED, {name: rows for name, rows in filter(None, offered)})
            return
        packets, marks = numbered
        setattr(driver, _AHEAD, marks)
        driver._write_bytes(packets)

    driver._execute_command = execute_command


class _RowsInMemory:
    """Answers the server's request for a load's rows (see ``offer_loads``); stands in
    for aiomysql's ``LoadLocalFile``, whose constructor and ``send_data`` it keeps."""

    def __init__(self, filename: bytes | str, connection: Any) -> None:
        # As the server sent it (bytes); names are ASCII.
        self.filename = filename.decode(errors="replace") if isinstance(filename, bytes) else filename
        self.connection = connection

    async def send_data(self) -> None:
        import pymysql

        conn = self.connection
        ahead: Marks = getattr(conn, _AHEAD, None) or {}
        if ahead:
            # The rows are on their way; the server's next packet is its OK after them.
            first, ok = ahead.pop(self.filename, (-1, -1))
            if conn._next_seq_id != first:
                # Not the request the rows were numbered for: what was sent ahead is
                # not an answer to it, and the connection is out of step.
                conn.close()
                raise pymysql.err.OperationalError(
                    2000, f"the server asked for rows by the name {self.filename!r} out of the order they were sent"
                )
            conn._next_seq_id = ok
            return
        asked: dict[str, bytes] = getattr(conn, _ASKED, None) or {}
        rows = asked.pop(self.filename, None)
        try:
            if rows is None:
                raise pymysql.err.OperationalError(
                    2000, f"the server asked for rows by the name {self.filename!r}, which were not sent"
                )
            for chunk in _chunks(rows):
                conn.write_packet(chunk)
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
        _send_rows_ahead(driver)
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
