"""The event actor's side of the store: claim an event, load it, group-commit batches.

One ``InventoryStore`` serves one actor. A batch is one transaction:

1. load the bookings and orders the batch refers to that the actor does not hold in
   memory (so a command retried after a restart is recognised);
2. the actor applies the commands to its state machine (no awaits in between);
3. the rows the batch creates are written, then the event's counters, fenced by the
   actor's epoch (a stale incarnation matches no row and is refused), and the rows it
   changed; then COMMIT. Callers are answered only after that. While the batch before
   is still being written, the rows the batch creates go ahead on their own (``Part``).

It runs on the drivers alone, on connections of its own (``link``), so that an actor
process never imports SQLAlchemy (``rows``).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pymysql
from pymysql.constants import SERVER_STATUS
from pymysql.converters import escape_string

from reservation.domain.commands import BookingStatus, Code
from reservation.domain.ids import booking_id_for
from reservation.domain.inventory import Booking, Effects, Inventory, OrderMemo
from reservation.store.link import Link, Target, connect, loaded_warnings, offer_loads, quiet_cursor, target_for
from reservation.store.rows import BOOKING_READ, BOOKINGS, ORDERS, RowTable


class Fenced(Exception):
    """A newer incarnation of the event's actor has claimed the event."""


class EventMissing(Exception):
    """The event does not exist in the store."""


class Part(enum.Enum):
    """Which of a batch's statements to run.

    A batch's new rows (its inserts) depend on no other batch: nothing else writes or
    reads them before the batch commits. Its counters and its changes to existing
    bookings are absolute values that must land in batch order. So while batch N is
    still being written, batch N+1 may insert its ``NEW_ROWS``, and MariaDB works on
    both at once; only the ``REST`` waits for N's statements to have run (N+1's counter
    update then waits for N's row lock, that is, for N's COMMIT).
    """

    ALL = "all"
    NEW_ROWS = "new rows"
    REST = "rest"

    def takes(self, is_insert: bool) -> bool:
        return self is Part.ALL or (self is Part.NEW_ROWS) is is_insert

    @property
    def fenced(self) -> bool:
        """Whether the part holds the fence (the counters' update); new rows alone do not."""
        return self is not Part.NEW_ROWS


def to_dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def to_ts(dt: datetime | str | None) -> float | None:
    """A stored naive UTC time as a timestamp (SQLite's driver hands its text over)."""
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    return dt.replace(tzinfo=UTC).timestamp()


@dataclass(slots=True)
class Claim:
    inventory: Inventory
    epoch: int


_BOOKING_SELECT = f"SELECT {', '.join(BOOKING_READ)} FROM bookings"


def _booking_from_row(row: tuple[Any, ...]) -> Booking:
    booking_id, order_id, account_id, quantity, unit_price_minor, status, created_at, expires_at = row
    return Booking(
        booking_id=booking_id,
        order_id=order_id,
        account_id=account_id,
        quantity=quantity,
        unit_price_minor=unit_price_minor,
        status=BookingStatus(status),
        created_at=to_ts(created_at) or 0.0,
        expires_at=to_ts(expires_at),
    )


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


