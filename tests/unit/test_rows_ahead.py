"""How a query's loaded rows are numbered when they go right behind it (``link._numbered``).

The numbers are what MariaDB checks every packet against; the integration tests in
``tests/integration/test_store_loads.py`` send them to a real server.
"""

from __future__ import annotations

import pytest
from pymysql.connections import MAX_PACKET_LEN

from reservation.store import link


def packets(data: bytes) -> list[tuple[int, bytes]]:
    found, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 3], "little")
        found.append((data[at + 3], data[at + 4 : at + 4 + size]))
        at += 4 + size
    return found


def test_each_load_is_numbered_after_the_answers_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "LOAD_PACKET_BYTES", 4)
    numbered = link._numbered(100, [None, ("a", b"12345678"), None, None, ("b", b"xyz")])
    assert numbered is not None
    data, marks = numbered
    # 0 the query, 1 an OK, 2 a's request, 3-4 its rows, 5 their end, 6 its OK, 7-8 two
    # OKs, 9 b's request, 10 its row, 11 their end, then b's OK at 12.
    assert packets(data) == [(3, b"1234"), (4, b"5678"), (5, b""), (10, b"xyz"), (11, b"")]
    assert marks == {"a": (3, 6), "b": (10, 12)}


@pytest.mark.parametrize(("rows", "ahead"), [(253, True), (254, False)])
def test_no_packet_sent_ahead_is_numbered_past_255(monkeypatch: pytest.MonkeyPatch, rows: int, ahead: bool) -> None:
    """253 one-byte packets of rows take numbers 2 to 254 and their end 255; with one
    more the end would be 256, that is 0, which a server that stopped early runs."""
    monkeypatch.setattr(link, "LOAD_PACKET_BYTES", 1)
    numbered = link._numbered(100, [("a", b"x" * rows)])
    assert (numbered is not None) is ahead
    if numbered is not None:
        assert [number for number, _ in packets(numbered[0])] == list(range(2, 256))


def test_a_query_longer_than_a_packet_sends_its_rows_when_asked() -> None:
    assert link._numbered(MAX_PACKET_LEN - 2, [("a", b"x")]) is not None
    assert link._numbered(MAX_PACKET_LEN - 1, [("a", b"x")]) is None
