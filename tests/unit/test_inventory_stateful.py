"""Stateful property test of the inventory state machine of one event.

Hypothesis drives random holds, confirms, releases, cancels, the clock, configuration
changes, pauses, replays of earlier commands and crashes. The test keeps its own
model of the bookings (predicting every outcome) and a fake store that receives the
effects of each batch the way a database would, and rebuilds the inventory from that
store on restart.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from reservation.domain.commands import (
    Attendee,
    BookingStatus,
    Cancel,
    Code,
    Configure,
    Confirm,
    Hold,
    NewOrder,
    Outcome,
    Release,
)
from reservation.domain.ids import booking_id_for, order_id_for_key, request_hash
from reservation.domain.inventory import MAX_QUANTITY, Booking, Effects, Inventory, OrderMemo

EVENT = "event-stateful"
ACCOUNT = "account-stateful"

SettleCommand = Confirm | Release | Cancel
BookingCommand = Hold | SettleCommand


# ------------------------------------------------------------------ the model


@dataclass
class ModelBooking:
    order_id: str
    quantity: int
    status: BookingStatus
    expires_at: float | None


@dataclass
class ModelMemo:
    request_hash: str
    code: Code
    booking_id: str | None
    committed: bool


@dataclass
class Model:
    """What the inventory should hold, updated independently from every outcome."""

    capacity: int
    oversell: int
    on_sale: bool
    price: int
    bookings: dict[str, ModelBooking] = field(default_factory=dict)
    orders: dict[str, ModelMemo] = field(default_factory=dict)

    def total(self, status: BookingStatus) -> int:
        return sum(b.quantity for b in self.bookings.values() if b.status is status)

    @property
    def sold(self) -> int:
        return self.total(BookingStatus.CONFIRMED)

    @property
    def held(self) -> int:
        return self.total(BookingStatus.HELD)

    @property
    def available(self) -> int:
        return max(0, self.capacity + self.oversell - self.sold - self.held)

    def next_expiry(self) -> float | None:
        due = [
            b.expires_at
            for b in self.bookings.values()
            if b.status is BookingStatus.HELD and b.expires_at is not None
        ]
        return min(due, default=None)

    def hold(self, cmd: Hold, now: float) -> Code:
        """Predict the code a Hold gets, and apply it to the model."""
        new = cmd.new_order
        if new is not None and new.order_id in self.orders:
            memo = self.orders[new.order_id]
            if memo.request_hash != new.request_hash:
                return Code.IDEMPOTENCY_MISMATCH
            return memo.code if memo.committed else Code.IN_FLIGHT
        existing = self.bookings.get(cmd.booking_id)
        if existing is not None:
            if existing.order_id != cmd.order_id or existing.quantity != cmd.quantity:
                return Code.CONFLICT
            return {
                BookingStatus.HELD: Code.OK,
                BookingStatus.CONFIRMED: Code.OK,
                BookingStatus.CANCELLED: Code.CONFLICT,
                BookingStatus.RELEASED: Code.HOLD_EXPIRED,
                BookingStatus.EXPIRED: Code.HOLD_EXPIRED,
            }[existing.status]
        if not 1 <= cmd.quantity <= MAX_QUANTITY or cmd.ttl_s <= 0:
            code = Code.INVALID
        elif not self.on_sale:
            code = Code.SALES_PAUSED
        elif cmd.quantity > self.available:
            code = Code.SOLD_OUT
        else:
            code = Code.OK
            self.bookings[cmd.booking_id] = ModelBooking(
                cmd.order_id, cmd.quantity, BookingStatus.HELD, now + cmd.ttl_s
            )
        if new is not None and (new.idempotency_key is not None or code is Code.OK):
            booking_id = cmd.booking_id if code is Code.OK else None
            self.orders[new.order_id] = ModelMemo(new.request_hash, code, booking_id, False)
        return code

    def settle(self, cmd: SettleCommand, now: float) -> Code:
        """Predict the code a Confirm, Release or Cancel gets, and apply it."""
        booking = self.bookings.get(cmd.booking_id)
        if booking is None:
            return Code.NOT_FOUND
        status = booking.status
        if isinstance(cmd, Confirm):
            if status is BookingStatus.HELD:
                assert booking.expires_at is not None
                if booking.expires_at <= now:
                    self._move(booking, BookingStatus.EXPIRED)
                    return Code.HOLD_EXPIRED
                self._move(booking, BookingStatus.CONFIRMED)
                return Code.OK
            if status is BookingStatus.CONFIRMED:
                return Code.OK
            return Code.CONFLICT if status is BookingStatus.CANCELLED else Code.HOLD_EXPIRED
        target = BookingStatus.RELEASED if isinstance(cmd, Release) else BookingStatus.CANCELLED
        if status is BookingStatus.HELD:
            self._move(booking, target)
        elif status is BookingStatus.CONFIRMED:
            if isinstance(cmd, Release):
                return Code.CONFLICT
            self._move(booking, target)
        return Code.OK

    def expire(self, now: float) -> int:
        due = [
            b
            for b in self.bookings.values()
            if b.status is BookingStatus.HELD and b.expires_at is not None and b.expires_at <= now
        ]
        for booking in due:
            self._move(booking, BookingStatus.EXPIRED)
        return len(due)

    def configure(self, cmd: Configure) -> Code:
        capacity = self.capacity if cmd.capacity is None else cmd.capacity
        oversell = self.oversell if cmd.oversell_capacity is None else cmd.oversell_capacity
        if capacity < 0 or oversell < 0 or (cmd.price_minor is not None and cmd.price_minor < 0):
            return Code.INVALID
        if capacity + oversell < self.sold + self.held:
            return Code.CONFLICT
        self.capacity, self.oversell = capacity, oversell
        if cmd.on_sale is not None:
            self.on_sale = cmd.on_sale
        if cmd.price_minor is not None:
            self.price = cmd.price_minor
        return Code.OK

    @staticmethod
    def _move(booking: ModelBooking, target: BookingStatus) -> None:
        booking.status = target
        booking.expires_at = None


# ------------------------------------------------------------------ the store


@dataclass
class Store:
    """A fake database: booking rows, order memos and the event row."""

    capacity: int
    oversell: int
    on_sale: bool
    price: int
    rows: dict[str, Booking] = field(default_factory=dict)
    orders: dict[str, OrderMemo] = field(default_factory=dict)

    def total(self, status: BookingStatus) -> int:
        return sum(r.quantity for r in self.rows.values() if r.status is status)

    @property
    def sold(self) -> int:
        return self.total(BookingStatus.CONFIRMED)

    @property
    def held(self) -> int:
        return self.total(BookingStatus.HELD)

    def write(self, effects: Effects, inv: Inventory) -> None:
        """One transaction: insert created rows, overwrite updated ones, save orders."""
        for booking in effects.created:
            assert booking.booking_id not in self.rows, f"duplicate insert {booking.booking_id}"
            self.rows[booking.booking_id] = dataclasses.replace(booking)
        for booking in effects.updated:
            assert booking.booking_id in self.rows, f"update of unknown row {booking.booking_id}"
            row = self.rows[booking.booking_id]
            row.status = booking.status
            row.expires_at = booking.expires_at
        for effect in effects.orders:
            order = effect.order
            assert order.order_id not in self.orders, f"duplicate order {order.order_id}"
            self.orders[order.order_id] = OrderMemo(
                order.order_id, order.request_hash, effect.code, effect.booking_id, effect.detail
            )
        if effects.counters_changed:
            self.capacity, self.oversell = inv.capacity, inv.oversell_capacity
            self.on_sale, self.price = inv.on_sale, inv.price_minor

    def load(self) -> Inventory:
        """Build a new inventory as an actor does after a restart."""
        held = [dataclasses.replace(r) for r in self.rows.values() if r.status is BookingStatus.HELD]
        inv = Inventory(
            EVENT,
            capacity=self.capacity,
            oversell_capacity=self.oversell,
            on_sale=self.on_sale,
            price_minor=self.price,
            sold=self.sold,
            bookings=held,
        )
        # Settled bookings and order memos are loaded too, so that replays of the
        # commands that produced them are still recognised after the restart.
        for row in self.rows.values():
            if row.status is not BookingStatus.HELD:
                inv.remember(dataclasses.replace(row))
        for memo in self.orders.values():
            inv.remember_order(dataclasses.replace(memo))
        return inv


@dataclass
class Record:
    """A booking command applied earlier, kept to be replayed."""

    command: BookingCommand
    # Replaying it must not change the counters (while its first application stands).
    stable: bool
    batch: int
    lost: bool = False


# ------------------------------------------------------------------ strategies

quantities = st.integers(min_value=1, max_value=5)
ttls = st.one_of(
    st.integers(min_value=1, max_value=20).map(float),
    st.floats(min_value=0.25, max_value=20.0, allow_nan=False),
    st.sampled_from([0.0, -1.0]),  # invalid
)
order_kinds = st.sampled_from(["plain", "order", "keyed"])
counts = st.none() | st.integers(min_value=-1, max_value=20)
oversells = st.none() | st.integers(min_value=-1, max_value=5)
prices = st.none() | st.integers(min_value=-1, max_value=5000)


class InventoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.serial = 0
        self.batch = 0
        self.records: list[Record] = []

    @initialize(
        capacity=st.integers(min_value=0, max_value=15),
        oversell=st.integers(min_value=0, max_value=3),
        on_sale=st.booleans(),
        price=st.integers(min_value=0, max_value=5000),
    )
    def start(self, capacity: int, oversell: int, on_sale: bool, price: int) -> None:
        self.inv = Inventory(
            EVENT, capacity=capacity, oversell_capacity=oversell, on_sale=on_sale, price_minor=price
        )
        self.model = Model(capacity, oversell, on_sale, price)
        self.committed = copy.deepcopy(self.model)
        self.store = Store(capacity, oversell, on_sale, price)

    # -------------------------------------------------------------- helpers

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def check(self, outcome: Outcome, expected: Code) -> None:
        assert outcome.code is expected, (outcome, expected)
        if outcome.booking is not None:
            modelled = self.model.bookings[outcome.booking.booking_id]
            assert outcome.booking.status is modelled.status
            assert outcome.booking.quantity == modelled.quantity

    def apply_hold(self, command: Hold) -> Outcome:
        expected = self.model.hold(command, self.now)
        outcome = self.inv.apply(command, self.now)
        self.check(outcome, expected)
        return outcome

    def apply_settle(self, command: SettleCommand) -> Outcome:
        expected = self.model.settle(command, self.now)
        outcome = self.inv.apply(command, self.now)
        self.check(outcome, expected)
        return outcome

    def commit(self) -> Effects:
        """The actor's end of batch: write the effects, then mark them durable."""
        before = self.committed
        effects = self.inv.take_effects()
        created = {b.booking_id for b in effects.created}
        updated = {b.booking_id for b in effects.updated}
        assert len(created) == len(effects.created)
        assert len(updated) == len(effects.updated)
        assert not created & updated
        # Every booking is reported once, in its final state.
        for booking in [*effects.created, *effects.updated]:
            assert booking.status is self.model.bookings[booking.booking_id].status
        new = {i for i in self.model.bookings if i not in before.bookings}
        changed = {
            i
            for i, b in before.bookings.items()
            if self.model.bookings[i].status is not b.status
        }
        assert created == new
        assert updated == changed
        assert {e.order.order_id for e in effects.orders} == set(self.model.orders) - set(
            before.orders
        )
        config = (self.model.capacity, self.model.oversell, self.model.on_sale, self.model.price)
        if (self.model.sold, self.model.held) != (before.sold, before.held) or config != (
            before.capacity,
            before.oversell,
            before.on_sale,
            before.price,
        ):
            assert effects.counters_changed

        self.store.write(effects, self.inv)
        self.inv.mark_committed()
        for memo in self.model.orders.values():
            memo.committed = True
        self.committed = copy.deepcopy(self.model)
        self.batch += 1
        assert (self.store.sold, self.store.held) == (self.inv.sold, self.inv.held)
        return effects

    def reload(self) -> None:
        self.inv = self.store.load()
        assert (self.inv.sold, self.inv.held) == (self.store.sold, self.store.held)
        assert self.inv.take_effects().empty

    # ---------------------------------------------------------------- rules

    @rule(quantity=quantities, ttl=ttls, kind=order_kinds)
    def hold(self, quantity: int, ttl: float, kind: str) -> None:
        n = self.next_serial()
        new_order: NewOrder | None = None
        if kind == "plain":
            order_id, booking_id = f"order-{n}", f"booking-{n}"
        else:
            key = f"key-{n}" if kind == "keyed" else None
            order_id = order_id_for_key(ACCOUNT, f"key-{n}")
            booking_id = booking_id_for(order_id, EVENT)
            body = f"{quantity}/{ttl}".encode()
            new_order = NewOrder(order_id, ACCOUNT, request_hash(body), key)
        command = Hold(
            command_id=f"hold-{n}",
            booking_id=booking_id,
            order_id=order_id,
            account_id=ACCOUNT,
            attendees=tuple(Attendee(f"guest {i}") for i in range(quantity)),
            ttl_s=ttl,
            new_order=new_order,
        )
        outcome = self.apply_hold(command)
        assert not outcome.replayed
        stable = outcome.ok or kind == "keyed"
        self.records.append(Record(command, stable, self.batch))

    @precondition(lambda self: bool(self.model.bookings))
    @rule(data=st.data(), kind=st.sampled_from([Confirm, Release, Cancel]))
    def settle(self, data: st.DataObject, kind: type[SettleCommand]) -> None:
        booking_id = data.draw(st.sampled_from(sorted(self.model.bookings)), label="booking")
        command = kind(f"{kind.__name__.lower()}-{self.next_serial()}", booking_id)
        self.apply_settle(command)
        self.records.append(Record(command, stable=True, batch=self.batch))

    @rule(kind=st.sampled_from([Confirm, Release, Cancel]))
    def settle_unknown_booking(self, kind: type[SettleCommand]) -> None:
        n = self.next_serial()
        outcome = self.apply_settle(kind(f"settle-{n}", f"unknown-{n}"))
        assert outcome.code is Code.NOT_FOUND

    @rule(seconds=st.integers(min_value=0, max_value=10).map(float) | st.floats(0.0, 10.0))
    def advance_and_expire(self, seconds: float) -> None:
        self.now += seconds
        expected = self.model.expire(self.now)
        assert self.inv.expire(self.now) == expected

    @rule(capacity=counts, oversell=oversells, price=prices)
    def configure(self, capacity: int | None, oversell: int | None, price: int | None) -> None:
        command = Configure(
            f"configure-{self.next_serial()}",
            capacity=capacity,
            oversell_capacity=oversell,
            price_minor=price,
        )
        expected = self.model.configure(command)
        outcome = self.inv.apply(command, self.now)
        assert outcome.code is expected, (outcome, expected)
        if expected is Code.CONFLICT:
            assert outcome.extra == {"sold": self.model.sold, "held": self.model.held}

    @rule(on_sale=st.booleans())
    def pause_or_resume(self, on_sale: bool) -> None:
        command = Configure(f"configure-{self.next_serial()}", on_sale=on_sale)
        assert self.model.configure(command) is Code.OK
        assert self.inv.apply(command, self.now).code is Code.OK

    @precondition(lambda self: bool(self.records))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        record = data.draw(st.sampled_from(self.records), label="record")
        before = (self.inv.sold, self.inv.held)
        if isinstance(record.command, Hold):
            self.apply_hold(record.command)
        else:
            self.apply_settle(record.command)
        if record.stable and not record.lost:
            assert (self.inv.sold, self.inv.held) == before, (record, before)

    @precondition(lambda self: any(self.keyed_orders()))
    @rule(data=st.data())
    def reuse_key_for_another_request(self, data: st.DataObject) -> None:
        command = data.draw(st.sampled_from(self.keyed_orders()), label="order")
        assert command.new_order is not None
        other = dataclasses.replace(
            command,
            new_order=dataclasses.replace(command.new_order, request_hash=request_hash(b"other")),
        )
        before = (self.inv.sold, self.inv.held)
        outcome = self.apply_hold(other)
        assert outcome.code is Code.IDEMPOTENCY_MISMATCH
        assert (self.inv.sold, self.inv.held) == before

    def keyed_orders(self) -> list[Hold]:
        return [
            r.command
            for r in self.records
            if isinstance(r.command, Hold)
            and r.command.new_order is not None
            and r.command.new_order.order_id in self.model.orders
        ]

    @precondition(lambda self: bool(self.model.bookings))
    @rule(data=st.data())
    def reuse_booking_id_for_another_request(self, data: st.DataObject) -> None:
        booking_id = data.draw(st.sampled_from(sorted(self.model.bookings)), label="booking")
        quantity = self.model.bookings[booking_id].quantity + 1
        command = Hold(
            command_id=f"hold-{self.next_serial()}",
            booking_id=booking_id,
            order_id=f"other-order-{self.serial}",
            account_id=ACCOUNT,
            attendees=tuple(Attendee(f"guest {i}") for i in range(quantity)),
            ttl_s=10.0,
        )
        before = (self.inv.sold, self.inv.held)
        assert self.apply_hold(command).code is Code.CONFLICT
        assert (self.inv.sold, self.inv.held) == before

    @rule()
    def end_batch(self) -> None:
        self.commit()
        assert self.inv.take_effects().empty

    @rule()
    def restart(self) -> None:
        self.commit()
        self.reload()

    @rule()
    def crash_before_commit(self) -> None:
        """The process dies with a batch applied but not written: it is lost."""
        for record in self.records:
            if record.batch == self.batch:
                record.lost = True
        self.model = copy.deepcopy(self.committed)
        self.reload()

    # ----------------------------------------------------------- invariants

    @invariant()
    def counters_hold_the_rules(self) -> None:
        inv = self.inv
        assert 0 <= inv.sold and 0 <= inv.held
        assert inv.sold + inv.held <= inv.capacity + inv.oversell_capacity
        statuses = [(b.status, b.quantity) for b in inv.bookings.values()]
        assert inv.held == sum(q for s, q in statuses if s is BookingStatus.HELD)
        assert inv.sold == sum(q for s, q in statuses if s is BookingStatus.CONFIRMED)
        inv.check_invariants()

    @invariant()
    def machine_agrees_with_model(self) -> None:
        inv, model = self.inv, self.model
        assert (inv.sold, inv.held) == (model.sold, model.held)
        assert (inv.capacity, inv.oversell_capacity, inv.on_sale, inv.price_minor) == (
            model.capacity,
            model.oversell,
            model.on_sale,
            model.price,
        )
        assert {i: (b.status, b.quantity) for i, b in inv.bookings.items()} == {
            i: (b.status, b.quantity) for i, b in model.bookings.items()
        }
        assert inv.next_expiry() == model.next_expiry()


InventoryMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
)
TestInventoryStateMachine = InventoryMachine.TestCase
