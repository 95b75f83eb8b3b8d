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
    LIVE_STATUSES,
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
ReplayableCommand = Hold | SettleCommand | Configure


# ------------------------------------------------------------------ the model

# What an outcome shows of its booking: status, quantity, unit price, expiry.
ViewTuple = tuple[BookingStatus, int, int, float | None]


@dataclass
class ModelBooking:
    order_id: str
    quantity: int
    unit_price: int
    status: BookingStatus
    expires_at: float | None
    # Bumped each time the booking is held again after giving its seats back.
    incarnation: int = 0

    def view(self) -> ViewTuple:
        return self.status, self.quantity, self.unit_price, self.expires_at


@dataclass(frozen=True)
class Expect:
    """The outcome the model predicts for a command."""

    code: Code
    replayed: bool = False
    view: ViewTuple | None = None


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
    # Answers to the non-hold commands applied since the inventory was built.
    applied: dict[str, Expect] = field(default_factory=dict)

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
            b.expires_at for b in self.bookings.values() if b.status is BookingStatus.HELD and b.expires_at is not None
        ]
        return min(due, default=None)

    def view_of(self, booking_id: str | None) -> ViewTuple | None:
        booking = self.bookings.get(booking_id) if booking_id is not None else None
        return None if booking is None else booking.view()

    def hold(self, cmd: Hold, now: float) -> Expect:
        """Predict the outcome of a Hold, and apply it to the model."""
        new = cmd.new_order
        if new is not None and new.order_id in self.orders:
            memo = self.orders[new.order_id]
            if memo.request_hash != new.request_hash:
                return Expect(Code.IDEMPOTENCY_MISMATCH)
            if not memo.committed:
                return Expect(Code.IN_FLIGHT)
            return Expect(memo.code, replayed=True, view=self.view_of(memo.booking_id))
        existing = self.bookings.get(cmd.booking_id)
        if existing is not None:
            if existing.order_id != cmd.order_id or existing.quantity != cmd.quantity:
                return Expect(Code.CONFLICT)
            if new is None and existing.status not in LIVE_STATUSES:
                expect = self.hold_again(existing, cmd, now)
            else:
                replay_code = {
                    BookingStatus.HELD: Code.OK,
                    BookingStatus.CONFIRMED: Code.OK,
                    BookingStatus.CANCELLED: Code.CONFLICT,
                    BookingStatus.RELEASED: Code.HOLD_EXPIRED,
                    BookingStatus.EXPIRED: Code.HOLD_EXPIRED,
                }[existing.status]
                expect = Expect(replay_code, replayed=True, view=existing.view())
            if cmd.confirm and expect.code is Code.OK:
                # As a Confirm of the booking right after the hold.
                if existing.status is BookingStatus.HELD:
                    code = self.confirm_held(existing, now)
                    return Expect(code, replayed=expect.replayed, view=existing.view())
                return Expect(Code.OK, replayed=True, view=existing.view())
            return expect
        if not 1 <= cmd.quantity <= MAX_QUANTITY or cmd.ttl_s <= 0:
            code = Code.INVALID
        elif not self.on_sale:
            code = Code.SALES_PAUSED
        elif cmd.quantity > self.available:
            code = Code.SOLD_OUT
        else:
            code = Code.OK
            if cmd.confirm:
                self.bookings[cmd.booking_id] = ModelBooking(
                    cmd.order_id, cmd.quantity, self.price, BookingStatus.CONFIRMED, None
                )
            else:
                self.bookings[cmd.booking_id] = ModelBooking(
                    cmd.order_id, cmd.quantity, self.price, BookingStatus.HELD, now + cmd.ttl_s
                )
        if new is not None and (new.idempotency_key is not None or code is Code.OK):
            booking_id = cmd.booking_id if code is Code.OK else None
            self.orders[new.order_id] = ModelMemo(new.request_hash, code, booking_id, False)
        return Expect(code, view=self.view_of(cmd.booking_id) if code is Code.OK else None)

    def confirm_held(self, booking: ModelBooking, now: float) -> Code:
        """Confirm a held booking: confirmed, or expired if its time is up."""
        assert booking.expires_at is not None
        if booking.expires_at <= now:
            self._move(booking, BookingStatus.EXPIRED)
            return Code.HOLD_EXPIRED
        self._move(booking, BookingStatus.CONFIRMED)
        return Code.OK

    def hold_again(self, booking: ModelBooking, cmd: Hold, now: float) -> Expect:
        """A plain Hold whose booking gave its seats back holds it again (same price)."""
        if cmd.ttl_s <= 0:
            return Expect(Code.INVALID)
        if not self.on_sale:
            return Expect(Code.SALES_PAUSED)
        if booking.quantity > self.available:
            return Expect(Code.SOLD_OUT)
        booking.status = BookingStatus.HELD
        booking.expires_at = now + cmd.ttl_s
        booking.incarnation += 1
        return Expect(Code.OK, view=booking.view())

    def once(self, command_id: str, fresh: Expect) -> Expect:
        self.applied[command_id] = fresh
        return fresh

    def settle(self, cmd: SettleCommand, now: float) -> Expect:
        """Predict the outcome of a Confirm, Release or Cancel, and apply it."""
        earlier = self.applied.get(cmd.command_id)
        if earlier is not None:
            return dataclasses.replace(earlier, replayed=True)
        booking = self.bookings.get(cmd.booking_id)
        if booking is None:
            return self.once(cmd.command_id, Expect(Code.NOT_FOUND))
        status = booking.status
        code, replayed = Code.OK, False
        if isinstance(cmd, Confirm):
            if status is BookingStatus.HELD:
                code = self.confirm_held(booking, now)
            elif status is BookingStatus.CONFIRMED:
                replayed = True
            else:
                code = Code.CONFLICT if status is BookingStatus.CANCELLED else Code.HOLD_EXPIRED
        elif status is BookingStatus.CONFIRMED and isinstance(cmd, Release):
            code = Code.CONFLICT
        elif status in LIVE_STATUSES:
            self._move(booking, BookingStatus.RELEASED if isinstance(cmd, Release) else BookingStatus.CANCELLED)
        else:
            replayed = True  # already settled
        return self.once(cmd.command_id, Expect(code, replayed, booking.view()))

    def expire(self, now: float) -> int:
        due = [
            b
            for b in self.bookings.values()
            if b.status is BookingStatus.HELD and b.expires_at is not None and b.expires_at <= now
        ]
        for booking in due:
            self._move(booking, BookingStatus.EXPIRED)
        return len(due)

    def configure(self, cmd: Configure) -> Expect:
        earlier = self.applied.get(cmd.command_id)
        if earlier is not None:
            return dataclasses.replace(earlier, replayed=True)
        capacity = self.capacity if cmd.capacity is None else cmd.capacity
        oversell = self.oversell if cmd.oversell_capacity is None else cmd.oversell_capacity
        if capacity < 0 or oversell < 0 or (cmd.price_minor is not None and cmd.price_minor < 0):
            return self.once(cmd.command_id, Expect(Code.INVALID))
        if capacity + oversell < self.sold + self.held:
            return self.once(cmd.command_id, Expect(Code.CONFLICT))
        self.capacity, self.oversell = capacity, oversell
        if cmd.on_sale is not None:
            self.on_sale = cmd.on_sale
        if cmd.price_minor is not None:
            self.price = cmd.price_minor
        return self.once(cmd.command_id, Expect(Code.OK))

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
    """A command applied earlier, kept to be replayed."""

    command: ReplayableCommand
    batch: int
    # The incarnation of the booking the command was applied to (settling commands).
    incarnation: int = 0
    # Its batch died in a crash before commit: the first application never happened.
    lost: bool = False


