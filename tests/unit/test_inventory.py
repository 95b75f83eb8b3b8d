"""Example-based tests of the inventory state machine of one event."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reservation.domain.commands import (
    Attendee,
    BookingStatus,
    Cancel,
    Code,
    Configure,
    Confirm,
    Hold,
    NewOrder,
    Release,
)
from reservation.domain.ids import booking_id_for, order_id_for_key, request_hash
from reservation.domain.inventory import Booking, Inventory

EVENT = "event-1"
ACCOUNT = "account-1"


def attendees(quantity: int) -> tuple[Attendee, ...]:
    return tuple(Attendee(f"guest {i}") for i in range(quantity))


def hold(
    booking_id: str,
    quantity: int = 1,
    *,
    ttl_s: float = 60.0,
    order_id: str | None = None,
    new_order: NewOrder | None = None,
) -> Hold:
    return Hold.of(
        command_id=f"hold-{booking_id}",
        booking_id=booking_id,
        order_id=order_id or f"order-{booking_id}",
        account_id=ACCOUNT,
        people=attendees(quantity),
        ttl_s=ttl_s,
        new_order=new_order,
    )


def keyed_hold(key: str, quantity: int, *, body: bytes = b"body") -> Hold:
    """A one-event order placed with an Idempotency-Key, as the front end builds it."""
    order_id = order_id_for_key(ACCOUNT, key)
    new_order = NewOrder(
        order_id=order_id,
        account_id=ACCOUNT,
        request_hash=request_hash(body),
        idempotency_key=key,
    )
    return hold(booking_id_for(order_id, EVENT), quantity, order_id=order_id, new_order=new_order)


def held_booking(booking_id: str, quantity: int, *, expires_at: float | None = 100.0) -> Booking:
    return Booking(
        booking_id=booking_id,
        order_id=f"order-{booking_id}",
        account_id=ACCOUNT,
        quantity=quantity,
        unit_price_minor=500,
        status=BookingStatus.HELD,
        created_at=0.0,
        expires_at=expires_at,
    )


def confirmed_booking(booking_id: str, quantity: int) -> Booking:
    booking = held_booking(booking_id, quantity, expires_at=None)
    booking.status = BookingStatus.CONFIRMED
    return booking


def counters(inv: Inventory) -> tuple[int, int]:
    return inv.sold, inv.held


# ------------------------------------------------------------------ holds


def test_hold_within_capacity_holds_seats() -> None:
    inv = Inventory(EVENT, capacity=10, price_minor=1250, currency="EUR")

    outcome = inv.apply(hold("b1", 3, ttl_s=30.0), now=100.0)

    assert outcome.code is Code.OK
    assert not outcome.replayed
    assert outcome.booking is not None
    assert outcome.booking.status is BookingStatus.HELD
    assert outcome.booking.quantity == 3
    assert outcome.booking.unit_price_minor == 1250
    assert outcome.booking.currency == "EUR"
    assert outcome.booking.expires_at == 130.0
    assert counters(inv) == (0, 3)
    assert inv.available == 7
    inv.check_invariants()


def test_hold_with_confirm_books_seats_as_sold_with_no_open_hold() -> None:
    inv = Inventory(EVENT, capacity=3, oversell_capacity=1, price_minor=900, currency="EUR")
    booking = replace(keyed_hold("k1", 3), confirm=True)

    outcome = inv.apply(booking, now=100.0)

    assert outcome.ok and not outcome.replayed
    assert outcome.booking is not None
    assert outcome.booking.status is BookingStatus.CONFIRMED
    assert outcome.booking.expires_at is None
    assert counters(inv) == (3, 0)
    assert inv.next_expiry() is None
    effects = inv.take_effects()
    assert [(b.booking_id, b.status, b.expires_at) for b in effects.created] == [
        (booking.booking_id, BookingStatus.CONFIRMED, None)
    ]
    assert [(o.code, o.booking_id) for o in effects.orders] == [(Code.OK, booking.booking_id)]
    # Only the oversell seat is left: two more are sold out, and nothing changes.
    refused = inv.apply(replace(keyed_hold("k2", 2), confirm=True), now=101.0)
    assert refused.code is Code.SOLD_OUT
    assert counters(inv) == (3, 0)
    inv.check_invariants()


def test_hold_with_confirm_answers_as_a_hold_then_a_confirm_would() -> None:
    """Same counters, booking rows, order rows and replays as the two commands."""
    one, two = Inventory(EVENT, capacity=10), Inventory(EVENT, capacity=10)
    first = keyed_hold("k1", 2)
    combined = one.apply(replace(first, confirm=True), now=5.0)
    held = two.apply(first, now=5.0)
    confirmed = two.apply(Confirm("c1", first.booking_id), now=5.0)
    assert held.ok and confirmed.ok
    assert combined == confirmed
    assert counters(one) == counters(two) == (2, 0)
    mine, theirs = one.take_effects(), two.take_effects()
    assert mine.created == theirs.created and mine.orders == theirs.orders
    one.mark_committed(mine)
    two.mark_committed(theirs)
    # Asked again with the same key: replayed, nothing booked twice.
    again = one.apply(replace(first, confirm=True), now=6.0)
    assert again.ok and again.replayed and again == two.apply(first, now=6.0)
    assert counters(one) == (2, 0)


def test_hold_with_confirm_on_a_held_booking_confirms_it_unless_expired() -> None:
    inv = Inventory(EVENT, capacity=10, bookings=[held_booking("b1", 2, expires_at=50.0)])

    late = inv.apply(replace(hold("b1", 2), confirm=True), now=60.0)
    assert late.code is Code.HOLD_EXPIRED and late.replayed
    assert counters(inv) == (0, 0)

    inv = Inventory(EVENT, capacity=10, bookings=[held_booking("b1", 2, expires_at=50.0)])
    on_time = inv.apply(replace(hold("b1", 2), confirm=True), now=40.0)
    assert on_time.ok and on_time.replayed
    assert on_time.booking is not None and on_time.booking.status is BookingStatus.CONFIRMED
    assert counters(inv) == (2, 0)
    inv.check_invariants()


def test_hold_of_exactly_the_remaining_seats_succeeds_and_one_more_is_sold_out() -> None:
    inv = Inventory(EVENT, capacity=4)

    assert inv.apply(hold("b1", 4), now=0.0).ok
    outcome = inv.apply(hold("b2", 1), now=0.0)

    assert outcome.code is Code.SOLD_OUT
    assert outcome.booking is None
    assert "b2" not in inv.bookings
    assert counters(inv) == (0, 4)


def test_oversell_seats_are_sellable_up_to_capacity_plus_oversell_and_no_further() -> None:
    inv = Inventory(EVENT, capacity=5, oversell_capacity=2)

    assert inv.apply(hold("b1", 5), now=0.0).ok
    assert inv.apply(hold("b2", 2), now=0.0).ok  # both oversell seats
    assert counters(inv) == (0, 7)
    assert inv.available == 0

    outcome = inv.apply(hold("b3", 1), now=0.0)

    assert outcome.code is Code.SOLD_OUT
    assert outcome.detail == "1 seat(s) asked, 0 available"
    assert counters(inv) == (0, 7)
    inv.check_invariants()


def test_sold_out_detail_reports_asked_and_available_seats() -> None:
    inv = Inventory(EVENT, capacity=3, oversell_capacity=1)
    assert inv.apply(hold("b1", 2), now=0.0).ok

    outcome = inv.apply(hold("b2", 3), now=0.0)

    assert outcome.code is Code.SOLD_OUT
    assert outcome.detail == "3 seat(s) asked, 2 available"
    assert counters(inv) == (0, 2)


@pytest.mark.parametrize(("quantity", "ttl_s"), [(0, 60.0), (1001, 60.0), (1, 0.0), (1, -5.0)])
def test_invalid_holds_are_refused_without_side_effects(quantity: int, ttl_s: float) -> None:
    inv = Inventory(EVENT, capacity=2000)

    outcome = inv.apply(hold("b1", quantity, ttl_s=ttl_s), now=0.0)

    assert outcome.code is Code.INVALID
    assert counters(inv) == (0, 0)
    assert inv.bookings == {}
    assert inv.take_effects().empty


def test_paused_sales_refuse_holds() -> None:
    inv = Inventory(EVENT, capacity=10, on_sale=False)

    outcome = inv.apply(hold("b1", 1), now=0.0)

    assert outcome.code is Code.SALES_PAUSED
    assert counters(inv) == (0, 0)
    assert "b1" not in inv.bookings


def test_pause_then_resume_through_configure() -> None:
    inv = Inventory(EVENT, capacity=10)

    assert inv.apply(Configure("c1", on_sale=False), now=0.0).ok
    assert inv.apply(hold("b1", 1), now=0.0).code is Code.SALES_PAUSED
    assert inv.apply(Configure("c2", on_sale=True), now=0.0).ok
    assert inv.apply(hold("b1", 1), now=0.0).code is Code.OK
    assert counters(inv) == (0, 1)


def test_paused_sales_still_confirm_existing_holds() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    assert inv.apply(Configure("c1", on_sale=False), now=0.0).ok

    outcome = inv.apply(Confirm("k1", "b1"), now=1.0)

    assert outcome.code is Code.OK
    assert counters(inv) == (2, 0)


# ------------------------------------------------------ confirm and expiry


def test_confirm_moves_held_seats_to_sold() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 3, ttl_s=60.0), now=0.0).ok

    outcome = inv.apply(Confirm("k1", "b1"), now=59.0)

    assert outcome.code is Code.OK
    assert not outcome.replayed
    assert outcome.booking is not None
    assert outcome.booking.status is BookingStatus.CONFIRMED
    assert outcome.booking.expires_at is None
    assert counters(inv) == (3, 0)
    assert inv.next_expiry() is None
    inv.check_invariants()


def test_confirm_replay_is_answered_without_counting_twice() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 3), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=1.0).ok

    outcome = inv.apply(Confirm("k1", "b1"), now=2.0)

    assert outcome.code is Code.OK
    assert outcome.replayed
    assert counters(inv) == (3, 0)


def test_confirm_after_expiry_gives_hold_expired_and_frees_seats() -> None:
    inv = Inventory(EVENT, capacity=3)
    assert inv.apply(hold("b1", 3, ttl_s=10.0), now=0.0).ok
    assert inv.apply(hold("b2", 1), now=5.0).code is Code.SOLD_OUT

    outcome = inv.apply(Confirm("k1", "b1"), now=10.0)  # expiry is inclusive

    assert outcome.code is Code.HOLD_EXPIRED
    assert outcome.booking is not None
    assert outcome.booking.status is BookingStatus.EXPIRED
    assert counters(inv) == (0, 0)
    assert inv.available == 3
    assert inv.apply(hold("b2", 3), now=10.0).ok


def test_confirm_unknown_booking_is_not_found() -> None:
    inv = Inventory(EVENT, capacity=3)

    assert inv.apply(Confirm("k1", "nope"), now=0.0).code is Code.NOT_FOUND


def test_confirm_of_released_or_cancelled_booking_is_refused() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 1), now=0.0).ok
    assert inv.apply(hold("b2", 1), now=0.0).ok
    assert inv.apply(Release("r1", "b1"), now=0.0).ok
    assert inv.apply(Cancel("x2", "b2"), now=0.0).ok

    released = inv.apply(Confirm("k1", "b1"), now=1.0)
    cancelled = inv.apply(Confirm("k2", "b2"), now=1.0)

    assert released.code is Code.HOLD_EXPIRED
    assert released.detail == "the hold was released"
    assert cancelled.code is Code.CONFLICT
    assert counters(inv) == (0, 0)


def test_expire_releases_only_due_holds() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 1, ttl_s=10.0), now=0.0).ok
    assert inv.apply(hold("b2", 2, ttl_s=20.0), now=0.0).ok
    assert inv.apply(hold("b3", 3, ttl_s=30.0), now=0.0).ok
    assert inv.apply(hold("b4", 4, ttl_s=5.0), now=0.0).ok
    assert inv.apply(Confirm("k4", "b4"), now=1.0).ok

    assert inv.next_expiry() == 10.0
    assert inv.expire(9.999) == 0
    assert inv.expire(20.0) == 2  # b1 and b2; b4 was confirmed before its expiry

    assert inv.bookings["b1"].status is BookingStatus.EXPIRED
    assert inv.bookings["b2"].status is BookingStatus.EXPIRED
    assert inv.bookings["b3"].status is BookingStatus.HELD
    assert inv.bookings["b4"].status is BookingStatus.CONFIRMED
    assert counters(inv) == (4, 3)
    assert inv.next_expiry() == 30.0
    assert inv.expire(20.0) == 0
    inv.check_invariants()


def test_next_expiry_skips_holds_settled_otherwise_and_is_none_without_holds() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.next_expiry() is None
    assert inv.apply(hold("b1", 1, ttl_s=5.0), now=0.0).ok
    assert inv.apply(hold("b2", 1, ttl_s=8.0), now=0.0).ok
    assert inv.apply(hold("b3", 1, ttl_s=9.0), now=0.0).ok

    assert inv.apply(Release("r1", "b1"), now=1.0).ok
    assert inv.next_expiry() == 8.0
    assert inv.apply(Confirm("k2", "b2"), now=1.0).ok
    assert inv.next_expiry() == 9.0
    assert inv.apply(Cancel("x3", "b3"), now=1.0).ok
    assert inv.next_expiry() is None
    assert inv.expire(100.0) == 0


def test_expire_considers_holds_loaded_from_the_store() -> None:
    inv = Inventory(EVENT, capacity=10, bookings=[held_booking("b1", 2, expires_at=50.0)])

    assert inv.next_expiry() == 50.0
    assert inv.expire(50.0) == 1
    assert counters(inv) == (0, 0)


# ---------------------------------------------------- release and cancel


def test_release_returns_held_seats_and_is_idempotent() -> None:
    inv = Inventory(EVENT, capacity=2)
    assert inv.apply(hold("b1", 2), now=0.0).ok

    first = inv.apply(Release("r1", "b1"), now=1.0)
    again = inv.apply(Release("r1", "b1"), now=2.0)

    assert first.code is Code.OK and not first.replayed
    assert again.code is Code.OK and again.replayed
    assert inv.bookings["b1"].status is BookingStatus.RELEASED
    assert counters(inv) == (0, 0)
    assert inv.apply(hold("b2", 2), now=2.0).ok


def test_release_of_confirmed_booking_is_a_conflict() -> None:
    inv = Inventory(EVENT, capacity=2)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=0.0).ok

    outcome = inv.apply(Release("r1", "b1"), now=1.0)

    assert outcome.code is Code.CONFLICT
    assert inv.bookings["b1"].status is BookingStatus.CONFIRMED
    assert counters(inv) == (2, 0)


def test_cancel_returns_sold_seats_and_is_idempotent() -> None:
    inv = Inventory(EVENT, capacity=2)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=0.0).ok

    first = inv.apply(Cancel("x1", "b1"), now=1.0)
    again = inv.apply(Cancel("x1", "b1"), now=2.0)

    assert first.code is Code.OK and not first.replayed
    assert again.code is Code.OK and again.replayed
    assert inv.bookings["b1"].status is BookingStatus.CANCELLED
    assert counters(inv) == (0, 0)
    assert inv.apply(hold("b2", 2), now=2.0).ok


def test_cancel_of_held_booking_returns_held_seats() -> None:
    inv = Inventory(EVENT, capacity=2)
    assert inv.apply(hold("b1", 2), now=0.0).ok

    assert inv.apply(Cancel("x1", "b1"), now=1.0).ok
    assert counters(inv) == (0, 0)
    assert inv.bookings["b1"].status is BookingStatus.CANCELLED


@pytest.mark.parametrize("command", [Release("r", "nope"), Cancel("x", "nope")])
def test_settling_unknown_booking_is_not_found(command: Release | Cancel) -> None:
    inv = Inventory(EVENT, capacity=2)

    assert inv.apply(command, now=0.0).code is Code.NOT_FOUND


# ------------------------------------------------- replays by booking id


def test_replayed_hold_with_same_booking_id_does_not_count_twice() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = hold("b1", 3)
    assert inv.apply(command, now=0.0).ok
    inv.take_effects()

    outcome = inv.apply(command, now=1.0)

    assert outcome.code is Code.OK
    assert outcome.replayed
    assert outcome.booking is not None and outcome.booking.booking_id == "b1"
    assert counters(inv) == (0, 3)
    effects = inv.take_effects()
    assert effects.empty


def test_replayed_hold_after_confirm_answers_confirmed_booking() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = hold("b1", 3)
    assert inv.apply(command, now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=1.0).ok

    outcome = inv.apply(command, now=2.0)

    assert outcome.code is Code.OK and outcome.replayed
    assert outcome.booking is not None and outcome.booking.status is BookingStatus.CONFIRMED
    assert counters(inv) == (3, 0)


def give_back(inv: Inventory, how: str, booking_id: str, now: float) -> None:
    """Settle a hold so that its seats return to sale."""
    if how == "release":
        assert inv.apply(Release(f"undo:{booking_id}", booking_id), now).ok
    elif how == "cancel":
        assert inv.apply(Confirm(f"confirm:{booking_id}", booking_id), now).ok
        assert inv.apply(Cancel(f"undo:{booking_id}", booking_id), now).ok
    else:
        assert inv.expire(inv.bookings[booking_id].expires_at or now) == 1


@pytest.mark.parametrize("how", ["release", "cancel", "expire"])
def test_plain_hold_retried_after_its_seats_were_given_back_holds_again_once(how: str) -> None:
    """A multi-event order retried after a failed attempt holds the same booking id again."""
    inv = Inventory(EVENT, capacity=10)
    command = hold("b1", 3, ttl_s=5.0)
    assert inv.apply(command, now=0.0).ok
    give_back(inv, how, "b1", now=1.0)
    assert counters(inv) == (0, 0)

    again = inv.apply(command, now=10.0)
    replay = inv.apply(command, now=11.0)

    assert again.code is Code.OK and not again.replayed
    assert again.booking is not None
    assert again.booking.status is BookingStatus.HELD
    assert again.booking.expires_at == 15.0
    assert replay.code is Code.OK and replay.replayed
    assert counters(inv) == (0, 3)
    assert inv.next_expiry() == 15.0
    inv.check_invariants()


def test_holding_again_respects_ttl_pause_and_availability() -> None:
    inv = Inventory(EVENT, capacity=3)
    command = hold("b1", 3)
    assert inv.apply(command, now=0.0).ok
    assert inv.apply(Release("r1", "b1"), now=0.0).ok

    assert inv.apply(hold("b1", 3, ttl_s=0.0), now=1.0).code is Code.INVALID
    assert inv.apply(Configure("c1", on_sale=False), now=1.0).ok
    assert inv.apply(command, now=1.0).code is Code.SALES_PAUSED
    assert inv.apply(Configure("c2", on_sale=True), now=1.0).ok
    assert inv.apply(hold("b2", 1), now=1.0).ok
    sold_out = inv.apply(command, now=1.0)

    assert sold_out.code is Code.SOLD_OUT
    assert sold_out.detail == "3 seat(s) asked, 2 available"
    assert inv.bookings["b1"].status is BookingStatus.RELEASED
    assert counters(inv) == (0, 1)
    assert inv.apply(Release("r2", "b2"), now=1.0).ok
    assert inv.apply(command, now=1.0).ok  # exactly the 3 seats it needs are free again
    assert counters(inv) == (0, 3)


def test_holding_again_is_an_update_with_the_new_expiry_and_ignores_the_old_one() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = hold("b1", 2, ttl_s=10.0)
    assert inv.apply(command, now=0.0).ok
    assert inv.apply(Release("r1", "b1"), now=1.0).ok
    inv.take_effects()

    assert inv.apply(hold("b1", 2, ttl_s=100.0), now=2.0).ok
    effects = inv.take_effects()

    assert effects.created == []
    assert [(b.booking_id, b.status, b.expires_at) for b in effects.updated] == [("b1", BookingStatus.HELD, 102.0)]
    assert inv.expire(10.0) == 0  # the first hold's expiry no longer applies
    assert inv.bookings["b1"].status is BookingStatus.HELD
    assert inv.next_expiry() == 102.0
    assert inv.expire(102.0) == 1
    assert counters(inv) == (0, 0)


def test_keyed_order_replay_does_not_hold_its_released_booking_again() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = keyed_hold("key-1", 2)
    assert inv.apply(command, now=0.0).ok
    inv.mark_committed(inv.take_effects())
    assert inv.apply(Release("r1", command.booking_id), now=1.0).ok

    outcome = inv.apply(command, now=2.0)

    assert outcome.replayed
    assert outcome.booking is not None and outcome.booking.status is BookingStatus.RELEASED
    assert counters(inv) == (0, 0)


def test_late_duplicate_undo_does_not_cancel_a_booking_held_again() -> None:
    """Attempt 1 of a multi-event order confirms b1, fails elsewhere and undoes b1.

    Attempt 2 holds and confirms b1 again (its commands carry new ids). A delayed
    duplicate of attempt 1's undo (same command id) is answered as a replay and
    leaves attempt 2's booking alone.
    """
    inv = Inventory(EVENT, capacity=10)
    command = hold("b1", 2)
    assert inv.apply(command, now=0.0).ok
    assert inv.apply(Confirm("confirm:b1:attempt-1", "b1"), now=0.0).ok
    undo = Cancel("undo:b1:attempt-1", "b1")
    assert inv.apply(undo, now=1.0).ok
    assert inv.apply(command, now=2.0).ok  # attempt 2 holds the same booking again
    again = inv.apply(Confirm("confirm:b1:attempt-2", "b1"), now=2.0)
    assert again.ok and not again.replayed

    duplicate = inv.apply(undo, now=3.0)

    assert duplicate.replayed
    assert inv.bookings["b1"].status is BookingStatus.CONFIRMED
    assert counters(inv) == (2, 0)


def test_repeated_configure_command_id_is_answered_with_its_first_outcome() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 5), now=0.0).ok
    shrink = Configure("c1", capacity=4)
    first = inv.apply(shrink, now=0.0)
    assert first.code is Code.CONFLICT
    assert inv.apply(Release("r1", "b1"), now=0.0).ok

    repeated = inv.apply(shrink, now=1.0)

    assert repeated.code is Code.CONFLICT and repeated.replayed
    assert repeated.detail == first.detail
    assert inv.capacity == 10
    assert inv.apply(Configure("c2", capacity=4), now=1.0).ok


def test_repeated_command_id_is_answered_not_applied_again() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    confirm = Confirm("confirm:b1:x", "b1")
    first = inv.apply(confirm, now=0.0)
    assert inv.apply(Cancel("cancel:b1:y", "b1"), now=1.0).ok
    repeated = inv.apply(confirm, now=2.0)
    assert repeated.replayed and repeated.code is first.code
    assert inv.bookings["b1"].status is BookingStatus.CANCELLED
    assert counters(inv) == (0, 0)


def test_hold_reusing_a_booking_id_for_another_request_is_a_conflict() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 3), now=0.0).ok

    other_quantity = inv.apply(hold("b1", 2), now=0.0)
    other_order = inv.apply(hold("b1", 3, order_id="another-order"), now=0.0)

    assert other_quantity.code is Code.CONFLICT
    assert other_order.code is Code.CONFLICT
    assert counters(inv) == (0, 3)


# ---------------------------------------------------------------- configure


def test_configure_refuses_limit_below_sold_plus_held() -> None:
    inv = Inventory(EVENT, capacity=10, oversell_capacity=2)
    assert inv.apply(hold("b1", 4), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=0.0).ok
    assert inv.apply(hold("b2", 3), now=0.0).ok
    inv.take_effects()

    outcome = inv.apply(Configure("c1", capacity=5, oversell_capacity=1), now=0.0)

    assert outcome.code is Code.CONFLICT
    assert outcome.extra == {"sold": 4, "held": 3}
    assert "4 seat(s) sold and 3 held" in outcome.detail
    assert (inv.capacity, inv.oversell_capacity) == (10, 2)
    assert inv.take_effects().empty


def test_configure_conflict_leaves_sale_status_and_price_alone() -> None:
    inv = Inventory(EVENT, capacity=10, price_minor=100)
    assert inv.apply(hold("b1", 5), now=0.0).ok

    outcome = inv.apply(Configure("c1", capacity=4, on_sale=False, price_minor=999), now=0.0)

    assert outcome.code is Code.CONFLICT
    assert inv.on_sale is True
    assert inv.price_minor == 100


def test_configure_accepts_limit_exactly_at_sold_plus_held() -> None:
    inv = Inventory(EVENT, capacity=10, oversell_capacity=2)
    assert inv.apply(hold("b1", 4), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=0.0).ok
    assert inv.apply(hold("b2", 3), now=0.0).ok
    inv.take_effects()

    outcome = inv.apply(Configure("c1", capacity=6, oversell_capacity=1), now=0.0)

    assert outcome.code is Code.OK
    assert (inv.capacity, inv.oversell_capacity, inv.limit) == (6, 1, 7)
    assert inv.available == 0
    assert inv.apply(hold("b3", 1), now=0.0).code is Code.SOLD_OUT
    assert inv.take_effects().counters_changed


def test_configure_leaves_unset_fields_alone_and_new_price_applies_to_new_holds() -> None:
    inv = Inventory(EVENT, capacity=10, oversell_capacity=2, price_minor=100)
    assert inv.apply(hold("b1", 1), now=0.0).ok

    assert inv.apply(Configure("c1", price_minor=250), now=0.0).ok
    assert inv.apply(hold("b2", 1), now=0.0).ok

    assert (inv.capacity, inv.oversell_capacity, inv.on_sale) == (10, 2, True)
    assert inv.bookings["b1"].unit_price_minor == 100
    assert inv.bookings["b2"].unit_price_minor == 250


@pytest.mark.parametrize(
    "command",
    [
        Configure("c1", capacity=-1),
        Configure("c1", oversell_capacity=-1),
        Configure("c1", price_minor=-1),
    ],
)
def test_configure_refuses_negative_values(command: Configure) -> None:
    inv = Inventory(EVENT, capacity=10, oversell_capacity=2, price_minor=100)

    outcome = inv.apply(command, now=0.0)

    assert outcome.code is Code.INVALID
    assert (inv.capacity, inv.oversell_capacity, inv.price_minor) == (10, 2, 100)


# ------------------------------------------------------- order memos


def test_keyed_order_replay_before_commit_is_in_flight() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = keyed_hold("key-1", 2)
    assert inv.apply(command, now=0.0).ok

    outcome = inv.apply(command, now=1.0)

    assert outcome.code is Code.IN_FLIGHT
    assert counters(inv) == (0, 2)


def test_keyed_order_replay_after_commit_is_replayed_ok() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = keyed_hold("key-1", 2)
    first = inv.apply(command, now=0.0)
    effects = inv.take_effects()
    inv.mark_committed(effects)

    outcome = inv.apply(command, now=1.0)

    assert outcome.code is Code.OK
    assert outcome.replayed
    assert outcome.booking == first.booking
    assert counters(inv) == (0, 2)
    assert [effect.order.order_id for effect in effects.orders] == [command.order_id]
    assert effects.orders[0].code is Code.OK
    assert effects.orders[0].booking_id == command.booking_id


def test_keyed_order_replay_shows_the_booking_current_state() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = keyed_hold("key-1", 2)
    assert inv.apply(command, now=0.0).ok
    inv.mark_committed(inv.take_effects())
    assert inv.apply(Confirm("k1", command.booking_id), now=1.0).ok

    outcome = inv.apply(command, now=2.0)

    assert outcome.replayed
    assert outcome.booking is not None and outcome.booking.status is BookingStatus.CONFIRMED
    assert counters(inv) == (2, 0)


@pytest.mark.parametrize("committed", [False, True])
def test_keyed_order_with_different_body_is_an_idempotency_mismatch(committed: bool) -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(keyed_hold("key-1", 2, body=b"first"), now=0.0).ok
    if committed:
        inv.mark_committed(inv.take_effects())

    outcome = inv.apply(keyed_hold("key-1", 2, body=b"second"), now=1.0)

    assert outcome.code is Code.IDEMPOTENCY_MISMATCH
    assert counters(inv) == (0, 2)


def test_rejected_keyed_order_is_remembered_and_replays_the_same_refusal() -> None:
    inv = Inventory(EVENT, capacity=2)
    command = keyed_hold("key-1", 3)
    first = inv.apply(command, now=0.0)
    assert first.code is Code.SOLD_OUT
    effects = inv.take_effects()
    inv.mark_committed(effects)
    # Seats free up, but a replay must still answer what the order got the first time.
    assert inv.apply(Configure("c1", capacity=10), now=0.0).ok

    outcome = inv.apply(command, now=1.0)

    assert outcome.code is Code.SOLD_OUT
    assert outcome.detail == first.detail
    assert outcome.replayed
    assert counters(inv) == (0, 0)
    assert command.booking_id not in inv.bookings
    assert [(e.code, e.booking_id) for e in effects.orders] == [(Code.SOLD_OUT, None)]


def test_rejected_order_without_key_leaves_no_memo() -> None:
    inv = Inventory(EVENT, capacity=2)
    new_order = NewOrder("order-x", ACCOUNT, request_hash(b"body"), idempotency_key=None)
    command = hold("b1", 3, order_id="order-x", new_order=new_order)
    assert inv.apply(command, now=0.0).code is Code.SOLD_OUT
    assert inv.take_effects().orders == []
    assert "order-x" not in inv.orders

    assert inv.apply(Configure("c1", capacity=3), now=0.0).ok
    assert inv.apply(command, now=0.0).code is Code.OK
    assert counters(inv) == (0, 3)


def test_memo_replay_answers_even_when_the_event_is_paused() -> None:
    inv = Inventory(EVENT, capacity=10)
    command = keyed_hold("key-1", 2)
    assert inv.apply(command, now=0.0).ok
    inv.mark_committed(inv.take_effects())
    assert inv.apply(Configure("c1", on_sale=False), now=0.0).ok

    outcome = inv.apply(command, now=1.0)

    assert outcome.code is Code.OK and outcome.replayed


def test_mark_committed_commits_only_the_memos_of_the_effects_taken() -> None:
    """mark_committed(effects) makes durable those effects, nothing applied since.

    A memo written after take_effects() is not part of those effects (its order is
    only in the next take_effects()), so a replay of that order stays IN_FLIGHT until
    the next batch commits.
    """
    inv = Inventory(EVENT, capacity=10)
    first = keyed_hold("key-1", 1)
    second = keyed_hold("key-2", 1)
    assert inv.apply(first, now=0.0).ok
    taken = inv.take_effects()  # batch 1 goes to the store...
    assert inv.apply(second, now=0.0).ok  # ...while batch 2 is being applied
    inv.mark_committed(taken)  # batch 1 is durable

    assert [e.order.order_id for e in taken.orders] == [first.order_id]
    assert inv.apply(first, now=1.0).code is Code.OK
    assert inv.apply(second, now=1.0).code is Code.IN_FLIGHT
    batch_2 = inv.take_effects()
    assert [e.order.order_id for e in batch_2.orders] == [second.order_id]
    inv.mark_committed(batch_2)
    assert inv.apply(second, now=2.0).code is Code.OK


# ------------------------------------------------------------------ effects


def test_effects_report_a_booking_held_and_confirmed_in_one_batch_once_in_final_state() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    assert inv.apply(Confirm("k1", "b1"), now=1.0).ok

    effects = inv.take_effects()

    assert [b.booking_id for b in effects.created] == ["b1"]
    assert effects.created[0].status is BookingStatus.CONFIRMED
    assert effects.created[0].quantity == 2
    assert effects.updated == []
    assert effects.counters_changed
    assert inv.take_effects().empty


def test_effects_report_changes_of_bookings_created_in_an_earlier_batch_as_updated() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 2), now=0.0).ok
    assert [b.booking_id for b in inv.take_effects().created] == ["b1"]

    assert inv.apply(Confirm("k1", "b1"), now=1.0).ok
    assert inv.apply(Cancel("x1", "b1"), now=2.0).ok
    effects = inv.take_effects()

    assert effects.created == []
    assert [(b.booking_id, b.status) for b in effects.updated] == [("b1", BookingStatus.CANCELLED)]
    assert inv.take_effects().empty  # reported once, not again in the next batch


def test_effects_report_updates_of_held_bookings_loaded_through_the_constructor() -> None:
    inv = Inventory(
        EVENT,
        capacity=10,
        sold=4,
        bookings=[held_booking("b1", 2), held_booking("b2", 1)],
    )
    assert counters(inv) == (4, 3)

    assert inv.apply(Confirm("k1", "b1"), now=1.0).ok
    assert inv.expire(100.0) == 1  # b2
    effects = inv.take_effects()

    assert effects.created == []
    assert sorted((b.booking_id, b.status) for b in effects.updated) == [
        ("b1", BookingStatus.CONFIRMED),
        ("b2", BookingStatus.EXPIRED),
    ]
    assert counters(inv) == (6, 0)
    inv.check_invariants()


def test_effects_report_updates_of_bookings_loaded_through_remember() -> None:
    inv = Inventory(EVENT, capacity=10, sold=3)
    inv.remember(confirmed_booking("b1", 3))
    assert counters(inv) == (3, 0)  # remember() does not count

    assert inv.apply(Cancel("x1", "b1"), now=1.0).ok
    effects = inv.take_effects()

    assert effects.created == []
    assert [(b.booking_id, b.status) for b in effects.updated] == [("b1", BookingStatus.CANCELLED)]
    assert counters(inv) == (0, 0)


def test_confirmed_bookings_given_to_the_constructor_are_not_counted_again() -> None:
    inv = Inventory(EVENT, capacity=10, sold=3, bookings=[confirmed_booking("b1", 3)])

    assert counters(inv) == (3, 0)
    assert inv.apply(Confirm("k1", "b1"), now=0.0).replayed
    assert counters(inv) == (3, 0)


def test_effects_of_a_refused_command_are_empty() -> None:
    inv = Inventory(EVENT, capacity=1)
    assert inv.apply(hold("b1", 1), now=0.0).ok
    inv.take_effects()

    assert inv.apply(hold("b2", 1), now=0.0).code is Code.SOLD_OUT
    assert inv.apply(Confirm("k", "nope"), now=0.0).code is Code.NOT_FOUND
    assert inv.apply(Configure("c", capacity=0), now=0.0).code is Code.CONFLICT

    assert inv.take_effects().empty


def test_forget_drops_only_settled_bookings() -> None:
    inv = Inventory(EVENT, capacity=10)
    assert inv.apply(hold("b1", 1), now=0.0).ok
    assert inv.apply(hold("b2", 1), now=0.0).ok
    assert inv.apply(Confirm("k2", "b2"), now=0.0).ok

    inv.forget("b1")
    inv.forget("b2")
    inv.forget("unknown")

    assert set(inv.bookings) == {"b1"}
    assert counters(inv) == (1, 1)


def test_unknown_command_type_is_rejected() -> None:
    inv = Inventory(EVENT, capacity=1)

    with pytest.raises(TypeError):
        inv.apply("not a command", now=0.0)  # type: ignore[arg-type]