class InventoryStore:
    """Store operations of one event's actor, on connections of its own (``link``)."""

    def __init__(self, database_url: str, event_id: str) -> None:
        self.target: Target = target_for(database_url)
        self.event_id = event_id
        self._links: dict[int, Link] = {}

    @property
    def inline(self) -> bool:
        """Whether batches go to the store as multi-statement queries (MySQL/MariaDB)."""
        return self.target.kind == "mysql"

    async def claim(self) -> Claim:
        """Take ownership (a new epoch) and rebuild the inventory from the booking rows."""
        link = await connect(self.target)
        try:
            await link.begin()
            try:
                if await link.execute("UPDATE events SET epoch = epoch + 1 WHERE id = %s", (self.event_id,)) != 1:
                    raise EventMissing(self.event_id)
                ((capacity, oversell, status, price_minor, currency, epoch),) = await link.fetch(
                    "SELECT capacity, oversell_capacity, status, price_minor, currency, epoch "
                    "FROM events WHERE id = %s",
                    (self.event_id,),
                )
                ((sold,),) = await link.fetch(
                    "SELECT COALESCE(SUM(quantity), 0) FROM bookings WHERE event_id = %s AND status = %s",
                    (self.event_id, BookingStatus.CONFIRMED.value),
                )
                held_rows = await link.fetch(
                    _BOOKING_SELECT + " WHERE event_id = %s AND status = %s",
                    (self.event_id, BookingStatus.HELD.value),
                )
                await link.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await link.rollback()
                raise
        finally:
            with contextlib.suppress(Exception):
                await link.close()
        inventory = Inventory(
            self.event_id,
            capacity=capacity,
            oversell_capacity=oversell,
            on_sale=status == "on_sale",
            price_minor=price_minor,
            currency=currency,
            sold=int(sold),
            bookings=[_booking_from_row(r) for r in held_rows],
        )
        return Claim(inventory, int(epoch))

    async def begin(self, epoch: int, slot: int = 0) -> BatchTransaction:
        """Start one group-commit transaction on the store's connection number ``slot``.

        The store keeps its connections from one batch to the next (a pool's check-out
        and check-in per batch would add a ROLLBACK round trip, the pool's reset, to the
        COMMIT). More slots let batches be sent while the ones before them commit. A
        transaction that fails gives its connection up; the next batch on that slot
        connects afresh.
        """
        link = self._links.get(slot)
        if link is None:
            link = self._links[slot] = await connect(self.target)
        try:
            await link.begin()
        except BaseException:
            await self._drop(slot)
            raise
        return BatchTransaction(link, self.event_id, epoch, lambda: self._drop(slot))

    async def _drop(self, slot: int) -> None:
        link = self._links.pop(slot, None)
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()

    async def close(self) -> None:
        for slot in list(self._links):
            await self._drop(slot)


class BatchTransaction:
    """One batch's transaction (see ``InventoryStore.begin``)."""

    def __init__(self, link: Link, event_id: str, epoch: int, drop: Callable[[], Awaitable[None]]) -> None:
        self.link = link
        self.event_id = event_id
        self.epoch = epoch
        self._drop = drop

    async def commit(self) -> None:
        try:
            await self.link.commit()
        except BaseException:
            await self._drop()
            raise

    async def rollback(self) -> None:
        """Roll back and give the connection up (it may be what failed)."""
        with contextlib.suppress(Exception):
            await self.link.rollback()
        await self._drop()

    async def load_bookings(self, ids: Iterable[str]) -> list[Booking]:
        wanted = list(ids)
        if not wanted:
            return []
        rows = await self.link.fetch(
            _BOOKING_SELECT + f" WHERE id IN ({_marks(len(wanted))}) AND event_id = %s", (*wanted, self.event_id)
        )
        return [_booking_from_row(r) for r in rows]

    async def load_orders(self, ids: Iterable[str]) -> list[OrderMemo]:
        """Orders that already exist under these ids (idempotent replays)."""
        wanted = list(ids)
        if not wanted:
            return []
        rows = await self.link.fetch(
            "SELECT id, request_hash, status, problem_type, problem_detail FROM orders "
            f"WHERE id IN ({_marks(len(wanted))})",
            tuple(wanted),
        )
        memos = []
        for order_id, request_hash, status, problem_type, problem_detail in rows:
            rejected = status == "rejected"
            memos.append(
                OrderMemo(
                    order_id=order_id,
                    request_hash=request_hash or "",
                    code=Code(problem_type) if rejected and problem_type else Code.OK,
                    booking_id=None if rejected else booking_id_for(order_id, self.event_id),
                    detail=problem_detail or "",
                )
            )
        return memos

    def statements(self, inventory: Inventory, effects: Effects, now: float) -> Statements:
        """The batch's writes, with the inventory's counters as they are now."""
        return batch_statements(self.link.inline, self.event_id, self.epoch, inventory, effects, now)

    async def write(self, inventory: Inventory, effects: Effects, now: float) -> None:
        """Write the batch's effects as the inventory holds them now (see ``send``)."""
        await self.send(self.statements(inventory, effects, now))

    async def send(self, statements: Statements, part: Part = Part.ALL) -> None:
        """Run a batch's statements (``part`` of them); raise Fenced if another
        incarnation owns the event.

        On MySQL/MariaDB the rows the batch created go first, then the event's counters,
        fenced by this incarnation's epoch, then the rows it changed (``queries``); on
        SQLite, the counters first. Each part is one round trip on MySQL/MariaDB however
        many tables the batch touches.
        """
        if await statements.run(self.link, part) != 1:
            raise Fenced(self.event_id)


