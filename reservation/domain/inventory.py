"""The inventory state machine of one event.

Pure and deterministic: commands and the current time go in, outcomes and a record
of what changed (effects, to be written to the store in one transaction) come out.
It imports nothing but the standard library and is driven by the Ray actor, by
property-based tests and by anything else that needs the rules.

Invariants kept after every command:

* ``sold + held <= capacity + oversell_capacity``
* ``held`` equals the quantity of HELD bookings, ``sold`` the quantity of CONFIRMED
  ones (over all bookings of the event, not only those currently in memory).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from reservation.domain.commands import (
    BookingStatus,
    BookingView,
    Cancel,
    Code,
    Command,
    Configure,
    Confirm,
    Hold,
    NewOrder,
    Outcome,
    Release,
)

MAX_QUANTITY = 1000
SETTLED_WITHOUT_SEATS = frozenset({BookingStatus.RELEASED, BookingStatus.EXPIRED, BookingStatus.CANCELLED})


@dataclass(slots=True)
class Booking:
    booking_id: str
    order_id: str
    account_id: str
    quantity: int
    unit_price_minor: int
    status: BookingStatus
    created_at: float
    expires_at: float | None = None
    # As its row stores them (``Hold.attendees``); only a booking made here has them.
    attendees: str = "[]"


@dataclass(slots=True)
class OrderMemo:
    """What the inventory remembers of an order it created (for idempotent replays)."""

    order_id: str
    request_hash: str
    code: Code
    booking_id: str | None
    detail: str = ""
    committed: bool = True


@dataclass(slots=True)
class NewOrderEffect:
    order: NewOrder
    code: Code
    booking_id: str | None
    detail: str


@dataclass(slots=True)
class Effects:
    """Everything one batch changed, in the shape the store writes it."""

    created: list[Booking] = field(default_factory=list)
    updated: list[Booking] = field(default_factory=list)
    orders: list[NewOrderEffect] = field(default_factory=list)
    counters_changed: bool = False
    # The order memos these effects make durable (see Inventory.mark_committed).
    memos: list[OrderMemo] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.created or self.updated or self.orders or self.counters_changed)


class Inventory:
    """Capacity, oversell quota, sold and held seats of one event, and its bookings."""

    def __init__(
        self,
        event_id: str,
        *,
        capacity: int,
        oversell_capacity: int = 0,
        on_sale: bool = True,
        price_minor: int = 0,
        currency: str = "EUR",
        sold: int = 0,
        bookings: list[Booking] | None = None,
    ) -> None:
        self.event_id = event_id
        self.capacity = capacity
        self.oversell_capacity = oversell_capacity
        self.on_sale = on_sale
        self.price_minor = price_minor
        self.currency = currency
        self.sold = sold
        self.held = 0
        self.bookings: dict[str, Booking] = {}
        self.orders: dict[str, OrderMemo] = {}
        # Outcomes of the non-hold commands applied by this incarnation, by command id.
        self.applied: dict[str, Outcome] = {}
        self._expiries: list[tuple[float, str]] = []
        self._created: dict[str, Booking] = {}
        self._updated: dict[str, Booking] = {}
        self._new_orders: list[NewOrderEffect] = []
        self._uncommitted_memos: list[OrderMemo] = []
        self._counters_changed = False
        for booking in bookings or ():
            self.remember(booking)
            if booking.status is BookingStatus.HELD:
                self.held += booking.quantity

    # ---------------------------------------------------------------- queries

    @property
    def limit(self) -> int:
        return self.capacity + self.oversell_capacity

    @property
    def available(self) -> int:
        return max(0, self.limit - self.sold - self.held)

    def next_expiry(self) -> float | None:
        """When the earliest open hold runs out, or None without open holds."""
        while self._expiries:
            at, booking_id = self._expiries[0]
            booking = self.bookings.get(booking_id)
            if booking is not None and booking.status is BookingStatus.HELD and booking.expires_at == at:
                return at
            heapq.heappop(self._expiries)
        return None

    def view(self, booking: Booking) -> BookingView:
        # Positional, in BookingView's field order: one is made for every booking, and
        # keyword arguments cost a dataclass's __init__ about two and a half times as much.
        return BookingView(
            booking.booking_id,
            booking.order_id,
            booking.status,
            booking.quantity,
            booking.unit_price_minor,
            self.currency,
            booking.expires_at,
            booking.created_at,
        )

    def check_invariants(self) -> None:
        """Raise AssertionError if the in-memory state breaks a rule (used by tests)."""
        assert 0 <= self.held and 0 <= self.sold, (self.sold, self.held)
        assert self.sold + self.held <= self.limit, (self.sold, self.held, self.limit)
        held = sum(b.quantity for b in self.bookings.values() if b.status is BookingStatus.HELD)
        assert held == self.held, (held, self.held)

    # ------------------------------------------------------------- loading

    def remember(self, booking: Booking) -> None:
        """Make a booking loaded from the store known (it must not be counted yet)."""
        self.bookings[booking.booking_id] = booking
        if booking.status is BookingStatus.HELD and booking.expires_at is not None:
            heapq.heappush(self._expiries, (booking.expires_at, booking.booking_id))

    def remember_order(self, memo: OrderMemo) -> None:
        self.orders[memo.order_id] = memo

    def forget(self, booking_id: str) -> None:
        """Drop a settled booking from memory (it stays in the store)."""
        booking = self.bookings.get(booking_id)
        if booking is not None and booking.status is not BookingStatus.HELD:
            del self.bookings[booking_id]

    # ------------------------------------------------------------- commands

    def apply(self, command: Command, now: float) -> Outcome:
        """Apply one command at time ``now`` and answer it; a repeated command id is answered again."""
        if isinstance(command, Hold):
            # Holds are recognised by their booking id (it survives restarts in the store).
            return self._hold(command, now)
        if not isinstance(command, (Confirm, Release, Cancel, Configure)):
            raise TypeError(f"unknown command {command!r}")
        earlier = self.applied.get(command.command_id)
        if earlier is not None:
            # A late duplicate (say, of an undo sent before the booking was held again)
            # must not act a second time.
            return replace(earlier, replayed=True)
        if isinstance(command, Confirm):
            outcome = self._confirm(command, now)
        elif isinstance(command, Release):
            outcome = self._settle(command.booking_id, BookingStatus.RELEASED, now)
        elif isinstance(command, Cancel):
            outcome = self._settle(command.booking_id, BookingStatus.CANCELLED, now)
        else:
            outcome = self._configure(command)
        self.applied[command.command_id] = outcome
        return outcome

    def expire(self, now: float) -> int:
        """Release every hold whose expiry is at or before ``now``; return how many."""
        count = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, booking_id = heapq.heappop(self._expiries)
            booking = self.bookings.get(booking_id)
            if booking is not None and booking.status is BookingStatus.HELD:
                assert booking.expires_at is not None
                if booking.expires_at <= now:
                    self._move(booking, BookingStatus.EXPIRED)
                    count += 1
        return count

    def _hold(self, cmd: Hold, now: float) -> Outcome:
        new = cmd.new_order
        if new is not None:
            memo = self.orders.get(new.order_id)
            if memo is not None:
                return self._replay_order(memo, new)
        existing = self.bookings.get(cmd.booking_id)
        if existing is not None:
            if existing.order_id != cmd.order_id or existing.quantity != cmd.quantity:
                return Outcome(Code.CONFLICT, detail="booking id already used by another request")
            if new is None and existing.status in SETTLED_WITHOUT_SEATS:
                # A multi-event order retried after an attempt that gave its seats back
                # (say, a 503 elsewhere): hold the same booking again if seats allow.
                outcome = self._hold_again(existing, cmd, now)
            else:
                outcome = self._replay_booking(existing)
            if cmd.confirm and outcome.ok:
                confirmed = self._confirm_booking(existing, now)
                return replace(confirmed, replayed=outcome.replayed or confirmed.replayed)
            return outcome
        quantity = cmd.quantity
        if not 1 <= quantity <= MAX_QUANTITY:
            return self._reject(new, Code.INVALID, f"quantity must be between 1 and {MAX_QUANTITY}")
        if cmd.ttl_s <= 0:
            return self._reject(new, Code.INVALID, "hold time must be positive")
        if not self.on_sale:
            return self._reject(new, Code.SALES_PAUSED, "sales for this event are paused")
        # ``available`` spelled out: this is the one check every booking passes.
        if quantity > self.capacity + self.oversell_capacity - self.sold - self.held:
            return self._reject(new, Code.SOLD_OUT, f"{quantity} seat(s) asked, {self.available} available")
        confirm = cmd.confirm
        # Positional, in Booking's field order (see ``view``).
        booking = Booking(
            cmd.booking_id,
            cmd.order_id,
            cmd.account_id,
            quantity,
            self.price_minor,
            BookingStatus.CONFIRMED if confirm else BookingStatus.HELD,
            now,
            None if confirm else now + cmd.ttl_s,
            cmd.attendees,
        )
        self.bookings[booking.booking_id] = booking
        self._created[booking.booking_id] = booking
        self._counters_changed = True
        if confirm:
            self.sold += quantity
        else:
            self.held += quantity
            assert booking.expires_at is not None
            heapq.heappush(self._expiries, (booking.expires_at, booking.booking_id))
        if new is not None:
            self._memo(new, Code.OK, booking.booking_id, "")
        return Outcome(Code.OK, self.view(booking))

    def _hold_again(self, booking: Booking, cmd: Hold, now: float) -> Outcome:
        if cmd.ttl_s <= 0:
            return Outcome(Code.INVALID, detail="hold time must be positive")
        if not self.on_sale:
            return Outcome(Code.SALES_PAUSED, detail="sales for this event are paused")
        if booking.quantity > self.available:
            return Outcome(Code.SOLD_OUT, detail=f"{booking.quantity} seat(s) asked, {self.available} available")
        self._move(booking, BookingStatus.HELD)
        booking.expires_at = now + cmd.ttl_s
        heapq.heappush(self._expiries, (booking.expires_at, booking.booking_id))
        return Outcome(Code.OK, self.view(booking))

    def _confirm(self, cmd: Confirm, now: float) -> Outcome:
        booking = self.bookings.get(cmd.booking_id)
        if booking is None:
            return Outcome(Code.NOT_FOUND, detail="no such booking for this event")
        return self._confirm_booking(booking, now)

    def _confirm_booking(self, booking: Booking, now: float) -> Outcome:
        if booking.status is BookingStatus.HELD:
            assert booking.expires_at is not None
            if booking.expires_at <= now:
                self._move(booking, BookingStatus.EXPIRED)
                return Outcome(Code.HOLD_EXPIRED, self.view(booking), "the hold expired")
            self._move(booking, BookingStatus.CONFIRMED)
            return Outcome(Code.OK, self.view(booking))
        if booking.status is BookingStatus.CONFIRMED:
            return Outcome(Code.OK, self.view(booking), replayed=True)
        if booking.status in (BookingStatus.EXPIRED, BookingStatus.RELEASED):
            return Outcome(Code.HOLD_EXPIRED, self.view(booking), f"the hold was {booking.status}")
        return Outcome(Code.CONFLICT, self.view(booking), "the booking was cancelled")

    def _settle(self, booking_id: str, target: BookingStatus, now: float) -> Outcome:
        booking = self.bookings.get(booking_id)
        if booking is None:
            return Outcome(Code.NOT_FOUND, detail="no such booking for this event")
        if booking.status is BookingStatus.HELD:
            self._move(booking, target)
            return Outcome(Code.OK, self.view(booking))
        if booking.status is BookingStatus.CONFIRMED:
            if target is BookingStatus.RELEASED:
                return Outcome(Code.CONFLICT, self.view(booking), "a confirmed booking is cancelled, not released")
            self._move(booking, target)
            return Outcome(Code.OK, self.view(booking))
        # Already settled: the command is a replay and changes nothing.
        return Outcome(Code.OK, self.view(booking), replayed=True)

    def _configure(self, cmd: Configure) -> Outcome:
        capacity = self.capacity if cmd.capacity is None else cmd.capacity
        oversell = self.oversell_capacity if cmd.oversell_capacity is None else cmd.oversell_capacity
        if capacity < 0 or oversell < 0:
            return Outcome(Code.INVALID, detail="capacity and oversell capacity must not be negative")
        if cmd.price_minor is not None and cmd.price_minor < 0:
            return Outcome(Code.INVALID, detail="price must not be negative")
        taken = self.sold + self.held
        if capacity + oversell < taken:
            return Outcome(
                Code.CONFLICT,
                detail=(
                    f"capacity {capacity} + oversell {oversell} is below the {self.sold} seat(s) "
                    f"sold and {self.held} held"
                ),
                extra={"sold": self.sold, "held": self.held},
            )
        self.capacity, self.oversell_capacity = capacity, oversell
        if cmd.on_sale is not None:
            self.on_sale = cmd.on_sale
        if cmd.price_minor is not None:
            self.price_minor = cmd.price_minor
        self._counters_changed = True
        return Outcome(Code.OK)

    # -------------------------------------------------------------- helpers

    def _move(self, booking: Booking, target: BookingStatus) -> None:
        source = booking.status
        if source is BookingStatus.HELD:
            self.held -= booking.quantity
        elif source is BookingStatus.CONFIRMED:
            self.sold -= booking.quantity
        if target is BookingStatus.HELD:
            self.held += booking.quantity
        elif target is BookingStatus.CONFIRMED:
            self.sold += booking.quantity
        booking.status = target
        if target is not BookingStatus.HELD:
            booking.expires_at = None
        self._counters_changed = True
        if booking.booking_id not in self._created:
            self._updated[booking.booking_id] = booking

    def _reject(self, new: NewOrder | None, code: Code, detail: str) -> Outcome:
        if new is not None:
            self._memo(new, code, None, detail)
        return Outcome(code, detail=detail)

    def _memo(self, new: NewOrder, code: Code, booking_id: str | None, detail: str) -> None:
        # Only orders with an idempotency key can be asked for again; others leave no memo.
        if new.idempotency_key is None and code is not Code.OK:
            return
        memo = OrderMemo(new.order_id, new.request_hash, code, booking_id, detail, committed=False)
        self.orders[new.order_id] = memo
        self._uncommitted_memos.append(memo)
        self._new_orders.append(NewOrderEffect(new, code, booking_id, detail))

    def _replay_order(self, memo: OrderMemo, new: NewOrder) -> Outcome:
        if memo.request_hash != new.request_hash:
            return Outcome(
                Code.IDEMPOTENCY_MISMATCH,
                detail="this Idempotency-Key was used with a different request",
            )
        if not memo.committed:
            return Outcome(Code.IN_FLIGHT, detail="a request with this Idempotency-Key is in progress")
        if memo.booking_id is None:
            return Outcome(memo.code, detail=memo.detail, replayed=True)
        booking = self.bookings.get(memo.booking_id)
        if booking is None:
            # Settled and forgotten, or created by another event's actor: the caller
            # reads the order from the store.
            return Outcome(memo.code, detail=memo.detail, replayed=True)
        return Outcome(memo.code, self.view(booking), memo.detail, replayed=True)

    def _replay_booking(self, booking: Booking) -> Outcome:
        if booking.status in (BookingStatus.HELD, BookingStatus.CONFIRMED):
            return Outcome(Code.OK, self.view(booking), replayed=True)
        if booking.status is BookingStatus.CANCELLED:
            return Outcome(Code.CONFLICT, self.view(booking), "the booking was cancelled", replayed=True)
        return Outcome(Code.HOLD_EXPIRED, self.view(booking), f"the hold was {booking.status}", replayed=True)

    # ------------------------------------------------------------- effects

    def take_effects(self) -> Effects:
        """Hand over what changed since the last call, in final state per booking."""
        effects = Effects(
            created=list(self._created.values()),
            updated=list(self._updated.values()),
            orders=self._new_orders,
            counters_changed=self._counters_changed,
            memos=self._uncommitted_memos,
        )
        self._created = {}
        self._updated = {}
        self._new_orders = []
        self._counters_changed = False
        self._uncommitted_memos = []
        return effects

    def mark_committed(self, effects: Effects) -> None:
        """``effects`` are durable: replays of their orders may now answer. Memos of
        effects taken later stay in flight."""
        for memo in effects.memos:
            memo.committed = True
