"""Identifiers: time-ordered random ids and deterministic ids for idempotent retries."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

# Fixed namespace so that the same (account, Idempotency-Key) maps to the same order
# id in every process, on every machine, across restarts.
_NAMESPACE = uuid.UUID("6f1f2a9e-5d0b-4a53-9a1e-0c7b6a3d2e11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def new_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds first (B-tree friendly), then 74 random
    bits around the version and variant.

    The random parts are drawn from the OS 256 at a time: one ``os.urandom`` call per id
    was most of an id's cost (1.15 against 0.47 µs here), and front ends make one or two
    per booking. A forked child drops what its parent drew (``_forget_drawn``).
    """
    global _tails, _head
    millis = time.time_ns() // 1_000_000
    stamp, head = _head
    if stamp != millis:
        text = f"{millis & 0xFFFFFFFFFFFF:012x}"
        head = text[:8] + "-" + text[8:] + "-"
        _head = (millis, head)
    while (tail := next(_tails, None)) is None:
        _tails = _draw_tails()
    return head + tail


def _draw_tails() -> Iterator[str]:
    """Id tails, ``7xxx-Vxxx-xxxxxxxxxxxx``: 10 random bytes each, of which the first
    nibble gives way to the version and two bits of the fifth to the variant."""
    h = os.urandom(10 * _TAILS_PER_DRAW).hex()
    return iter(
        [
            f"7{h[i + 1 : i + 4]}-{_VARIANT[h[i + 4]]}{h[i + 5 : i + 8]}-{h[i + 8 : i + 20]}"
            for i in range(0, len(h), 20)
        ]
    )


_TAILS_PER_DRAW = 256
# A random hex digit's low two bits under the RFC 4122 variant's 0b10.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# Tails drawn and not yet used; the millisecond last seen and its text.
_tails: Iterator[str] = iter(())
_head: tuple[int, str] = (-1, "")


def _forget_drawn() -> None:
    global _tails
    _tails = iter(())


os.register_at_fork(after_in_child=_forget_drawn)


def order_id_for_key(account_id: str, idempotency_key: str) -> str:
    """The order id a keyed request always maps to."""
    return _name_based(f"order\x00{account_id}\x00{idempotency_key}")


def booking_id_for(order_id: str, event_id: str) -> str:
    """The booking id of one event inside one order (an order books an event once).

    A hash of the two, so that whoever knows the order finds its booking. The order id
    of a request with an Idempotency-Key is itself a hash (of the key), and so is its
    booking's id: a UUIDv5, as it always was, since a retry must derive the id its first
    attempt stored. A time-ordered order id (UUIDv7, a request without a key) lends its
    booking id its 48 bits of milliseconds, then the hash: a UUIDv8 (RFC 9562's version
    for ids of one's own layout) that lands where the newest entries of the bookings'
    unique index are, not at a random place in it. Such an order is never asked for
    again, so only its front end ever derives it.
    """
    name = f"booking\x00{order_id}\x00{event_id}"
    if is_time_ordered(order_id):
        h = _digest(name).hex()
        return f"{order_id[:13]}-8{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}"
    return _name_based(name)


def is_time_ordered(id_: str) -> bool:
    """Whether ``id_`` is laid out as ``new_id`` makes ids: milliseconds first, version 7."""
    return len(id_) == 36 and id_[14] == "7" and id_[8] == "-" and id_[13] == "-"


def _digest(name: str) -> bytes:
    """SHA-1 of the namespace and ``name``, as UUIDv5 takes it."""
    return hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()


def _name_based(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, without building a UUID object (hot path)."""
    digest = bytearray(_digest(name)[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return _text(digest)


def _text(raw: bytes | bytearray) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_hash(canonical: bytes) -> str:
    """Fingerprint of a request body, to tell a replay from a reused key."""
    return hashlib.sha256(canonical).hexdigest()