# ------------------------------------------------------------------ strategies

quantities = st.integers(min_value=1, max_value=5)
ttls = st.one_of(
    st.integers(min_value=1, max_value=20).map(float),
    st.floats(min_value=0.25, max_value=20.0, allow_nan=False),
    st.sampled_from([0.0, -1.0]),  # invalid
)
seconds = st.one_of(
    st.integers(min_value=0, max_value=10).map(float),
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False),
)
capacities = st.none() | st.integers(min_value=-1, max_value=20)
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
        on_sale=st.sampled_from([True, True, True, False]),
        price=st.integers(min_value=0, max_value=5000),
    )
    def start(self, capacity: int, oversell: int, on_sale: bool, price: int) -> None:
        self.inv = Inventory(EVENT, capacity=capacity, oversell_capacity=oversell, on_sale=on_sale, price_minor=price)
        self.model = Model(capacity, oversell, on_sale, price)
        self.committed = copy.deepcopy(self.model)
        self.store = Store(capacity, oversell, on_sale, price)

    # -------------------------------------------------------------- helpers

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    @property
    def counters(self) -> tuple[int, int]:
        return self.inv.sold, self.inv.held

    def check(self, outcome: Outcome, expected: Expect) -> None:
        assert (outcome.code, outcome.replayed) == (expected.code, expected.replayed), (outcome, expected)
        view = outcome.booking
        shown = None if view is None else (view.status, view.quantity, view.unit_price_minor, view.expires_at)
        assert shown == expected.view, (outcome, expected)

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

    def apply_configure(self, command: Configure) -> Outcome:
        expected = self.model.configure(command)
        outcome = self.inv.apply(command, self.now)
        self.check(outcome, expected)
        return outcome

    def pick_booking(self, data: st.DataObject) -> str:
        """A known booking, more often a live one (settled ones test the replies)."""
        live = sorted(i for i, b in self.model.bookings.items() if b.status in LIVE_STATUSES)
        every = sorted(self.model.bookings)
        choices = st.sampled_from(live) | st.sampled_from(every) if live else st.sampled_from(every)
        return data.draw(choices, label="booking")

    def settle(self, kind: type[SettleCommand], booking_id: str) -> None:
        command = kind(f"{kind.__name__.lower()}-{self.next_serial()}", booking_id)
        outcome = self.apply_settle(command)
        assert outcome.booking is not None and outcome.booking.booking_id == booking_id
        self.records.append(Record(command, self.batch, self.model.bookings[booking_id].incarnation))

    def commit(self) -> Effects:
        """The actor's end of batch: write the effects, then mark them durable."""
        before = self.committed
        effects = self.inv.take_effects()
        created = {b.booking_id for b in effects.created}
        updated = {b.booking_id for b in effects.updated}
        assert len(created) == len(effects.created)
        assert len(updated) == len(effects.updated)
        # Every booking changed in the batch is reported once, in its final state.
        for booking in [*effects.created, *effects.updated]:
            modelled = self.model.bookings[booking.booking_id]
            assert (booking.status, booking.expires_at) == (modelled.status, modelled.expires_at)
        assert created == {i for i in self.model.bookings if i not in before.bookings}
        assert updated == {i for i, b in before.bookings.items() if self.model.bookings[i] != b}
        assert {e.order.order_id for e in effects.orders} == set(self.model.orders) - set(before.orders)
        state = (self.model.sold, self.model.held, self.model.capacity, self.model.oversell)
        config = (self.model.on_sale, self.model.price)
        if state + config != (before.sold, before.held, before.capacity, before.oversell, before.on_sale, before.price):
            assert effects.counters_changed

        self.store.write(effects, self.inv)
        self.inv.mark_committed(effects)
        for memo in self.model.orders.values():
            memo.committed = True
        self.committed = copy.deepcopy(self.model)
        self.batch += 1
        assert (self.store.sold, self.store.held) == self.counters
        return effects

    def reload(self) -> None:
        self.inv = self.store.load()
        self.model.applied = {}  # a new inventory knows no command ids
        assert self.counters == (self.store.sold, self.store.held)
        assert self.inv.take_effects().empty

    # ---------------------------------------------------------------- rules

    @rule(quantity=quantities, ttl=ttls)
    def hold(self, quantity: int, ttl: float) -> None:
        n = self.next_serial()
        command = Hold.of(
            command_id=f"hold-{n}",
            booking_id=f"booking-{n}",
            order_id=f"order-{n}",
            account_id=ACCOUNT,
            people=tuple(Attendee(f"guest {i}") for i in range(quantity)),
            ttl_s=ttl,
        )
        self.apply_hold(command)
        self.records.append(Record(command, self.batch))

    @rule(quantity=quantities, ttl=ttls, keyed=st.booleans(), confirm=st.booleans())
    def hold_new_order(self, quantity: int, ttl: float, keyed: bool, confirm: bool) -> None:
        """An order (with or without Idempotency-Key) and its booking; with ``confirm``, the
        one-event fast path, which holds and confirms in one command."""
        n = self.next_serial()
        key = f"key-{n}"
        order_id = order_id_for_key(ACCOUNT, key)
        new_order = NewOrder(
            order_id=order_id,
            account_id=ACCOUNT,
            request_hash=request_hash(f"{quantity}/{ttl}".encode()),
            idempotency_key=key if keyed else None,
        )
        command = Hold.of(
            command_id=f"hold-{n}",
            booking_id=booking_id_for(order_id, EVENT),
            order_id=order_id,
            account_id=ACCOUNT,
            people=tuple(Attendee(f"guest {i}") for i in range(quantity)),
            ttl_s=ttl,
            new_order=new_order,
            confirm=confirm,
        )
        self.apply_hold(command)
        self.records.append(Record(command, self.batch))

    @precondition(lambda self: bool(self.model.bookings))
    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        self.settle(Confirm, self.pick_booking(data))

    @precondition(lambda self: bool(self.model.bookings))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.settle(Release, self.pick_booking(data))

    @precondition(lambda self: bool(self.model.bookings))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.settle(Cancel, self.pick_booking(data))

    @rule(kind=st.sampled_from([Confirm, Release, Cancel]))
    def settle_unknown_booking(self, kind: type[SettleCommand]) -> None:
        n = self.next_serial()
        before = self.counters
        outcome = self.apply_settle(kind(f"settle-{n}", f"unknown-{n}"))
        assert outcome.code is Code.NOT_FOUND
        assert self.counters == before

    @rule(seconds=seconds)
    def advance_clock(self, seconds: float) -> None:
        """Time passes; due holds stay held until expire() or a confirm looks at them."""
        self.now += seconds

    @precondition(lambda self: self.model.next_expiry() is not None)
    @rule()
    def advance_clock_to_next_expiry(self) -> None:
        """The actor sleeps until next_expiry(): land exactly on a hold's expiry time."""
        due = self.inv.next_expiry()
        assert due is not None
        self.now = max(self.now, due)

    @rule()
    def expire_due_holds(self) -> None:
        expected = self.model.expire(self.now)
        assert self.inv.expire(self.now) == expected

    @rule(capacity=capacities, oversell=oversells, price=prices)
    def configure(self, capacity: int | None, oversell: int | None, price: int | None) -> None:
        command = Configure(
            f"configure-{self.next_serial()}",
            capacity=capacity,
            oversell_capacity=oversell,
            price_minor=price,
        )
        outcome = self.apply_configure(command)
        if outcome.code is Code.CONFLICT:
            assert outcome.extra == {"sold": self.model.sold, "held": self.model.held}
        self.records.append(Record(command, self.batch))

    @rule(on_sale=st.booleans())
    def pause_or_resume(self, on_sale: bool) -> None:
        command = Configure(f"configure-{self.next_serial()}", on_sale=on_sale)
        assert self.apply_configure(command).code is Code.OK
        assert self.inv.on_sale is on_sale
        self.records.append(Record(command, self.batch))

    @precondition(lambda self: bool(self.records))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A retry: an earlier command again, with the same command, booking and order ids."""
        record = data.draw(st.sampled_from(self.records), label="record")
        stable = self.replay_is_a_no_op(record)
        before = self.counters
        if isinstance(record.command, Hold):
            self.apply_hold(record.command)
        elif isinstance(record.command, Configure):
            self.apply_configure(record.command)
        else:
            self.apply_settle(record.command)
        if stable:
            assert self.counters == before, record

    @precondition(lambda self: bool(self.plain_holds_without_seats()))
    @rule(data=st.data())
    def retry_hold_that_gave_its_seats_back(self, data: st.DataObject) -> None:
        """A multi-event order retried after a failed attempt: its plain Hold comes again."""
        command = data.draw(st.sampled_from(self.plain_holds_without_seats()), label="hold")
        before = self.counters
        outcome = self.apply_hold(command)
        assert not outcome.replayed
        if outcome.ok:
            assert self.counters == (before[0], before[1] + command.quantity)
        else:
            assert self.counters == before

    def plain_holds_without_seats(self) -> list[Hold]:
        holds = []
        for record in self.records:
            command = record.command
            if isinstance(command, Hold) and command.new_order is None:
                booking = self.model.bookings.get(command.booking_id)
                if booking is not None and booking.status not in LIVE_STATUSES:
                    holds.append(command)
        return holds

    def replay_is_a_no_op(self, record: Record) -> bool:
        """Whether the replay must leave the counters alone, judged before it runs."""
        command = record.command
        if isinstance(command, Configure):
            return True  # configuration never moves seats
        booking = self.model.bookings.get(command.booking_id)
        if isinstance(command, Hold):
            if command.new_order is not None:
                # Answered from the order memo, for as long as there is one.
                return command.new_order.order_id in self.model.orders
            # Answered from the booking while it holds seats (otherwise it holds again).
            return booking is not None and booking.status in LIVE_STATUSES
        if command.command_id in self.model.applied:
            return True  # answered again from the inventory's record of command ids
        # Otherwise (after a restart) it meets the booking it settled, or one held again.
        return not record.lost and booking is not None and booking.incarnation == record.incarnation

    @precondition(lambda self: bool(self.orders_with_memo()))
    @rule(data=st.data())
    def reuse_key_for_another_request(self, data: st.DataObject) -> None:
        command = data.draw(st.sampled_from(self.orders_with_memo()), label="order")
        assert command.new_order is not None
        other = dataclasses.replace(
            command,
            new_order=dataclasses.replace(command.new_order, request_hash=request_hash(b"another body")),
        )
        before = self.counters
        assert self.apply_hold(other).code is Code.IDEMPOTENCY_MISMATCH
        assert self.counters == before

    def orders_with_memo(self) -> list[Hold]:
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
        booking_id = self.pick_booking(data)
        quantity = self.model.bookings[booking_id].quantity + 1
        n = self.next_serial()
        command = Hold.of(
            command_id=f"hold-{n}",
            booking_id=booking_id,
            order_id=f"other-order-{n}",
            account_id=ACCOUNT,
            people=tuple(Attendee(f"guest {i}") for i in range(quantity)),
            ttl_s=10.0,
        )
        before = self.counters
        assert self.apply_hold(command).code is Code.CONFLICT
        assert self.counters == before

    @rule()
    def end_batch(self) -> None:
        self.commit()
        assert self.inv.take_effects().empty

    @rule()
    def restart(self) -> None:
        """Commit, then throw the machine away and rebuild it from the store."""
        self.commit()
        self.reload()

    @rule()
    def crash_before_commit(self) -> None:
        """The process dies with a batch applied but not written: the batch is lost."""
        for record in self.records:
            if record.batch == self.batch:
                record.lost = True
        self.model = copy.deepcopy(self.committed)
        self.reload()

    # ----------------------------------------------------------- invariants

    @invariant()
    def counters_keep_the_rules(self) -> None:
        inv = self.inv
        assert 0 <= inv.sold and 0 <= inv.held
        assert inv.sold + inv.held <= inv.capacity + inv.oversell_capacity
        # Nothing is ever forgotten here, so memory holds every booking of the event.
        live = [(b.status, b.quantity) for b in inv.bookings.values()]
        assert inv.held == sum(q for s, q in live if s is BookingStatus.HELD)
        assert inv.sold == sum(q for s, q in live if s is BookingStatus.CONFIRMED)
        inv.check_invariants()

    @invariant()
    def machine_agrees_with_model(self) -> None:
        inv, model = self.inv, self.model
        assert self.counters == (model.sold, model.held)
        assert (inv.capacity, inv.oversell_capacity, inv.on_sale, inv.price_minor) == (
            model.capacity,
            model.oversell,
            model.on_sale,
            model.price,
        )
        assert {i: (b.status, b.quantity, b.unit_price_minor, b.expires_at) for i, b in inv.bookings.items()} == {
            i: (b.status, b.quantity, b.unit_price, b.expires_at) for i, b in model.bookings.items()
        }
        assert inv.available == model.available
        assert inv.next_expiry() == model.next_expiry()


InventoryMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
)
TestInventoryStateMachine = InventoryMachine.TestCase