def batch_statements(
    inline: bool, event_id: str, epoch: int, inventory: Inventory, effects: Effects, now: float
) -> Statements:
    """The statements that write one batch's effects (``BatchTransaction.send`` runs them);
    ``inline`` for MySQL/MariaDB (see ``Statements``)."""
    out = Statements(inline)
    # The rows of a batch share a few times (its own, and its holds' expiry): each is
    # rendered once.
    rendered: dict[float, str] = {}

    def sql_time(ts: float) -> str:
        text = rendered.get(ts)
        if text is None:
            text = rendered[ts] = _sql_time(to_dt(ts))
        return text

    stamp = sql_time(now)
    out.add(
        "UPDATE events SET sold = %s, held = %s, capacity = %s, oversell_capacity = %s, status = %s, "
        "price_minor = %s, version = version + 1, updated_at = %s WHERE id = %s AND epoch = %s",
        (
            inventory.sold, inventory.held, inventory.capacity, inventory.oversell_capacity,
            "on_sale" if inventory.on_sale else "paused", inventory.price_minor, stamp,
            event_id, epoch,
        ),
    )
    currency = inventory.currency
    if effects.orders:
        # The order row is also the key's record: a keyed order's id is derived from
        # (account, key), so a key used again meets its first order's unique id.
        by_id = {b.booking_id: b for b in effects.created}
        order_rows = []
        for eff in effects.orders:
            booking = by_id.get(eff.booking_id) if eff.booking_id else None
            if eff.code is not Code.OK or booking is None:
                status, total = "rejected", 0
            else:
                status = _order_status(booking.status)
                total = booking.quantity * booking.unit_price_minor
            new = eff.order
            order_rows.append(
                (
                    new.order_id, new.account_id, status, new.request_hash, new.idempotency_key, total,
                    currency, None if eff.code is Code.OK else eff.code.value, eff.detail[:500] or None,
                    None if eff.code is Code.OK else event_id, stamp, stamp,
                )
            )
        out.insert(ORDERS, order_rows)
    if effects.created:
        out.insert(
            BOOKINGS,
            [
                (
                    b.booking_id, b.order_id, event_id, b.account_id, b.quantity, b.unit_price_minor, currency,
                    b.status.value, None if b.expires_at is None else sql_time(b.expires_at),
                    sql_time(b.created_at), stamp, b.attendees,
                )
                for b in effects.created
            ],
        )
    if effects.updated:
        # One statement per target status, not one per booking.
        by_status: dict[BookingStatus, list[str]] = defaultdict(list)
        for b in effects.updated:
            if b.status is BookingStatus.HELD and b.expires_at is not None:
                out.add(
                    "UPDATE bookings SET status = %s, expires_at = %s, updated_at = %s WHERE id = %s",
                    (BookingStatus.HELD.value, sql_time(b.expires_at), stamp, b.booking_id),
                )
            else:
                by_status[b.status].append(b.booking_id)
        for status, ids in by_status.items():
            out.add(
                "UPDATE bookings SET status = %s, expires_at = NULL, updated_at = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
                (status.value, stamp, *ids),
            )
    return out


