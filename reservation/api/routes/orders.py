"""Orders: book one or several events for several attendees, list, read, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from reservation.api.deps import CurrentUser, IdempotencyKey, Orders, RuntimeDep
from reservation.api.schemas import OrderCreate, OrderPage, OrderRead, order_json
from reservation.errors import InvalidRequest, NotFound
from reservation.services.events import decode_cursor, encode_cursor
from reservation.services.orders import order_view
from reservation.store import order_records

router = APIRouter(prefix="/api/orders", tags=["orders"])


@router.post("", status_code=201, response_model=OrderRead, response_class=Response)
async def place(body: OrderCreate, who: CurrentUser, orders: Orders, key: IdempotencyKey) -> Response:
    """Book every item or none. Send an Idempotency-Key to retry safely."""
    return Response(order_json(await orders.place(who, body, key)), status_code=201, media_type="application/json")


@router.get("", response_model=OrderPage)
async def mine(
    who: CurrentUser,
    rt: RuntimeDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    page_size: Annotated[int, Query(ge=1)] = 20,
) -> dict[str, Any]:
    """The caller's orders, newest first."""
    if page_size > rt.settings.max_page_size:
        raise InvalidRequest(f"page_size is at most {rt.settings.max_page_size}")
    before = decode_cursor(cursor) if cursor else None
    found = await order_records.list_orders(rt.reader, who.account_id, before, page_size)
    next_cursor = None
    if len(found) == page_size:
        last = found[-1]
        next_cursor = encode_cursor([last["created_at"].isoformat(), last["id"]])
    return {"items": [order_view(o) for o in found], "next_cursor": next_cursor}


@router.get("/{order_id}", response_model=OrderRead)
async def one(order_id: str, who: CurrentUser, rt: RuntimeDep) -> dict[str, Any]:
    order = await order_records.get_order(rt.reader, order_id, who.account_id)
    if order is None or order["status"] == "rejected":
        raise NotFound("no such order")
    return order_view(order)


@router.post("/{order_id}/cancel", response_model=OrderRead)
async def cancel(order_id: str, who: CurrentUser, orders: Orders) -> dict[str, Any]:
    """Cancel the order's bookings and give their seats back to sale."""
    return await orders.cancel(who, order_id)
