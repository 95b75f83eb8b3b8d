"""A batch's new rows reach MariaDB by ``LOAD DATA LOCAL``, from memory (``link``), from
``LOAD_MIN_ROWS`` rows of a table on.

What the server reads must be what was sent, byte for byte; a load must fail where the
INSERT it replaces would have (a key used before, a value that does not fit) instead of
skipping or cutting rows as LOAD DATA LOCAL does by default; the server gets rows only
by the names a batch sent, never a file; and rows sent right behind their query, ahead
of the server's request, are read as rows or not at all, never as a command.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomysql
import pymysql
import pytest

from reservation.store import inventory
from reservation.store import link as link_module
from reservation.store.inventory import Part, Statements, send_queries
from reservation.store.link import Link, connect, target_for
from reservation.store.rows import RowTable

pytestmark = pytest.mark.mysql

AWKWARD = [
    "", "N", "\\N", "\\", "trailing \\", "\t", "\n", "\r\n", "a\tb\nc", "\x00", "\x01", "a\x01b",
    "O'Brien", 'say "hi"', "x'); DELETE FROM t; --", "名前 ✓ Ünïcödé 🎟", "%s %% ?", "x" * 5000,
]  # fmt: skip


@pytest.fixture(autouse=True)
def every_batch_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows go as a load however few there are (from LOAD_MIN_ROWS on, they would)."""
    monkeypatch.setattr(inventory, "LOAD_MIN_ROWS", 1)


@pytest.fixture
async def link(mysql_url: str) -> AsyncIterator[Link]:
    opened = await connect(target_for(mysql_url))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def table(link: Link) -> AsyncIterator[RowTable]:
    name = "load_probe_" + secrets.token_hex(4)
    await link.execute(
        f"CREATE TABLE {name} (id VARCHAR(36) PRIMARY KEY, body TEXT NULL, n BIGINT NULL, code VARCHAR(3) NULL)"
    )
    try:
        yield RowTable(name, ("id", "body", "n", "code"))
    finally:
        await link.rollback()
        await link.execute(f"DROP TABLE {name}")


async def load(link: Link, table: RowTable, rows: list[tuple[Any, ...]], *, updates: int = 0) -> None:
    statements = Statements(inline=True)
    for _ in range(updates):
        statements.add(f"UPDATE {table.name} SET n = n WHERE id = %s", ("none",))
    statements.insert(table, rows)
    await send_queries(link.driver, statements.queries(), fenced=False)


async def stored(link: Link, table: RowTable) -> list[tuple[Any, ...]]:
    return sorted(await link.fetch(f"SELECT id, body, n, code FROM {table.name}"))


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
async def test_loaded_rows_come_back_unchanged(link: Link, table: RowTable, sql_mode: str) -> None:
    await link.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, %s)", ("," + sql_mode if sql_mode else "",))
    rows = [(f"r{i:03}", text, i - 5, "EUR") for i, text in enumerate(AWKWARD)]
    rows += [("r900", None, None, None), ("r901", "x", -(2**63), "€"), ("r902", "y", 2**63 - 1, "")]
    await load(link, table, rows, updates=1)
    await link.commit()
    assert await stored(link, table) == sorted(rows)


