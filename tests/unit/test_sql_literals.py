"""The actor's SQL for MariaDB: a batch's new rows as INSERT literals or as LOAD DATA
reads them, its updates with their values inlined, in queries of bounded length.

Rows are rendered column by column (one escaping pass per column of strings, a column
with one value in every row rendered once); these properties hold that rendering to the
driver's own quoting of each value, one at a time, and to LOAD DATA's format read back
field by field, for any text, including the separator the column pass joins on,
quotes, tabs, newlines, NUL, backslashes and the text ``\\N``.
``tests/integration/test_store_loads.py`` sends such rows to MariaDB.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.converters import escape_item

from reservation.store import inventory
from reservation.store.inventory import MAX_QUERY_CHARS, Part, Statements, load_data, send_queries
from reservation.store.rows import RowTable

TEXT = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x01", "'", "\\", "\t", "\n", "\r", "\x00", "N"])
)
INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
COLUMN_KINDS = {
    "text": TEXT,
    "int": INT,
    "null": st.none(),
    "mixed": st.one_of(TEXT, INT, st.none(), st.booleans()),
}


@st.composite
def tables(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    kinds = draw(st.lists(st.sampled_from([*COLUMN_KINDS, "same"]), min_size=1, max_size=6))
    n = draw(st.integers(min_value=1, max_value=12))
    # A "same" column holds one value (or values equal to it: 1 and True) in every row,
    # as a batch's event, status and times do.
    same = {i: draw(COLUMN_KINDS["mixed"]) for i, k in enumerate(kinds) if k == "same"}

    def value(i: int, kind: str) -> Any:
        if kind != "same":
            return draw(COLUMN_KINDS[kind])
        if type(same[i]) in (int, bool) and same[i] in (0, 1) and draw(st.booleans()):
            return bool(same[i]) if type(same[i]) is int else int(same[i])
        return same[i]

    return [tuple(value(i, k) for i, k in enumerate(kinds)) for _ in range(n)]


_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "0": "\x00"}


def read_back(data: bytes) -> list[tuple[str | None, ...]]:
    """LOAD DATA's default format read as the server reads it: a row ends at a newline
    and a field at a tab unless escaped, a backslash escapes, and ``\\N`` alone is NULL."""
    rows: list[tuple[str | None, ...]] = []
    fields: list[str | None] = []
    field: list[str] = []
    raw = False  # the field so far is exactly \N
    text = data.decode()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            escaped = text[i + 1]
            raw = escaped == "N" and not field
            field.append(_UNESCAPE.get(escaped, escaped))
            i += 2
            continue
        if char in "\t\n":
            fields.append(None if raw and field == ["N"] else "".join(field))
            field, raw = [], False
            if char == "\n":
                rows.append(tuple(fields))
                fields = []
        else:
            field.append(char)
            raw = False
        i += 1
    assert not field and not fields, "the rows do not end with a newline"
    return rows


def as_field(value: Any) -> str | None:
    """What the server reads for a value: its text, a number's digits, or NULL."""
    if value is None:
        return None
    return str(value) if isinstance(value, str) else str(int(value))


@settings(max_examples=300, deadline=None)
@given(tables())
def test_rows_read_back_as_each_value(rows: list[tuple[Any, ...]]) -> None:
    assert read_back(load_data(rows)) == [tuple(as_field(v) for v in row) for row in rows]


def test_a_separator_inside_a_value_does_not_shift_the_column() -> None:
    rows = [("a\x01b", 1), ("c", 2), ("\x01", 3)]
    assert load_data(rows) == b"a\x01b\t1\nc\t2\n\x01\t3\n"
    query, head = insert_query(rows, False)
    assert query == head + "('a\x01b', 1), ('c', 2), ('\x01', 3)"


def quoted(value: Any, no_backslash_escapes: bool) -> str:
    """One value as the driver quotes it (or, without backslash escapes, quote-doubled)."""
    if no_backslash_escapes and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(escape_item(value, "utf8mb4"))


def insert_query(rows: list[tuple[Any, ...]], no_backslash_escapes: bool) -> tuple[str, str]:
    table = RowTable(f"literals_{len(rows[0])}", tuple(f"c{i}" for i in range(len(rows[0]))))
    statements = Statements(inline=True)
    statements.insert(table, rows)
    (query,) = statements.queries(no_backslash_escapes, can_load=False)  # INSERT literals however many rows
    names = ", ".join(f"c{i}" for i in range(len(rows[0])))
    return query.text, f"INSERT INTO {table.name} ({names}) VALUES "


@settings(max_examples=300, deadline=None)
@given(tables(), st.booleans())
def test_rows_render_as_the_driver_quotes_each_value(rows: list[tuple[Any, ...]], no_backslash: bool) -> None:
    query, head = insert_query(rows, no_backslash)
    expected = head + ", ".join("(" + ", ".join(quoted(v, no_backslash) for v in row) + ")" for row in rows)
    assert query == expected


