"""Cached JSON answers, kept with their gzip form for the clients that accept it.

The public reads (a page of events, an event's public view) are answered from a
cache that every reader of the same page shares for about a second. A page of 20
events is about 10 KB of JSON and about 1 KB gzipped; compressing it costs some 80 µs
on the 2-core machine, once per cache entry, and every client that sends
``Accept-Encoding: gzip`` (browsers and most HTTP libraries do) then gets about an
eighth of the bytes: less to write, to send and to read on both sides of the connection.
Answers under ``GZIP_MIN_BYTES`` stay as they are; both forms of a compressed answer
say ``Vary: Accept-Encoding``, so that shared caches keep them apart.
"""

from __future__ import annotations

import gzip

# Below this, compression saves less than it costs to make and to read.
GZIP_MIN_BYTES = 1024
_LEVEL = 6  # about as small as 9 for these pages, in less time

Headers = list[tuple[bytes, bytes]]
_GZIP_HEADERS: Headers = [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
_IDENTITY_HEADERS: Headers = [(b"vary", b"Accept-Encoding")]


class CachedJson:
    """A JSON answer as cached: its bytes and, when it is large enough, their gzip form."""

    __slots__ = ("body", "gzipped")

    def __init__(self, body: bytes) -> None:
        self.body = body
        # mtime=0: no timestamp in the gzip header, so the same answer compresses alike.
        self.gzipped = gzip.compress(body, _LEVEL, mtime=0) if len(body) >= GZIP_MIN_BYTES else None

    def encoded(self, accept_encoding: bytes | None) -> tuple[bytes, Headers]:
        """The bytes to send to a client that sent this ``Accept-Encoding``, and the
        headers that go with them (besides the content type and length)."""
        if self.gzipped is None:
            return self.body, []
        if accept_encoding is not None and accepts_gzip(accept_encoding):
            return self.gzipped, _GZIP_HEADERS
        return self.body, _IDENTITY_HEADERS


# Clients repeat the same few header values byte for byte.
_ACCEPTS: dict[bytes, bool] = {}


def accepts_gzip(header: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (RFC 9110, 12.5.3): ``gzip``
    (or its old name ``x-gzip``) with a weight above 0, or else ``*`` with one."""
    known = _ACCEPTS.get(header)
    if known is not None:
        return known
    named: float | None = None
    star: float | None = None
    for item in header.decode("latin-1").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        weight = _weight(params)
        if coding == "*":
            star = weight
        else:
            named = weight if named is None else max(named, weight)
    accepted = named > 0 if named is not None else star is not None and star > 0
    if len(_ACCEPTS) >= 256:
        _ACCEPTS.clear()
    _ACCEPTS[header] = accepted
    return accepted


def _weight(params: str) -> float:
    """The ``q`` of a coding's parameters (1 without one; 0 when it does not parse)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0