class Wire:
    """What a connection wrote, as MySQL packets (number, size), and where among its
    writes it first read a packet."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent = bytearray()
        self.first_read: int | None = None  # bytes written before the first packet read
        write, read = aiomysql.Connection._write_bytes, aiomysql.Connection._read_packet

        def wrote(conn: aiomysql.Connection, data: bytes) -> None:
            self.sent += data
            write(conn, data)

        async def reads(conn: aiomysql.Connection, *args: Any, **kwargs: Any) -> Any:
            if self.first_read is None:
                self.first_read = len(self.sent)
            return await read(conn, *args, **kwargs)

        monkeypatch.setattr(aiomysql.Connection, "_write_bytes", wrote)
        monkeypatch.setattr(aiomysql.Connection, "_read_packet", reads)

    def packets(self, upto: int | None = None) -> list[tuple[int, int]]:
        """(number, size) of each packet written (before ``upto`` bytes)."""
        sent, found, at = bytes(self.sent[:upto]), [], 0
        while at < len(sent):
            size = int.from_bytes(sent[at : at + 3], "little")
            found.append((sent[at + 3], size))
            at += 4 + size
        return found


@pytest.mark.parametrize("ahead", [True, False], ids=["sent-ahead", "sent-when-asked"])
async def test_rows_longer_than_a_packet_arrive_whole(
    link: Link, table: RowTable, monkeypatch: pytest.MonkeyPatch, ahead: bool
) -> None:
    """A load's rows go right behind its query, numbered as the server reads them; where
    that would take packet numbers past LAST_NUMBER_AHEAD, only once the server asks."""
    monkeypatch.setattr(link_module, "LOAD_PACKET_BYTES", 3_000)
    if not ahead:
        monkeypatch.setattr(link_module, "LAST_NUMBER_AHEAD", 10)
    rows = [(f"r{i:03}", f"row {i} " + "y" * 400, i, None) for i in range(100)]
    statements = Statements(inline=True)
    statements.insert(table, rows)
    (query,) = statements.queries()
    ((data,),) = [query.loads.values()]
    wire = Wire(monkeypatch)
    await send_queries(link.driver, [query], fenced=False)
    # The query (packet 0), the server's request (1), then the rows and an empty packet.
    sizes = [3_000] * (len(data) // 3_000) + [len(data) % 3_000, 0]
    assert wire.packets() == [(0, len(query.text) + 1), *enumerate(sizes, start=2)]
    before_reading = wire.packets(wire.first_read)
    assert len(before_reading) == (len(sizes) + 1 if ahead else 1)
    await link.commit()
    assert await stored(link, table) == rows


async def test_rows_go_ahead_numbered_past_the_statements_before_them(
    link: Link, table: RowTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two loads, each behind a statement that answers with one packet: all of both
    loads' rows go before the server's first answer, and both arrive."""
    monkeypatch.setattr(link_module, "LOAD_PACKET_BYTES", 100)
    update = f"UPDATE {table.name} SET n = n WHERE id = 'none'"
    first, second = ([(f"{tag}{i:02}", tag * 50, i, None) for i in range(10)] for tag in "ab")
    loads = []
    for rows in (first, second):
        statements = Statements(inline=True)
        statements.insert(table, rows)
        loads += statements.queries()
    query = inventory.Query(
        [update, loads[0].text, update, loads[1].text],
        [None, *loads[0].rows, None, *loads[1].rows],
        {**loads[0].loads, **loads[1].loads},
    )
    wire = Wire(monkeypatch)
    await send_queries(link.driver, [query], fenced=False)
    written = wire.packets()
    assert wire.packets(wire.first_read) == written
    # 0 the query, 1 the update's OK, 2 the first load's request, its rows from 3 ...
    sizes = [len(rows) for rows in query.loads.values()]
    first_packets = -(-sizes[0] // 100) + 1  # with the empty packet
    assert [number for number, _ in written] == [
        0,
        *range(3, 3 + first_packets),
        # ... its OK, the update's OK, the second load's request, its rows.
        *range(3 + first_packets + 3, 3 + first_packets + 3 + -(-sizes[1] // 100) + 1),
    ]
    await link.commit()
    assert await stored(link, table) == sorted(first + second)


async def refused_load_behind(mysql_url: str, table: RowTable, rows: int, marker: str) -> bool:
    """Send, on a connection of its own, a query of two loads: ``rows`` rows of 64 bytes
    into ``table``, then a load the server refuses before it asks for its rows (no
    such table), whose rows are a command that creates ``marker``, were it ever read as
    one. Answers whether the connection still answers afterwards."""
    first = b"".join(f"m{i:06}\t{'x' * 55}\n".encode() for i in range(rows))
    query = inventory.Query(
        [
            f"LOAD DATA LOCAL INFILE 'first-{marker}' INTO TABLE {table.name} (id, body)",
            f"LOAD DATA LOCAL INFILE 'second-{marker}' INTO TABLE {marker}_missing (id)",
        ],
        [rows, 1],
        {f"first-{marker}": first, f"second-{marker}": b"\x03CREATE TABLE " + marker.encode() + b" (a INT)"},
    )
    sender = await connect(target_for(mysql_url))
    try:
        with pytest.raises(pymysql.err.ProgrammingError, match="doesn't exist"):
            await send_queries(sender.driver, [query], fenced=False)
        # Whatever the server does with what was sent ahead, it does before answering this.
        try:
            return await sender.fetch("SELECT 1") == [(1,)]
        except pymysql.err.Error:
            return False
    finally:
        await sender.close()


async def table_exists(link: Link, name: str) -> bool:
    ((count,),) = await link.fetch(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = %s", (name,)
    )
    return bool(count)


async def test_rows_sent_ahead_of_a_load_the_server_refuses_are_never_run(
    mysql_url: str, link: Link, table: RowTable
) -> None:
    """The server stops at the refused load and reads the rows sent for it as its next
    command: numbered other than 0, they make it drop the connection, unrun."""
    marker = "ahead_" + secrets.token_hex(4)
    assert not await refused_load_behind(mysql_url, table, 10, marker)  # dropped
    assert not await table_exists(link, marker)


async def test_rows_that_would_be_numbered_0_wait_to_be_asked(
    mysql_url: str, link: Link, table: RowTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """251 packets of the first load's rows would number the refused load's rows 0
    (numbers wrap at 256): the server would run them as a command. So both loads wait
    to be asked, and the refused one never is. Negative control: with the limit
    lifted, the rows sent ahead run as a command and create the marker table."""
    monkeypatch.setattr(link_module, "LOAD_PACKET_BYTES", 64)  # a row a packet
    marker = "ahead_" + secrets.token_hex(4)
    try:
        assert await refused_load_behind(mysql_url, table, 251, marker)  # not dropped
        assert not await table_exists(link, marker)

        monkeypatch.setattr(link_module, "LAST_NUMBER_AHEAD", 1_000)
        assert not await refused_load_behind(mysql_url, table, 251, marker)
        assert await table_exists(link, marker)
    finally:
        await link.execute(f"DROP TABLE IF EXISTS {marker}")


async def test_a_load_that_meets_a_key_used_before_fails(link: Link, table: RowTable) -> None:
    await load(link, table, [("taken", "first", 1, None)])
    await link.commit()
    with pytest.raises(pymysql.err.IntegrityError):
        await load(link, table, [("free", "second", 2, None), ("taken", "again", 3, None)])
    await link.rollback()
    assert await stored(link, table) == [("taken", "first", 1, None)]


async def test_a_load_that_would_cut_a_value_fails(link: Link, table: RowTable) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # aiomysql also reports the server's warnings
        with pytest.raises(pymysql.err.DataError):
            await load(link, table, [("a", "fits", 1, "EUR"), ("b", "does not", 2, "EURO")])
    await link.rollback()
    assert await stored(link, table) == []


async def test_the_server_gets_no_file(link: Link, table: RowTable, tmp_path: Path) -> None:
    """Asked for a name no batch sent (here an existing file's), the link sends nothing."""
    secret = tmp_path / "secret.tsv"
    secret.write_text("leaked\tfrom a file\t1\tXYZ\n")
    with pytest.raises(pymysql.err.OperationalError):
        await link.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE {table.name} (id, body, n, code)")
    await link.rollback()
    assert await stored(link, table) == []


async def test_a_server_that_refuses_loads_gets_inserts(mysql_url: str, table: RowTable) -> None:
    """With local_infile off, MariaDB refuses every load; a link connected then sends a
    batch's rows as INSERT literals, however many."""
    admin = await connect(target_for(mysql_url))
    ((before,),) = await admin.fetch("SELECT @@global.local_infile")
    await admin.execute("SET GLOBAL local_infile = 0")
    try:
        refused = await connect(target_for(mysql_url))
    finally:
        await admin.execute("SET GLOBAL local_infile = %s", (int(before),))
        await admin.close()
    try:
        assert refused.can_load is False
        rows = [(f"r{i:03}", f"row {i}", i, None) for i in range(40)]
        statements = Statements(inline=True)
        statements.insert(table, rows)
        assert await statements.run(refused, Part.NEW_ROWS) == 1
        await refused.commit()
        assert sorted(await refused.fetch(f"SELECT id, body, n, code FROM {table.name}")) == rows
    finally:
        await refused.close()


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
async def test_a_value_every_row_holds_is_set_once_and_comes_back(link: Link, table: RowTable, sql_mode: str) -> None:
    await link.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, %s)", ("," + sql_mode if sql_mode else "",))
    expected: list[tuple[Any, ...]] = []
    for i, shared in enumerate([*AWKWARD, None]):
        rows = [(f"s{i:03}-{j}", shared, j, None) for j in range(3)]
        statements = Statements(inline=True)
        statements.insert(table, rows)
        (query,) = statements.queries(no_backslash_escapes=bool(sql_mode))
        assert " (id, n) SET body = " in query.text, query.text[:300]
        assert query.text.endswith(", code = NULL")
        # Only what differs from row to row is read: an id and a number a row.
        assert list(query.loads.values()) == [b"".join(f"s{i:03}-{j}\t{j}\n".encode() for j in range(3))]
        await send_queries(link.driver, [query], fenced=False)
        expected += rows
    await link.commit()
    assert await stored(link, table) == sorted(expected)


async def test_a_value_every_row_holds_that_would_be_cut_fails(link: Link, table: RowTable) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(pymysql.err.DataError):
            await load(link, table, [("a", "one", 1, "EURO"), ("b", "two", 2, "EURO")])
    await link.rollback()
    assert await stored(link, table) == []
