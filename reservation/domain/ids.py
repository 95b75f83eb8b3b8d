"""Identifiers: time-ordered random ids and deterministic ids for idempotent retries."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

# Fixed namespace so that the same (account, Idempotency-Key) maps to the same order
# id in every process, on every machine, across restarts.
_NAMESPACE = uuid.UUID("6f1f2a9e-5d0b-4a53-9a1e-0c7b6a3d2e11")


def new_id() -> str:
    """A UUIDv7-style id: 48 bits of milliseconds then randomness (B-tree friendly)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def order_id_for_key(account_id: str, idempotency_key: str) -> str:
    """The order id a keyed request always maps to."""
    return str(uuid.uuid5(_NAMESPACE, f"order\x00{account_id}\x00{idempotency_key}"))


def booking_id_for(order_id: str, event_id: str) -> str:
    """The booking id of one event inside one order (an order books an event once)."""
    return str(uuid.uuid5(_NAMESPACE, f"booking\x00{order_id}\x00{event_id}"))


def request_hash(canonical: bytes) -> str:
    """Fingerprint of a request body, to tell a replay from a reused key."""
    return hashlib.sha256(canonical).hexdigest()
