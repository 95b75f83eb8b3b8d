"""Commands an event's inventory accepts, and the outcomes it answers with.

Commands are plain values, never changed once made, so that they cross process
boundaries (front end -> Ray actor) cheaply and can be replayed in tests. Every command
carries an id; booking-creating commands carry deterministic booking ids, which is what
makes a retried command apply at most once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any, TypeVar

import orjson

from reservation.domain.ids import booking_id_for

# The values below are pickled on every actor call. Plain (non-slots) dataclasses
# pickle through their __dict__, about three times faster than slotted ones; the two
# a booking sends pickle faster still, as their fields in order (_pickled_by_position).
# A one-event order is one Hold with its NewOrder, made in a front end for every
# booking: those two are not frozen (as BookingView and Outcome, below), whose __init__
# would set each field through object.__setattr__ (1.65 and 0.86 µs against 0.34 and
# 0.28 here). The rarer commands stay frozen.

_T = TypeVar("_T")


def _pickled_by_position(cls: type[_T]) -> type[_T]:
    """Pickle ``cls`` as its fields' values in order, restored through its ``__init__``.

    For the two values every booking sends (Hold, NewOrder): a __dict__ is
    restored key by key into a new object, positional values by one call. The event
    actor restores every command it reads, in its loop; 250 one-event orders restored
    in 2.4-3.4 µs each against 6.3-6.8 through their __dict__, and pickled in 4.7-5.5
    against 5.8-6.2 (here, 2 cores).
    """
    values = attrgetter(*(f.name for f in fields(cls)))  # type: ignore[arg-type]

    def __reduce__(self: _T) -> tuple[Any, ...]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


class BookingStatus(StrEnum):
    """Life cycle of one booking (one event inside one order)."""

    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"  # hold given back before confirmation
    EXPIRED = "expired"  # hold ran out of time
    CANCELLED = "cancelled"  # confirmed booking cancelled afterwards


LIVE_STATUSES = frozenset({BookingStatus.HELD, BookingStatus.CONFIRMED})


class Code(StrEnum):
    """Stable outcome codes; the HTTP layer maps each to one problem type."""

    OK = "ok"
    SOLD_OUT = "sold-out"
    SALES_PAUSED = "sales-paused"
    NOT_FOUND = "not-found"
    HOLD_EXPIRED = "hold-expired"
    CONFLICT = "conflict"
    INVALID = "invalid"
    IDEMPOTENCY_MISMATCH = "idempotency-mismatch"
    IN_FLIGHT = "in-flight"
    UNAVAILABLE = "unavailable"


@dataclass
class Attendee:
    name: str
    email: str | None = None


def attendees_json(people: Iterable[Attendee]) -> str:
    """``bookings.attendees`` for these attendees, in order: ``[{"name", "email"}]``.

    orjson writes a dataclass as an object of its fields in their order, which for
    ``Attendee`` is the column's form. It reads a plain dataclass's ``__dict__`` fast:
    one attendee took 0.6 µs, against 1.9 building the dicts first or with a slotted
    ``Attendee`` (here, 2 cores, a slow hour).
    """
    return orjson.dumps(tuple(people)).decode()


@_pickled_by_position
@dataclass
class NewOrder:
    """An order created together with its single booking (the one-event fast path).

    The order row, its idempotency record and the booking are written in the
    actor's transaction, so such an order costs no other database round trip.
    """

    order_id: str
    account_id: str
    request_hash: str
    idempotency_key: str | None


@_pickled_by_position
@dataclass
class Hold:
    """Hold seats for a booking; with ``confirm``, hold and confirm them at once.

    ``confirm`` is a Hold followed by a Confirm of the same booking in one command:
    the one-event order, whose payment does not wait between the two, books with one
    command, one answer and no open hold.
    """

    command_id: str
    booking_id: str
    order_id: str
    account_id: str
    # Seats: one per attendee.
    quantity: int
    # The attendees as the booking's row stores them (``attendees_json``): the actor
    # only writes them, so the front end that makes the command renders them, off the
    # event's one serial loop, and they cross to the actor as one string. Sent as
    # Attendee values, restored, rendered and let go of by the actor, they cost it
    # about a sixth of its CPU per booking: in five alternating pairs of engine runs
    # (2-core machine, a slow hour) the actor spent 29.8-33.6 µs per booking against
    # 38.0-39.3, and committed 19,419-21,830 bookings/s against 17,681-18,356.
    attendees: str
    ttl_s: float
    new_order: NewOrder | None = None
    confirm: bool = False

    @classmethod
    def of(
        cls,
        command_id: str,
        booking_id: str,
        order_id: str,
        account_id: str,
        people: Sequence[Attendee],
        ttl_s: float,
        new_order: NewOrder | None = None,
        *,
        confirm: bool = False,
    ) -> Hold:
        """A hold of a seat for each of ``people``."""
        return cls(
            command_id, booking_id, order_id, account_id, len(people), attendees_json(people), ttl_s, new_order, confirm
        )


def one_event_order(
    order_id: str,
    account_id: str,
    event_id: str,
    attendees: Sequence[Attendee],
    ttl_s: float,
    request_hash: str,
    idempotency_key: str | None,
) -> Hold:
    """The one command a one-event order books with: its booking's id derived from the
    order's, held and confirmed at once, the order created with it."""
    booking_id = booking_id_for(order_id, event_id)
    return Hold.of(
        f"hold:{booking_id}",
        booking_id,
        order_id,
        account_id,
        attendees,
        ttl_s,
        NewOrder(order_id, account_id, request_hash, idempotency_key),
        confirm=True,
    )


