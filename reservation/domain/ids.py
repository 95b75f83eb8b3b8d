"""Identifiers: time-ordered random ids and deterministic ids for idempotent retries."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

# Fixed namespace so that the same (account, Idempotency-Key) maps to the same order
# id in every process, on every machine, across restarts.
_NAMESPACE = uuid.UUID("6f1f2a9e-5d0b-4a53-9a1e-0c7b6a3d2e11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def new_id() -> str:
    """A UUIDv7-style id: 48 bits of milliseconds then randomness (B-tree friendly)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return _text(value.to_bytes(16, "big"))


def order_id_for_key(account_id: str, idempotency_key: str) -> str:
    """The order id a keyed request always maps to."""
    return _name_based(f"order\x00{account_id}\x00{idempotency_key}")


def booking_id_for(order_id: str, event_id: str) -> str:
    """The booking id of one event inside one order (an order books an event once)."""
    return _name_based(f"booking\x00{order_id}\x00{event_id}")


def _name_based(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, without building a UUID object (hot path)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return _text(digest)


def _text(raw: bytes | bytearray) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_hash(canonical: bytes) -> str:
    """Fingerprint of a request body, to tell a replay from a reused key."""
    return hashlib.sha256(canonical).hexdigest()
