"""Ids: the name-based ids stay exactly uuid5 (stored ids depend on it); new ids are UUIDv7."""

from __future__ import annotations

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