@dataclass(frozen=True)
class Confirm:
    command_id: str
    booking_id: str


@dataclass(frozen=True)
class Release:
    """Give back a hold that will not be confirmed (for example a failed multi-event order)."""

    command_id: str
    booking_id: str


@dataclass(frozen=True)
class Cancel:
    """Cancel a booking, held or confirmed; its seats return to sale."""

    command_id: str
    booking_id: str


@dataclass(frozen=True)
class Configure:
    """Change capacity, oversell quota, sale status or price; None leaves a field alone."""

    command_id: str
    capacity: int | None = None
    oversell_capacity: int | None = None
    on_sale: bool | None = None
    price_minor: int | None = None


Command = Hold | Confirm | Release | Cancel | Configure


# The actor makes one BookingView and one Outcome per booking, and nothing changes them
# afterwards; they are not frozen because a frozen dataclass's __init__ sets each field
# through object.__setattr__: 2.9 and 2.3 µs against 0.65 and 0.73 here. In alternating
# engine runs (2-core machine) the actor spent 47.1-48.7 µs of CPU per booking against
# 49.8-54.2 with them frozen, and committed 13,675-14,107 bookings/s against 13,097-13,521.
@dataclass
class BookingView:
    booking_id: str
    order_id: str
    status: BookingStatus
    quantity: int
    unit_price_minor: int
    currency: str
    expires_at: float | None
    created_at: float


@dataclass
class Outcome:
    code: Code
    booking: BookingView | None = None
    detail: str = ""
    # Set when the answer is a replay of an earlier, committed command.
    replayed: bool = False
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


# An outcome as a plain tuple: (code, detail, replayed, extra or None, booking fields or
# None). An actor answers every booking with an outcome; pickled as objects, each
# outcome and its booking view cost a Python call to pickle and another to restore.
OutcomeRow = tuple[Code, str, bool, dict[str, int] | None, tuple[Any, ...] | None]


# A view's fields in their order, as BookingView(*values) takes them back.
_view_values = attrgetter(*(f.name for f in fields(BookingView)))


def outcome_rows(outcomes: list[Outcome]) -> list[OutcomeRow]:
    """``outcomes`` as tuples (see ``outcomes_from_rows``), for pickling many at once."""
    return [
        (o.code, o.detail, o.replayed, o.extra or None, None if o.booking is None else _view_values(o.booking))
        for o in outcomes
    ]


def outcomes_from_rows(rows: list[OutcomeRow]) -> list[Outcome]:
    """The outcomes ``outcome_rows`` turned into ``rows``."""
    return [
        Outcome(code, None if view is None else BookingView(*view), detail, replayed, extra or {})
        for code, detail, replayed, extra, view in rows
    ]
