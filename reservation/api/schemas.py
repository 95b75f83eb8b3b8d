"""Request and response bodies: one schema per operation and role.

Inputs forbid unknown fields and bound every size, so a client can never set what
it does not own (status, price of a booking, counters) or send unbounded data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, model_validator

from reservation.auth import Role

HARD_MAX_ATTENDEES = 1000
HARD_MAX_ITEMS = 100

Name = Annotated[str, Field(min_length=1, max_length=200)]
Password = Annotated[str, Field(min_length=8, max_length=200)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
MinorUnits = Annotated[int, Field(ge=0, le=10**12, description="amount in minor units (cents)")]
EntityId = Annotated[str, Field(min_length=1, max_length=36)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Money(Strict):
    amount: MinorUnits
    currency: Currency


# ----------------------------------------------------------------- accounts


class UserCreate(Strict):
    name: Name
    email: EmailStr
    password: Password
    role: Role = Role.CUSTOMER


class UserRead(BaseModel):
    id: str
    name: str
    email: str
    role: Role
    created_at: datetime


class TokenCreate(Strict):
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=200)]


class TokenRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    account_id: str
    role: Role


# ------------------------------------------------------------------- events

SaleStatus = Literal["on_sale", "paused"]


class PolicyIn(Strict):
    cancellation_allowed: bool = True
    cancel_deadline_hours: Annotated[int, Field(ge=0, le=24 * 365)] = 24
    refund_percent: Annotated[int, Field(ge=0, le=100)] = 100


class PolicyRead(BaseModel):
    cancellation_allowed: bool
    cancel_deadline_hours: int
    refund_percent: int


class EventCreate(Strict):
    title: Name
    description: Annotated[str, Field(max_length=10_000)] = ""
    venue: Name
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: Annotated[int, Field(ge=0, le=10_000_000)]
    oversell_capacity: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    price: Money
    status: SaleStatus = "on_sale"
    policy: PolicyIn = Field(default_factory=PolicyIn)

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventCreate:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class EventUpdate(Strict):
    title: Name | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    venue: Name | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    capacity: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    oversell_capacity: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    price: Money | None = None
    status: SaleStatus | None = None
    policy: PolicyIn | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> EventUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class Availability(BaseModel):
    remaining: int = Field(description="seats still on sale (estimate, up to ~1 s old)")
    level: Literal["available", "limited", "sold_out"]
    as_of: datetime


class EventRead(BaseModel):
    id: str
    host_id: str
    title: str
    description: str
    venue: str
    starts_at: datetime
    ends_at: datetime
    price: Money
    status: str
    availability: Availability
    policy: PolicyRead


class EventHostRead(EventRead):
    """What the event's own host sees: the inventory figures too."""

    capacity: int
    oversell_capacity: int
    sold: int
    held: int


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str | None


# ------------------------------------------------------------------- orders


class AttendeeIn(Strict):
    name: Name
    email: EmailStr | None = None


class OrderItemIn(Strict):
    event_id: EntityId
    attendees: Annotated[list[AttendeeIn], Field(min_length=1, max_length=HARD_MAX_ATTENDEES)]


class OrderCreate(Strict):
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=HARD_MAX_ITEMS)]

    @model_validator(mode="after")
    def _each_event_once(self) -> OrderCreate:
        ids = [i.event_id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("each event may appear once per order; list all its attendees there")
        return self


class AttendeeRead(BaseModel):
    name: str
    email: str | None


class BookingRead(BaseModel):
    id: str
    event_id: str
    status: str
    quantity: int
    unit_price: Money
    attendees: list[AttendeeRead]


class OrderRead(BaseModel):
    id: str
    status: str
    total: Money
    created_at: datetime
    items: list[BookingRead]


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None


def order_json(view: dict[str, Any]) -> bytes:
    """An order as the API answers it (``OrderRead``'s fields; UTC times end in Z, as pydantic writes them)."""
    return orjson.dumps(view, option=orjson.OPT_UTC_Z)
