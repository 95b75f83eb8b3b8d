"""Placing and cancelling orders: holds on every event's actor, then confirms.

One-event orders (the common case) are one actor call carrying a hold and its
confirm; the actor writes the order, its idempotency record, the booking and the
attendees in its group commit, so the request costs no other database round trip.

Orders over several events are all or nothing: the order row and idempotency record
are written first, then every event is held; if one hold fails the others are
released, otherwise every hold is confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from reservation.api import metrics
from reservation.api.schemas import OrderCreate
from reservation.auth import Principal
from reservation.domain.commands import (
    Attendee,
    BookingStatus,
    BookingView,
    Cancel,
    Code,
    Confirm,
    Hold,
    Outcome,
    Release,
    one_event_order,
)
from reservation.domain.ids import booking_id_for, new_id, order_id_for_key, request_hash
from reservation.errors import (
    Conflict,
    IdempotencyMismatch,
    InFlight,
    InvalidRequest,
    NotFound,
    PolicyForbids,
    ReservationError,
    Unavailable,
    error_for,
)
from reservation.runtime import Runtime
from reservation.store import catalog, order_records
from reservation.store.inventory import to_dt

LIVE = (BookingStatus.HELD.value, BookingStatus.CONFIRMED.value)
_CONFIRMED = metrics.counter(metrics.BOOKINGS, "confirmed")
_LATENCY = metrics.histogram(metrics.BOOKING_LATENCY)


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def order_view(order: dict[str, Any]) -> dict[str, Any]:
    """The API shape of an order loaded from the store."""
    currency = order["currency"]
    return {
        "id": order["id"],
        "status": order["status"],
        "total": {"amount": order["total_minor"], "currency": currency},
        "created_at": utc(order["created_at"]),
        "items": [
            {
                "id": b["id"],
                "event_id": b["event_id"],
                "status": b["status"],
                "quantity": b["quantity"],
                "unit_price": {"amount": b["unit_price_minor"], "currency": b["currency"]},
                "attendees": b["attendees"],
            }
            for b in order["items"]
        ],
    }


def _fail(code: Code, detail: str, event_id: str) -> ReservationError:
    return error_for(code, f"{detail} (event {event_id})", event_id=event_id)


class OrderService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._in_flight: set[tuple[str, str]] = set()

    async def _require_events(self, event_ids: Iterable[str]) -> None:
        """NotFound unless every event exists. Events this process knows cost nothing (no
        task, no query); the others are looked up together and remembered."""
        known = self.rt.known_events
        unknown = {e for e in event_ids if e not in known}
        if unknown:
            await asyncio.gather(*map(self._require_unknown_event, unknown))

    async def _require_unknown_event(self, event_id: str) -> None:
        if not await catalog.event_exists(self.rt.reader, event_id):
            raise NotFound(f"no event {event_id}", event_id=event_id)
        self.rt.known_events.add(event_id)

    async def place(self, who: Principal, body: OrderCreate, key: str | None) -> dict[str, Any]:
        """Book every item of ``body`` or none; answers the order (replays answer the first)."""
        settings = self.rt.settings
        if len(body.items) > settings.max_items_per_order:
            raise InvalidRequest(f"at most {settings.max_items_per_order} events per order")
        for item in body.items:
            if len(item.attendees) > settings.max_attendees_per_item:
                raise InvalidRequest(f"at most {settings.max_attendees_per_item} attendees per event")
        fingerprint = request_hash(orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS))
        order_id = order_id_for_key(who.account_id, key) if key else new_id()
        token = (who.account_id, key) if key else None
        if token is not None:
            if token in self._in_flight:
                raise InFlight("a request with this Idempotency-Key is in progress")
            self._in_flight.add(token)
        started = time.perf_counter()
        try:
            await self._require_events(i.event_id for i in body.items)
            if len(body.items) == 1:
                result = await self._place_one(who, body, key, order_id, fingerprint)
            else:
                result = await self._place_many(who, body, key, order_id, fingerprint)
            _CONFIRMED.inc(len(body.items))
            return result
        except ReservationError as exc:
            metrics.counter(metrics.BOOKINGS, exc.kind).inc()
            raise
        finally:
            _LATENCY.observe(time.perf_counter() - started)
            if token is not None:
                self._in_flight.discard(token)

    async def _place_one(
        self, who: Principal, body: OrderCreate, key: str | None, order_id: str, fingerprint: str
    ) -> dict[str, Any]:
        item = body.items[0]
        people = tuple(Attendee(a.name, a.email) for a in item.attendees)
        # Hold and confirm in one command: nothing waits between the two here.
        book = one_event_order(
            order_id, who.account_id, item.event_id, people, self.rt.settings.hold_ttl_s, fingerprint, key
        )
        (booked,) = await self.rt.gateway.execute(item.event_id, [book])
        if booked.code in (Code.IDEMPOTENCY_MISMATCH, Code.IN_FLIGHT):
            raise error_for(booked.code, booked.detail)
        if booked.replayed:
            return await self._replay(who, order_id, item.event_id)
        if not booked.ok or booked.booking is None:
            raise _fail(booked.code, booked.detail, item.event_id)
        return self._fresh_view(order_id, item.event_id, booked.booking, item.attendees)

    def _fresh_view(self, order_id: str, event_id: str, b: BookingView, attendees: Any) -> dict[str, Any]:
        """The answer of a one-event order, built from its actor's outcome as the store will show it."""
        return {
            "id": order_id,
            "status": "confirmed",
            "total": {"amount": b.quantity * b.unit_price_minor, "currency": b.currency},
            "created_at": datetime.fromtimestamp(b.created_at, UTC),
            "items": [
                {
                    "id": b.booking_id,
                    "event_id": event_id,
                    "status": b.status.value,
                    "quantity": b.quantity,
                    "unit_price": {"amount": b.unit_price_minor, "currency": b.currency},
                    "attendees": [{"name": a.name, "email": a.email} for a in attendees],
                }
            ],
        }

    async def _replay(self, who: Principal, order_id: str, event_id: str | None = None) -> dict[str, Any]:
        order = await order_records.get_order(self.rt.reader, order_id, who.account_id)
        if order is None:
            raise Unavailable("the first request's answer is not readable yet; retry")
        if order["status"] == "rejected":
            code = Code(order["problem_type"]) if order["problem_type"] else Code.CONFLICT
            detail = order["problem_detail"] or ""
            if event_id is not None:
                # A one-event order: its actor stored the bare detail; answer as the first time.
                raise _fail(code, detail, event_id)
            # A multi-event order stored the detail it answered; the event it was refused
            # on (none when no single event was at fault) comes back as the first time.
            refused_on = order["problem_event_id"]
            raise error_for(code, detail, event_id=refused_on) if refused_on else error_for(code, detail)
        return order_view(order)

    async def _place_many(
        self, who: Principal, body: OrderCreate, key: str | None, order_id: str, fingerprint: str
    ) -> dict[str, Any]:
        rt = self.rt
        now = time.time()
        lock_until = to_dt(now + rt.settings.actor_call_timeout_s * 3)
        order_row = {
            "id": order_id,
            "account_id": who.account_id,
            "status": "pending",
            "request_hash": fingerprint,
            "idempotency_key": key,
            "total_minor": 0,
            "currency": "XXX",
            "problem_type": None,
            "problem_detail": None,
            "created_at": to_dt(now),
            "updated_at": to_dt(now),
        }
        key_row = None
        if key is not None:
            key_row = {
                "account_id": who.account_id,
                "idem_key": key,
                "request_hash": fingerprint,
                "order_id": order_id,
                "status_code": None,
                "locked_until": lock_until,
                "created_at": to_dt(now),
            }
        existing = await order_records.start_order(rt.writer, order_row, key_row)
        if existing is not None:
            assert key is not None
            if existing.request_hash != fingerprint:
                raise IdempotencyMismatch("this Idempotency-Key was used with a different request")
            if existing.status_code is not None:
                return await self._replay(who, existing.order_id)
            if not await order_records.take_over_key(
                rt.writer, who.account_id, key, to_dt(now), lock_until
            ):
                raise InFlight("a request with this Idempotency-Key is in progress")
            # The first attempt's front end stopped mid-way: finish its work with the same ids.
        return await self._hold_and_confirm(who, body, key, order_id)

    async def _hold_and_confirm(
        self, who: Principal, body: OrderCreate, key: str | None, order_id: str
    ) -> dict[str, Any]:
        rt = self.rt
        ttl = rt.settings.hold_ttl_s
        ids = {i.event_id: booking_id_for(order_id, i.event_id) for i in body.items}
        # Holds are recognised by booking id; the other commands of this attempt get ids
        # of their own, so a late duplicate from an earlier attempt cannot act on this one.
        attempt = new_id()

        async def run(event_id: str, command: Any) -> Outcome:
            try:
                (outcome,) = await rt.gateway.execute(event_id, [command])
            except Unavailable as exc:
                return Outcome(Code.UNAVAILABLE, detail=exc.detail)
            return outcome

        holds = await asyncio.gather(
            *(
                run(
                    i.event_id,
                    Hold.of(
                        f"hold:{ids[i.event_id]}",
                        ids[i.event_id],
                        order_id,
                        who.account_id,
                        [Attendee(a.name, a.email) for a in i.attendees],
                        ttl,
                    ),
                )
                for i in body.items
            )
        )
        failed = next(((i, o) for i, o in zip(body.items, holds, strict=True) if not o.ok), None)
        confirms: list[Outcome] = []
        if failed is None:
            confirms = await asyncio.gather(
                *(run(i.event_id, Confirm(f"confirm:{ids[i.event_id]}:{attempt}", ids[i.event_id])) for i in body.items)
            )
            failed = next(((i, o) for i, o in zip(body.items, confirms, strict=True) if not o.ok), None)
        finish_key = (who.account_id, key) if key else None

        async def undo(command: type[Release] | type[Cancel]) -> None:
            await asyncio.gather(
                *(run(i.event_id, command(f"undo:{ids[i.event_id]}:{attempt}", ids[i.event_id])) for i in body.items)
            )

        async def reject(code: Code, error: ReservationError, event_id: str | None = None) -> ReservationError:
            await order_records.finish_order(
                rt.writer,
                order_id,
                status="rejected",
                total_minor=0,
                problem=(code.value, error.detail, event_id),
                key=finish_key,
                status_code=error.status,
                now=to_dt(time.time()),
            )
            return error

        if failed is not None:
            # All or nothing: give back every seat this order got. Before any confirm the
            # holds are released; after one, cancel covers held and confirmed alike.
            await undo(Cancel if confirms else Release)
            item, outcome = failed
            error = _fail(outcome.code, outcome.detail, item.event_id)
            if outcome.code is Code.UNAVAILABLE:
                # Not a final answer: let a retry with the same key run again at once.
                if key is not None:
                    await order_records.release_key(rt.writer, who.account_id, key, to_dt(time.time() - 1))
                raise error
            raise await reject(outcome.code, error, item.event_id)
        views = [o.booking for o in confirms if o.booking is not None]
        assert len(views) == len(confirms)
        if len({v.currency for v in views}) > 1:
            await undo(Cancel)
            raise await reject(
                Code.INVALID, InvalidRequest("all events of one order must be sold in the same currency")
            )
        await order_records.finish_order(
            rt.writer,
            order_id,
            status="confirmed",
            total_minor=sum(v.quantity * v.unit_price_minor for v in views),
            currency=views[0].currency,
            problem=None,
            key=finish_key,
            status_code=201,
            now=to_dt(time.time()),
        )
        # Answer from the store, so that replays of this request answer exactly the same.
        stored = await order_records.get_order(rt.writer, order_id, who.account_id)
        assert stored is not None
        return order_view(stored)

    async def cancel(self, who: Principal, order_id: str) -> dict[str, Any]:
        """Cancel every live booking of the order, as the events' policies allow."""
        rt = self.rt
        order = await order_records.get_order(rt.writer, order_id, who.account_id)
        if order is None or order["status"] == "rejected":
            raise NotFound("no such order")
        live = [b for b in order["items"] if b["status"] in LIVE]
        attempt = new_id()
        now = datetime.now(UTC)
        for b in live:
            event = await catalog.get_event(rt.reader, b["event_id"])
            if event is None:
                continue
            if not event["cancellation_allowed"]:
                raise PolicyForbids(f"event {b['event_id']} does not allow cancellations")
            deadline = utc(event["starts_at"]) - timedelta(hours=event["cancel_deadline_hours"])
            if now > deadline:
                raise PolicyForbids(
                    f"cancellations for event {b['event_id']} closed at {deadline.isoformat()}"
                )
        outcomes = await asyncio.gather(
            *(rt.gateway.execute(b["event_id"], [Cancel(f"cancel:{b['id']}:{attempt}", b["id"])]) for b in live)
        )
        for b, (outcome,) in zip(live, outcomes, strict=True):
            if not outcome.ok:
                raise Conflict(f"could not cancel booking {b['id']}: {outcome.detail}")
        await order_records.set_order_status(rt.writer, order_id, "cancelled", to_dt(time.time()))
        stored = await order_records.get_order(rt.writer, order_id, who.account_id)
        assert stored is not None
        return order_view(stored)
