"""The actor's inlined SQL: a batch's rows render exactly as the driver would quote them.

On MariaDB a group commit goes out as one query with its values inlined. Rows are
rendered column by column (one escaping pass per column of strings); these properties
hold that rendering to the driver's own quoting of each value, one at a time, for
any text, including the separator the column pass joins on, quotes and backslashes,
and for columns with one value in every row (rendered once).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql.converters import escape_item

from reservation.store.inventory import MAX_QUERY_CHARS, Statements
from reservation.store.rows import RowTable

TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x01", "'", "\\", '"', "\x00", "\n"]))
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


def quoted(value: Any, no_backslash_escapes: bool) -> str:
    """One value as the driver quotes it (or, without backslash escapes, quote-doubled)."""
    if no_backslash_escapes and isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(escape_item(value, "utf8mb4"))


def insert_query(rows: list[tuple[Any, ...]], no_backslash_escapes: bool) -> tuple[str, str]:
    table = RowTable(f"literals_{len(rows[0])}", tuple(f"c{i}" for i in range(len(rows[0]))))
    statements = Statements(inline=True)
    statements.insert(table, rows)
    (query,) = statements.queries(no_backslash_escapes)
    names = ", ".join(f"c{i}" for i in range(len(rows[0])))
    return query, f"INSERT INTO {table.name} ({names}) VALUES "


@settings(max_examples=300, deadline=None)
@given(tables(), st.booleans())
def test_rows_render_as_the_driver_quotes_each_value(rows: list[tuple[Any, ...]], no_backslash: bool) -> None:
    query, head = insert_query(rows, no_backslash)
    expected = head + ", ".join("(" + ", ".join(quoted(v, no_backslash) for v in row) + ")" for row in rows)
    assert query == expected


def test_a_separator_inside_a_value_does_not_shift_the_column() -> None:
    rows = [("a\x01b", 1), ("c", 2), ("\x01", 3)]
    query, head = insert_query(rows, False)
    assert query == head + "('a\x01b', 1), ('c', 2), ('\x01', 3)"


def test_rows_past_the_query_bound_go_in_several_inserts() -> None:
    long = "x" * 1000
    rows = [(long, i) for i in range(2 * MAX_QUERY_CHARS // 1000)]
    table = RowTable("literals_long", ("a", "b"))
    statements = Statements(inline=True)
    statements.insert(table, rows)
    queries = statements.queries()
    assert len(queries) >= 2 and all(len(q) <= MAX_QUERY_CHARS + 1100 for q in queries)
    rendered = [part for q in queries for part in q.split(";\n")]
    assert sum(part.count("('x") for part in rendered) == len(rows)