def test_rows_past_the_query_bound_go_in_several_inserts() -> None:
    long = "x" * 100_000
    rows = [(long, i) for i in range(30)]
    table = RowTable("literals_long", ("a", "b"))
    statements = Statements(inline=True)
    statements.insert(table, rows)
    queries = statements.queries(can_load=False)  # as a server that refuses loads gets them
    assert len(queries) >= 2 and all(len(q.text) <= MAX_QUERY_CHARS + 100_100 for q in queries)
    rendered = [part for q in queries for part in q.statements]
    assert sum(part.count("('x") for part in rendered) == len(rows)


def test_a_table_s_rows_go_as_a_load_from_the_threshold_on() -> None:
    table = RowTable("orders", ("id",))
    for count, loaded in ((inventory.LOAD_MIN_ROWS - 1, False), (inventory.LOAD_MIN_ROWS, True)):
        statements = Statements(inline=True)
        statements.insert(table, [(f"o{i}",) for i in range(count)])
        (query,) = statements.queries()
        assert query.text.startswith("LOAD DATA" if loaded else "INSERT INTO orders (id) VALUES ('o0'), ")
        assert query.rows == [count if loaded else None]
        assert bool(query.loads) is loaded


def test_null_and_the_text_of_null_differ() -> None:
    assert load_data([(None, "\\N", "N"), ("", "x", None)]) == b"\\N\t\\\\N\tN\n\tx\t\\N\n"


def test_updates_render_as_the_driver_quotes_each_value() -> None:
    statements = Statements(inline=True)
    values = ("O'Brien \\ x", None, 7, True)
    statements.add("UPDATE t SET a = %s, b = %s, c = %s, d = %s", values)
    for no_backslash in (False, True):
        (query,) = statements.queries(no_backslash)
        if no_backslash:
            expected = "UPDATE t SET a = 'O''Brien \\ x', b = NULL, c = 7, d = 1"
        else:
            quoted = (escape_item(v, "utf8mb4") for v in values)
            expected = "UPDATE t SET a = {}, b = {}, c = {}, d = {}".format(*quoted)
        assert query.text == expected and query.rows == [None] and not query.loads


def test_a_batch_is_one_query_with_its_rows_beside_it_and_its_updates_after_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inventory, "LOAD_MIN_ROWS", 2)
    statements = Statements(inline=True)
    statements.add("UPDATE events SET sold = %s WHERE id = %s", (3, "e"))
    statements.insert(RowTable("orders", ("id", "total")), [("o1", 10), ("o2", 20)])
    statements.insert(RowTable("bookings", ("id",)), [("b1",), ("b2",), ("b3",)])
    statements.add("UPDATE bookings SET status = %s WHERE id = %s", ("cancelled", "b0"))
    (query,) = statements.queries()
    first, second, third, fourth = query.text.split(";\n")
    # The new rows go before the counters' update takes the event's row lock.
    assert first.startswith("LOAD DATA LOCAL INFILE 'rows-")
    form = "CHARACTER SET utf8mb4 FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A'"
    assert first.endswith(f" INTO TABLE orders {form} (id, total)")
    assert second.endswith(f" INTO TABLE bookings {form} (id)")
    assert third == "UPDATE events SET sold = 3 WHERE id = 'e'"
    assert fourth == "UPDATE bookings SET status = 'cancelled' WHERE id = 'b0'"
    names = [part.split("'")[1] for part in (first, second)]
    assert query.rows == [2, 3, None, None]
    assert query.fence == 2  # the counters' update, whose row count says whether the epoch holds
    assert query.loads == {names[0]: b"o1\t10\no2\t20\n", names[1]: b"b1\nb2\nb3\n"}


def test_updates_past_the_query_bound_go_in_several_queries() -> None:
    long = "x" * 1000
    statements = Statements(inline=True)
    count = 2 * MAX_QUERY_CHARS // 1000
    for i in range(count):
        statements.add("UPDATE t SET a = %s WHERE id = %s", (long, i))
    queries = statements.queries()
    assert len(queries) >= 2 and all(len(q.text) <= MAX_QUERY_CHARS + 1100 for q in queries)
    assert sum(len(q.statements) for q in queries) == count


async def test_a_part_with_nothing_to_send_sends_nothing_and_is_not_fenced() -> None:
    statements = Statements(inline=True)
    statements.add("UPDATE events SET sold = %s WHERE id = %s", (3, "e"))
    queries = statements.queries(part=Part.NEW_ROWS)
    assert queries == []
    assert await send_queries(None, queries) == 1  # no connection is touched
