"""Cached JSON answers and their gzip form: which clients get it, and that it is the same answer."""

from __future__ import annotations

import gzip

import orjson
import pytest

from reservation.api.encoding import GZIP_MIN_BYTES, CachedJson, accepts_gzip


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (b"gzip", True),
        (b"GZip", True),
        (b"x-gzip", True),
        (b"gzip, deflate, br, zstd", True),
        (b"deflate, gzip;q=0.5", True),
        (b"br;q=1.0, gzip; q=0.001", True),
        (b"*", True),
        (b"br, *;q=0.1", True),
        (b"", False),
        (b"identity", False),
        (b"br, deflate", False),
        (b"gzip;q=0", False),
        (b"gzip; Q=0.000", False),
        (b"*;q=0", False),
        (b"*, gzip;q=0", False),  # refused by name: the wildcard does not bring it back
        (b"gzip;q=0, *", False),
        (b"gzip;q=none", False),  # a weight that does not parse accepts nothing
        (b"gzip;q=2", False),
        (b"gzipped", False),
        (b"deflate;q=0.5;gzip", False),
    ],
)
def test_which_clients_accept_gzip(header: bytes, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted
    assert accepts_gzip(header) is accepted  # the second answer comes from the memo


def _page(events: int) -> bytes:
    items = [{"id": f"event-{n}", "title": f"Concert {n}", "venue": "Hall A"} for n in range(events)]
    return orjson.dumps({"items": items, "next_cursor": None})


def test_a_large_answer_is_kept_gzipped_and_sent_to_those_who_accept_it() -> None:
    body = _page(40)
    assert len(body) >= GZIP_MIN_BYTES
    cached = CachedJson(body)
    assert cached.gzipped is not None and gzip.decompress(cached.gzipped) == body
    assert len(cached.gzipped) * 4 < len(body)
    # No time in the gzip header: the same answer compresses to the same bytes.
    assert CachedJson(body).gzipped == cached.gzipped

    sent, headers = cached.encoded(b"gzip, deflate")
    assert sent is cached.gzipped
    assert dict(headers) == {b"content-encoding": b"gzip", b"vary": b"Accept-Encoding"}
    for refusing in (None, b"identity", b"gzip;q=0"):
        sent, headers = cached.encoded(refusing)
        assert sent is body and dict(headers) == {b"vary": b"Accept-Encoding"}


def test_a_small_answer_is_sent_as_it_is() -> None:
    body = _page(1)
    assert len(body) < GZIP_MIN_BYTES
    cached = CachedJson(body)
    assert cached.gzipped is None
    for accept in (None, b"gzip", b"identity"):
        assert cached.encoded(accept) == (body, [])