class Statements:
    """Statements of one batch in the driver's own SQL (``%s`` marks), run in order.

    MySQL/MariaDB (``inline``) get them as one multi-statement query, so a batch costs
    one round trip before its COMMIT instead of one per statement: updates with their
    values inlined as literals (escaped by the driver's own rules), a table's new rows
    as an INSERT's literals or, from LOAD_MIN_ROWS on, as one ``LOAD DATA LOCAL`` whose
    rows go along from memory (``link``): MariaDB spends about 0.7 of the CPU per
    booking on loaded rows that it spends parsing an INSERT's literals (docs/design.md).
    SQLite runs inside this process; there each statement goes through the driver with
    bound parameters. Neither goes through a query layer's per-row parameter processing
    (SQLAlchemy's cost more than the database's own work at large batches).
    """

    def __init__(self, inline: bool) -> None:
        self.inline = inline
        # (SQL, rows, the table new rows go to; None for an update)
        self._items: list[tuple[str, list[tuple[Any, ...]], RowTable | None]] = []

    def add(self, sql: str, params: tuple[Any, ...]) -> None:
        self._items.append((sql, [params], None))

    def insert(self, table: RowTable, rows: list[tuple[Any, ...]]) -> None:
        """Rows are tuples in the order of the table's ``columns``."""
        if not rows:
            return
        head = _INSERT_HEADS.get(table)
        if head is None:
            head = _INSERT_HEADS[table] = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES "
        self._items.append((head, rows, table))

    async def run(self, link: Link, part: Part = Part.ALL) -> int:
        """Run ``part`` of the statements on ``link``; answers the first update's row
        count (the fence), or 1 if the part has none.

        If the fence matched no row, what follows must not count: the caller rolls
        back, and an error a later statement raised would only hide the reason.
        """
        if self.inline:
            driver = link.driver
            no_backslash_escapes = bool(driver.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)
            return await send_queries(driver, self.queries(no_backslash_escapes, part, link.can_load), part.fenced)
        first = -1 if part.fenced else 1
        for sql, rows, table in self._items:
            if not part.takes(table is not None):
                continue
            if table is not None:
                await link.execute_many(sql + "(" + _marks(len(rows[0])) + ")", rows)
                continue
            count = await link.execute(sql, rows[0])
            if first < 0:
                first = count
                if first != 1:
                    break
        return first

    def queries(self, no_backslash_escapes: bool = False, part: Part = Part.ALL, can_load: bool = True) -> list[Query]:
        """``part`` of the statements as MySQL/MariaDB queries (none if the part is empty).

        A table's new rows go as one load, or, fewer than LOAD_MIN_ROWS of them or
        without ``can_load`` (a server that refuses them), as INSERT literals. They go
        before the updates: the counters' update takes the event's row lock, which the
        next batch's counters wait for, and so holds it only for itself, the changes to
        existing bookings and the COMMIT, not while the new rows go in. Statements
        (long inserts split into several) are packed into queries of at most
        MAX_QUERY_CHARS characters, inside max_allowed_packet: a batch of large orders
        becomes a few round trips instead of one the server would refuse. A load's rows
        go as data packets of their own and do not count.
        """
        if no_backslash_escapes:

            def escape(text: str) -> str:
                return text.replace("'", "''")

        else:
            escape = escape_string  # what the driver itself does in this mode

        def literal(value: Any) -> str:
            kind = type(value)
            if kind is str:
                return "'" + escape(value) + "'"
            if kind is int:
                return str(value)
            if value is None:
                return "NULL"
            if isinstance(value, int):  # bool and int subclasses
                return str(int(value))
            if isinstance(value, str):
                return "'" + escape(str(value)) + "'"
            raise TypeError(f"no SQL literal for {kind.__name__}")

        queries = [Query()]
        size = 0

        def add(statement: str, loaded: int | None = None, offered: dict[str, bytes] | None = None) -> Query:
            nonlocal size
            query = queries[-1]
            if query.statements and size + len(statement) > MAX_QUERY_CHARS:
                query = Query()
                queries.append(query)
                size = 0
            query.statements.append(statement)
            query.rows.append(loaded)
            if offered:
                query.loads.update(offered)
            size += len(statement) + 2
            return query

        fence = part.fenced
        taken = [item for item in self._items if part.takes(item[2] is not None)]
        for sql, rows, table in sorted(taken, key=lambda item: item[2] is None):  # new rows first
            if table is None:
                query = add(sql % tuple(map(literal, rows[0])))
                if fence:  # the first update is the counters'
                    query.fence = len(query.statements) - 1
                    fence = False
            elif len(rows) < LOAD_MIN_ROWS or not can_load:
                values: list[str] = []
                length = len(sql)
                for value in _row_literals(rows, escape, literal):
                    if values and length + len(value) > MAX_QUERY_CHARS:
                        add(sql + ", ".join(values))
                        values, length = [], len(sql)
                    values.append(value)
                    length += len(value) + 2
                add(sql + ", ".join(values))
            else:
                name = f"rows-{next(_LOAD_NAMES)}"
                statement, data = _load(name, table, rows, literal)
                add(statement, len(rows), {name: data})
        return [query for query in queries if query.statements]


@dataclass(slots=True)
class Query:
    """One round trip to MySQL/MariaDB: its statements, and for each the number of rows
    it loads (None for any other statement), with those rows by the name its LOAD DATA
    gives; ``fence``, the place of the counters' update if it is in this query."""

    statements: list[str] = field(default_factory=list)
    rows: list[int | None] = field(default_factory=list)
    loads: dict[str, bytes] = field(default_factory=dict)
    fence: int | None = None

    @property
    def text(self) -> str:
        return ";\n".join(self.statements)

    def offered(self) -> list[tuple[str, bytes] | None]:
        """For each statement, the name and rows it loads, or None (``link.offer_loads``)."""
        loads = iter(self.loads.items())
        return [None if rows is None else next(loads) for rows in self.rows]


