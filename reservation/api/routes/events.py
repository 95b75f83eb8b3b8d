"""Events: browsing for everyone, management for their hosts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from reservation.api.deps import CurrentHost, Events, MaybeUser, RuntimeDep
from reservation.api.encoding import CachedJson
from reservation.api.schemas import EventCreate, EventHostRead, EventPage, EventRead, EventUpdate
from reservation.errors import InvalidRequest

router = APIRouter(prefix="/api/events", tags=["events"])


@router.get("", response_model=EventPage, response_class=Response)
async def browse(
    request: Request,
    events: Events,
    rt: RuntimeDep,
    q: Annotated[str | None, Query(max_length=200, description="text in title, description or venue")] = None,
    starts_from: Annotated[datetime | None, Query(description="events starting at or after")] = None,
    starts_to: Annotated[datetime | None, Query(description="events starting before")] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    page_size: Annotated[int, Query(ge=1)] = 20,
) -> Response:
    """List events by start time; availability is an estimate up to about a second old."""
    if page_size > rt.settings.max_page_size:
        raise InvalidRequest(f"page_size is at most {rt.settings.max_page_size}")
    for value in (starts_from, starts_to):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest("dates need a time zone (e.g. 2027-05-01T20:00:00Z)")
    page = await events.browse(
        text=q or None, starts_from=starts_from, starts_to=starts_to, cursor=cursor, limit=page_size
    )
    return _cached_response(page, request)


@router.get("/{event_id}", response_model=EventHostRead | EventRead)
async def detail(event_id: str, request: Request, events: Events, viewer: MaybeUser) -> Any:
    """One event; its host also sees capacity, oversell, sold and held."""
    found = await events.get(event_id, viewer)
    if isinstance(found, CachedJson):
        return _cached_response(found, request)
    return found


def _cached_response(cached: CachedJson, request: Request) -> Response:
    """A cached answer, gzipped for a client that accepts it (``reservation.api.encoding``)."""
    accept = request.headers.get("accept-encoding")
    body, headers = cached.encoded(None if accept is None else accept.encode("latin-1"))
    response = Response(body, media_type="application/json")
    response.raw_headers.extend(headers)
    return response


@router.post("", status_code=201, response_model=EventHostRead)
async def create(body: EventCreate, host: CurrentHost, events: Events) -> dict[str, Any]:
    return await events.create(host, body)


@router.patch("/{event_id}", response_model=EventHostRead)
async def change(event_id: str, body: EventUpdate, host: CurrentHost, events: Events) -> dict[str, Any]:
    """Change an event; capacity, oversell, price and sale status go through its actor."""
    return await events.update(host, event_id, body)
