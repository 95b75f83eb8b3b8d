"""Hosts' events: create, change (inventory changes go through the event's actor), read."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from reservation.api.encoding import CachedJson
from reservation.api.schemas import EventCreate, EventPage, EventRead, EventUpdate
from reservation.auth import Principal, Role
from reservation.domain.commands import Configure
from reservation.domain.ids import new_id
from reservation.errors import Forbidden, InvalidRequest, NotFound, error_for
from reservation.runtime import Runtime
from reservation.services.orders import utc
from reservation.store import catalog
from reservation.store.inventory import to_dt

INVENTORY_FIELDS = ("capacity", "oversell_capacity", "status", "price")
DETAIL_FIELDS = ("title", "description", "venue", "starts_at", "ends_at")


def naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def availability(row: dict[str, Any]) -> dict[str, Any]:
    limit = row["capacity"] + row["oversell_capacity"]
    remaining = max(0, limit - row["sold"] - row["held"])
    if remaining == 0:
        level = "sold_out"
    elif remaining * 10 <= limit:
        level = "limited"
    else:
        level = "available"
    return {"remaining": remaining, "level": level, "as_of": utc(row["updated_at"])}


def event_view(row: dict[str, Any], *, for_host: bool = False) -> dict[str, Any]:
    view = {
        "id": row["id"],
        "host_id": row["host_id"],
        "title": row["title"],
        "description": row["description"],
        "venue": row["venue"],
        "starts_at": utc(row["starts_at"]),
        "ends_at": utc(row["ends_at"]),
        "price": {"amount": row["price_minor"], "currency": row["currency"]},
        "status": row["status"],
        "availability": availability(row),
        "policy": {
            "cancellation_allowed": bool(row["cancellation_allowed"]),
            "cancel_deadline_hours": row["cancel_deadline_hours"],
            "refund_percent": row["refund_percent"],
        },
    }
    if for_host:
        view.update(
            capacity=row["capacity"],
            oversell_capacity=row["oversell_capacity"],
            sold=row["sold"],
            held=row["held"],
        )
    return view


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, last_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(last_id)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("malformed cursor") from exc


def _public_for(cached: tuple[str, CachedJson], viewer: Principal | None) -> CachedJson | None:
    """The cached public JSON of an event, or None when ``viewer`` is its host (who sees more)."""
    host_id, body = cached
    return None if viewer is not None and viewer.account_id == host_id else body


def _page_key(
    text: str | None, starts_from: datetime | None, starts_to: datetime | None, after: Any, limit: int
) -> tuple[Any, ...]:
    return ("list", text, starts_from, starts_to, after, limit)


class EventService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def create(self, host: Principal, body: EventCreate) -> dict[str, Any]:
        if host.role is not Role.HOST:
            raise Forbidden("only hosts create events")
        now = to_dt(time.time())
        event_id = new_id()
        await catalog.create_event(
            self.rt.writer,
            {
                "id": event_id,
                "host_id": host.account_id,
                "title": body.title,
                "description": body.description,
                "venue": body.venue,
                "starts_at": naive_utc(body.starts_at),
                "ends_at": naive_utc(body.ends_at),
                "capacity": body.capacity,
                "oversell_capacity": body.oversell_capacity,
                "price_minor": body.price.amount,
                "currency": body.price.currency,
                "status": body.status,
                "sold": 0,
                "held": 0,
                "epoch": 0,
                "version": 0,
                "created_at": now,
                "updated_at": now,
            },
            {"event_id": event_id, **body.policy.model_dump(), "updated_at": now},
        )
        self.rt.known_events.add(event_id)
        return await self.get_for_host(host, event_id)

    async def _owned(self, host: Principal, event_id: str) -> dict[str, Any]:
        row = await catalog.get_event(self.rt.writer, event_id)
        # Another host's event answers exactly like an unknown one: 404.
        if row is None or row["host_id"] != host.account_id:
            raise NotFound("no such event among yours")
        return row

    async def get_for_host(self, host: Principal, event_id: str) -> dict[str, Any]:
        return event_view(await self._owned(host, event_id), for_host=True)

    async def update(self, host: Principal, event_id: str, body: EventUpdate) -> dict[str, Any]:
        row = await self._owned(host, event_id)
        changed = body.model_fields_set
        starts = body.starts_at if "starts_at" in changed else None
        ends = body.ends_at if "ends_at" in changed else None
        new_start = naive_utc(starts) if starts else row["starts_at"]
        new_end = naive_utc(ends) if ends else row["ends_at"]
        if new_end <= new_start:
            raise InvalidRequest("ends_at must be after starts_at")
        if body.price is not None and body.price.currency != row["currency"]:
            raise InvalidRequest("an event's currency cannot change")
        if changed & set(INVENTORY_FIELDS):
            (outcome,) = await self.rt.gateway.execute(
                event_id,
                [
                    Configure(
                        command_id=f"configure:{new_id()}",
                        capacity=body.capacity,
                        oversell_capacity=body.oversell_capacity,
                        on_sale=None if body.status is None else body.status == "on_sale",
                        price_minor=None if body.price is None else body.price.amount,
                    )
                ],
            )
            if not outcome.ok:
                raise error_for(outcome.code, outcome.detail, **outcome.extra)
        details: dict[str, Any] = {}
        for name in DETAIL_FIELDS:
            if name in changed:
                value = getattr(body, name)
                details[name] = naive_utc(value) if isinstance(value, datetime) else value
        policy = body.policy.model_dump() if body.policy is not None else None
        if details or policy:
            await catalog.update_details(self.rt.writer, event_id, details, policy, to_dt(time.time()))
        self.rt.events_cache.invalidate()
        return await self.get_for_host(host, event_id)

    async def get(self, event_id: str, viewer: Principal | None) -> dict[str, Any] | CachedJson:
        """One event: the host's view (fresh) for its host, else the public view as cached JSON."""
        body = await self.public(event_id, viewer)
        if body is None:
            assert viewer is not None
            return await self.get_for_host(viewer, event_id)
        return body

    def cached_public(self, event_id: str, viewer: Principal | None) -> CachedJson | None:
        """``public`` when the cache holds the answer and the viewer is not the host, else None."""
        cached = self.rt.events_cache.peek(("event", event_id))
        return None if cached is None else _public_for(cached, viewer)

    def cached_page(self, cursor: str | None, limit: int) -> CachedJson | None:
        """An unfiltered first page from the cache, or None (``browse`` then loads it)."""
        if cursor:
            return None
        page: CachedJson | None = self.rt.events_cache.peek(_page_key(None, None, None, None, limit))
        return page

    async def public(self, event_id: str, viewer: Principal | None) -> CachedJson | None:
        """The public view as cached JSON; None when ``viewer`` is the event's host, who sees more."""

        async def load() -> tuple[str, CachedJson] | None:
            row = await catalog.get_event(self.rt.reader, event_id)
            if row is None:
                return None
            return row["host_id"], CachedJson(EventRead.model_validate(event_view(row)).model_dump_json().encode())

        # Readers share one serialised answer per event for the cache's lifetime; the
        # host id kept beside it tells the host apart without a database read.
        cached: tuple[str, CachedJson] | None = await self.rt.events_cache.get(("event", event_id), load)
        if cached is None:
            raise NotFound("no such event")
        return _public_for(cached, viewer)

    async def browse(
        self,
        *,
        text: str | None,
        starts_from: datetime | None,
        starts_to: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> CachedJson:
        """A page of events as JSON; identical queries within the cache's lifetime share it."""
        after = decode_cursor(cursor) if cursor else None
        key = _page_key(text, starts_from, starts_to, after, limit)

        async def load() -> CachedJson:
            rows = await catalog.list_events(
                self.rt.reader,
                text=text,
                starts_from=naive_utc(starts_from) if starts_from else None,
                starts_to=naive_utc(starts_to) if starts_to else None,
                after=after,
                limit=limit,
            )
            next_cursor = None
            if len(rows) == limit:
                last = rows[-1]
                next_cursor = encode_cursor([last["starts_at"].isoformat(), last["id"]])
            page = EventPage.model_validate({"items": [event_view(r) for r in rows], "next_cursor": next_cursor})
            return CachedJson(page.model_dump_json().encode())

        cached: CachedJson = await self.rt.events_cache.get(key, load)
        return cached