async def send_queries(driver: Any, queries: list[Query], fenced: bool = True) -> int:
    """Run the queries on an actor's connection (``link.connect``); answers the
    counters' update's row count (the fence: ``Query.fence``) if ``fenced``, else 1.

    ``LOAD DATA LOCAL`` takes a duplicate key as a row to skip, and a value it must cut
    or change as a warning, where an INSERT fails: a load that wrote fewer rows than it
    was given raises IntegrityError (the batch runs again and finds the rows it meets),
    one that warned raises DataError. Either way the caller rolls back.
    """
    if not queries:
        return 1  # nothing to fence
    cursor = await quiet_cursor(driver)
    try:
        first = -1 if fenced else 1
        for query in queries:
            offer_loads(driver, query.offered())
            problem: pymysql.err.Error | None = None
            await cursor.execute(query.text)
            for place, expected in enumerate(query.rows):
                if place == query.fence and fenced:
                    first = int(cursor.rowcount)
                    if first != 1:
                        break
                if expected is not None and problem is None:
                    problem = _load_problem(cursor, expected)
                if not await cursor.nextset():
                    break
            # Read every result: a later statement's error surfaces here, and the
            # connection must be drained before the next query, COMMIT or ROLLBACK.
            if first >= 0 and first != 1:
                with contextlib.suppress(pymysql.err.Error):
                    while await cursor.nextset():
                        pass
                return first
            while await cursor.nextset():
                pass
            if problem is not None:
                raise problem
    finally:
        await cursor.close()
    return first


def _load_problem(cursor: Any, expected: int) -> pymysql.err.Error | None:
    loaded = int(cursor.rowcount)
    if loaded != expected:
        return pymysql.err.IntegrityError(1062, f"a load wrote {loaded} of {expected} rows: a key used before")
    warned = loaded_warnings(cursor)
    if warned:
        return pymysql.err.DataError(1265, f"a load of {expected} rows gave {warned} warnings (a value out of range)")
    return None


# A table's rows in a batch from which they go as a load rather than INSERT literals.
# Measured while a load still cost an exchange of its own inside the batch's round
# trip (the server asked for the rows; they now go right behind the query, ``link``):
# in the engine, at about 1,800 rows a batch, loads took MariaDB's CPU
# per booking from 24-25 to 17-18 µs; one booking a batch committed 1,109-1,233
# bookings/s with loads against 1,400-1,539 with inserts. Over HTTP, at about 17 rows
# a batch, loads were a wash until a load set its batch-wide values once (``_load``);
# since, they spare MariaDB about a twelfth of its CPU per booking for about 2% more of
# the actors', at the same rate (docs/design.md).
LOAD_MIN_ROWS = 8
# Names a batch's loads go by; a connection serves a name once (``link``).
_LOAD_NAMES = itertools.count(1)
# The format of ``load_data``: fields end at a tab, rows at a newline, a backslash
# escapes, \N is NULL. Spelled out in hex, which reads the same in every SQL mode (with
# NO_BACKSLASH_ESCAPES, LOAD DATA's default is to escape nothing).
_LOAD_STATEMENT = (
    "LOAD DATA LOCAL INFILE '{name}' INTO TABLE {table} CHARACTER SET utf8mb4 "
    "FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A' ({columns}){fixed}"
)


def _load(name: str, table: RowTable, rows: list[tuple[Any, ...]], literal: Callable[[Any], str]) -> tuple[str, bytes]:
    """A ``LOAD DATA`` of ``rows`` into ``table`` under ``name``, and the rows it reads.

    A column with one value in every row (a batch's event, status, currency and times,
    NULLs) is set once by the statement, as a ``literal`` in its SET clause, rather than
    read from every row: MariaDB reads a loaded field character by character, and at
    large batches that reading was about a fifth of its CPU.
    """
    columns = list(zip(*rows, strict=True))
    same = [_one_value(column) for column in columns]
    if all(same):  # a load reads at least one column
        same[0] = False
    read, sets, data = [], [], []
    for column_name, column, fixed in zip(table.columns, columns, same, strict=True):
        if fixed:
            sets.append(f"{column_name} = {literal(column[0])}")
        else:
            read.append(column_name)
            data.append(column)
    statement = _LOAD_STATEMENT.format(
        name=name, table=table.name, columns=", ".join(read), fixed=" SET " + ", ".join(sets) if sets else ""
    )
    return statement, _load_rows(data)


