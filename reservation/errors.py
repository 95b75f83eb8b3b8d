"""The exception tree; the HTTP layer maps each class to one problem type.

    ReservationError
    +-- Unauthorized ............ 401 unauthorized
    +-- Forbidden ............... 403 forbidden
    +-- NotFound ................ 404 not-found
    +-- InvalidRequest .......... 422 invalid-request
    |   +-- IdempotencyMismatch . 422 idempotency-mismatch
    +-- Conflict ................ 409 conflict
    |   +-- SoldOut ............. 409 sold-out
    |   +-- SalesPaused ......... 409 sales-paused
    |   +-- HoldExpired ......... 409 hold-expired
    |   +-- InFlight ............ 409 in-flight
    |   +-- PolicyForbids ....... 409 policy-forbids
    +-- Unavailable ............. 503 unavailable (Retry-After)
        +-- Overloaded .......... 503 overloaded
        +-- StoreUnavailable .... 503 store-unavailable
"""

from __future__ import annotations

from typing import Any

from reservation.domain.commands import Code

PROBLEM_BASE = "/problems/"


class ReservationError(Exception):
    status = 500
    kind = "internal"
    title = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.kind


class Unauthorized(ReservationError):
    status, kind, title = 401, "unauthorized", "Authentication required"


class Forbidden(ReservationError):
    status, kind, title = 403, "forbidden", "Not allowed"


class NotFound(ReservationError):
    status, kind, title = 404, "not-found", "Not found"


class InvalidRequest(ReservationError):
    status, kind, title = 422, "invalid-request", "Invalid request"


class IdempotencyMismatch(InvalidRequest):
    kind, title = "idempotency-mismatch", "Idempotency key reused with another request"


class Conflict(ReservationError):
    status, kind, title = 409, "conflict", "Conflict"


class SoldOut(Conflict):
    kind, title = "sold-out", "Sold out"


class SalesPaused(Conflict):
    kind, title = "sales-paused", "Sales paused"


class HoldExpired(Conflict):
    kind, title = "hold-expired", "Hold expired"


class InFlight(Conflict):
    kind, title = "in-flight", "Request already in progress"


class PolicyForbids(Conflict):
    kind, title = "policy-forbids", "The event's policy does not allow this"


class Unavailable(ReservationError):
    status, kind, title = 503, "unavailable", "Temporarily unavailable"

    def __init__(self, detail: str = "", retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    kind, title = "overloaded", "Too many requests queued for this event"


class StoreUnavailable(Unavailable):
    kind, title = "store-unavailable", "The store is unavailable"


_BY_CODE: dict[Code, type[ReservationError]] = {
    Code.SOLD_OUT: SoldOut,
    Code.SALES_PAUSED: SalesPaused,
    Code.NOT_FOUND: NotFound,
    Code.HOLD_EXPIRED: HoldExpired,
    Code.CONFLICT: Conflict,
    Code.INVALID: InvalidRequest,
    Code.IDEMPOTENCY_MISMATCH: IdempotencyMismatch,
    Code.IN_FLIGHT: InFlight,
    Code.UNAVAILABLE: StoreUnavailable,
}


def error_for(code: Code, detail: str, **extra: Any) -> ReservationError:
    """The exception that answers a failed inventory outcome."""
    return _BY_CODE.get(code, ReservationError)(detail, **extra)


def kind_for(code: Code) -> str:
    return _BY_CODE.get(code, ReservationError).kind
