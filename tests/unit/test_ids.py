"""Ids: keyed ids stay exactly uuid5 (stored ids depend on it); new ids are UUIDv7, and their bookings' UUIDv8."""

from __future__ import annotations

import os
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from reservation.domain import ids

NAMESPACE = uuid.UUID("6f1f2a9e-5d0b-4a53-9a1e-0c7b6a3d2e11")


@given(st.text(), st.text())
def test_name_based_ids_are_uuid5_of_the_same_names(first: str, second: str) -> None:
    assert ids.order_id_for_key(first, second) == str(uuid.uuid5(NAMESPACE, f"order\x00{first}\x00{second}"))
    if not ids.is_time_ordered(first):  # time-ordered order ids take another form: tested below
        assert ids.booking_id_for(first, second) == str(uuid.uuid5(NAMESPACE, f"booking\x00{first}\x00{second}"))


@given(st.text(), st.text(), st.text())
def test_a_keyed_orders_booking_id_is_uuid5_as_stored_ones_are(account: str, key: str, event: str) -> None:
    order = ids.order_id_for_key(account, key)
    assert ids.booking_id_for(order, event) == str(uuid.uuid5(NAMESPACE, f"booking\x00{order}\x00{event}"))


@given(st.text())
def test_a_time_ordered_orders_booking_id_takes_its_time_then_a_hash(event: str) -> None:
    order = ids.new_id()
    booking = ids.booking_id_for(order, event)
    parsed = uuid.UUID(booking)
    assert str(parsed) == booking and parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == uuid.UUID(order).int >> 80  # the order's milliseconds
    assert ids.booking_id_for(order, event) == booking  # derived, not drawn
    assert ids.booking_id_for(order, event + "x") != booking


def test_a_time_ordered_orders_booking_ids_spread_their_hashed_bits() -> None:
    order = ids.new_id()
    made = [uuid.UUID(ids.booking_id_for(order, f"event {n}")).int for n in range(4096)]
    assert len({m >> 80 for m in made}) == 1
    for bit in (*range(0, 62), *range(64, 76)):  # the 74 bits of the hash
        ones = sum(value >> bit & 1 for value in made)
        assert 1700 < ones < 2400, bit


def test_time_ordered_orders_booking_ids_sort_as_their_orders_were_made() -> None:
    orders = []
    for _ in range(5):
        orders.append(ids.new_id())
        time.sleep(0.002)
    bookings = [ids.booking_id_for(o, "some event") for o in orders]
    assert sorted(bookings) == bookings
    assert len({ids.booking_id_for(o, e) for o in orders for e in ("a", "b", "c")}) == 15


def test_new_ids_are_time_ordered_version_7() -> None:
    before = time.time_ns() // 1_000_000
    made = [ids.new_id() for _ in range(1000)]
    assert all(ids.is_time_ordered(i) for i in made)
    assert not ids.is_time_ordered(ids.order_id_for_key("account", "key"))
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