def load_data(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows as ``LOAD DATA`` reads them in the format of ``_LOAD_STATEMENT``, every
    column read from every row."""
    return _load_rows(list(zip(*rows, strict=True)))


def _load_rows(columns: list[tuple[Any, ...]]) -> bytes:
    """The rows of these columns in the format of ``_LOAD_STATEMENT``, rendered column
    by column (``_column_texts``)."""
    texts = [_column_texts(column, _field, _escape_field, quote=False) for column in columns]
    return ("\n".join(map("\t".join, zip(*texts, strict=True))) + "\n").encode()


def _row_literals(
    rows: list[tuple[Any, ...]], escape: Callable[[str], str], literal: Callable[[Any], str]
) -> list[str]:
    """Each row as ``(v1, v2, ...)`` of SQL literals, rendered column by column: a
    column with one value in every row (a batch's event, currency, status and times)
    once, the others by ``_column_texts``."""
    texts: list[list[str]] = []
    for column in zip(*rows, strict=True):
        if _one_value(column):
            texts.append([literal(column[0])] * len(column))
        else:
            texts.append(_column_texts(column, literal, escape, quote=True))
    return ["(" + ", ".join(row) + ")" for row in zip(*texts, strict=True)]


def _one_value(column: tuple[Any, ...]) -> bool:
    """Whether every value of ``column`` equals its first, and so renders as it does
    (True and 1 both as 1): such a column is rendered once (``_load``, ``_row_literals``).

    The last value is compared first: a column of ids differs there, and counting the
    first through all of them took 28 µs for 1,300 ids against 0.1 (here, 2 cores).
    """
    first = column[0]
    return column[-1] == first and column.count(first) == len(column)


def _column_texts(
    column: tuple[Any, ...], render: Callable[[Any], str], escape: Callable[[str], str], *, quote: bool
) -> list[str]:
    """The texts of a column's values: ``render`` for one value, ``escape`` for the text
    of strings, quoted as SQL strings if ``quote``.

    A column of only strings is escaped as one text (its values joined by a separator
    the escaping leaves alone) and split again; a column of only ints is ``str``'d by
    ``map``. Both stay in C, where a call per value was a third of an actor's CPU per
    booking. A column holding anything else, or a separator inside a value, goes value
    by value.
    """
    kinds = set(map(type, column))
    if kinds == {str}:
        text = escape(_SEP.join(column))
        if text.count(_SEP) == len(column) - 1:
            return ("'" + text.replace(_SEP, _QUOTED_SEP) + "'" if quote else text).split(_SEP)
    elif kinds == {int}:
        return list(map(str, column))
    return list(map(render, column))


def _escape_field(text: str) -> str:
    """Text as a field of LOAD DATA's default format: backslash, tab, newline and NUL
    escaped by a backslash (a carriage return and the rest go as they are)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape_field(str(value))
    if isinstance(value, int):  # bool and int subclasses
        return str(int(value))
    raise TypeError(f"no LOAD DATA field for {type(value).__name__}")


# Joins a column's strings for one escaping pass: no escaping (backslash, quote
# doubling, LOAD DATA's) touches it, so splitting on it afterwards gives back each
# value's text.
_SEP = "\x01"
_QUOTED_SEP = "'\x01'"


def _order_status(status: BookingStatus) -> str:
    return _ORDER_STATUS.get(status, "rejected")


_ORDER_STATUS = {
    BookingStatus.HELD: "pending",
    BookingStatus.CONFIRMED: "confirmed",
    BookingStatus.CANCELLED: "cancelled",
}


_INSERT_HEADS: dict[RowTable, str] = {}
# Longest query an actor sends, in characters (at most 4 MB of UTF-8; MariaDB refuses
# queries over max_allowed_packet).
MAX_QUERY_CHARS = 1_000_000


def _sql_time(dt: datetime) -> str:
    """A naive UTC time as both stores take it (and as SQLAlchemy writes SQLite's)."""
    return dt.isoformat(sep=" ", timespec="microseconds")


def is_integrity_error(exc: BaseException) -> bool:
    """A constraint refused the write (either driver)."""
    return isinstance(exc, (pymysql.err.IntegrityError, sqlite3.IntegrityError))
