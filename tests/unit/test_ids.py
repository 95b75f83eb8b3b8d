"""Ids: the name-based ids stay exactly uuid5 (stored ids depend on it); new ids are UUIDv7."""

from __future__ import annotations

import os
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from reservation.domain import ids


@given(st.text(), st.text())
def test_name_based_ids_are_uuid5_of_the_same_names(first: str, second: str) -> None:
    namespace = uuid.UUID("6f1f2a9e-5d0b-4a53-9a1e-0c7b6a3d2e11")
    assert ids.order_id_for_key(first, second) == str(uuid.uuid5(namespace, f"order\x00{first}\x00{second}"))
    assert ids.booking_id_for(first, second) == str(uuid.uuid5(namespace, f"booking\x00{first}\x00{second}"))


def test_new_ids_are_time_ordered_version_7() -> None:
    before = time.time_ns() // 1_000_000
    made = [ids.new_id() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in made]
    assert all(str(u) == i for u, i in zip(parsed, made, strict=True))
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert all(before <= u.int >> 80 <= after for u in parsed)
    assert len(set(made)) == len(made)


def test_new_ids_spread_their_random_bits() -> None:
    made = [uuid.UUID(ids.new_id()).int for _ in range(4096)]
    for bit in (*range(0, 62), *range(64, 76)):  # the 74 random bits
        ones = sum(value >> bit & 1 for value in made)
        assert 1700 < ones < 2400, bit


def test_a_forked_process_draws_new_ids_of_its_own() -> None:
    ids.new_id()  # the parent has random parts drawn ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, " ".join(ids.new_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [ids.new_id() for _ in range(20)]
    assert len(child) == 20
    # Random parts only: both may share a millisecond.
    assert not {i[14:] for i in child} & {i[14:] for i in parent}
