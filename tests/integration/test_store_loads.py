"""A batch's new rows reach MariaDB by ``LOAD DATA LOCAL``, from memory (``link``), from
``LOAD_MIN_ROWS`` rows of a table on.

What the server reads must be what was sent, byte for byte; a load must fail where the
INSERT it replaces would have (a key used before, a value that does not fit) instead of
skipping or cutting rows as LOAD DATA LOCAL does by default; and the server gets rows
only by the names a batch sent, never a file.
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


async def test_rows_longer_than_a_packet_arrive_whole(
    link: Link, table: RowTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "LOAD_PACKET_BYTES", 3_000)
    sizes: list[int] = []
    write = aiomysql.Connection.write_packet

    def counted(self: aiomysql.Connection, payload: bytes) -> None:
        sizes.append(len(payload))
        write(self, payload)

    monkeypatch.setattr(aiomysql.Connection, "write_packet", counted)
    rows = [(f"r{i:03}", f"row {i} " + "y" * 400, i, None) for i in range(100)]
    await load(link, table, rows)
    await link.commit()
    assert await stored(link, table) == rows
    assert sizes.count(3_000) >= 10, sizes


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
