"""Request dependencies, as ``Annotated`` aliases: who is calling, and the services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from reservation.auth import Principal, Role
from reservation.errors import Forbidden, InvalidRequest, Unauthorized
from reservation.runtime import Runtime
from reservation.services.events import EventService
from reservation.services.orders import OrderService

if TYPE_CHECKING:
    from reservation.api.hot import Services

# Every dependency is `async def`: FastAPI runs plain `def` dependencies in a thread
# pool, a thread hop per dependency per request on the hot path.
_bearer = HTTPBearer(auto_error=False, description="token from POST /api/tokens")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None, as ``HTTPBearer`` reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def principal_for(rt: Runtime, token: str | None, *, required: bool) -> Principal | None:
    """Who a bearer token speaks for; without one, None or (``required``) 401."""
    if token is None:
        if required:
            raise Unauthorized("send a bearer token (POST /api/tokens)")
        return None
    principal: Principal = rt.tokens.read(token)
    return principal


def check_idempotency_key(key: str | None) -> str | None:
    if key is not None and (not 1 <= len(key) <= 255 or not key.isprintable()):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable characters")
    return key


def services(request: Request) -> Services:
    """The app's services (``ReservationApp.use``), there once it has started."""
    found: Services | None = request.app.services
    assert found is not None, "the app serves requests only once it has started"
    return found


async def runtime(request: Request) -> Runtime:
    return services(request).runtime


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    token = None if credentials is None else credentials.credentials
    principal = principal_for(services(request).runtime, token, required=True)
    assert principal is not None
    return principal


async def optional_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    token = None if credentials is None else credentials.credentials
    return principal_for(services(request).runtime, token, required=False)


async def current_host(who: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if who.role is not Role.HOST:
        raise Forbidden("this needs a host account")
    return who


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="retries with the same key and body get the first answer and book once",
        ),
    ] = None,
) -> str | None:
    return check_idempotency_key(key)


async def order_service(request: Request) -> OrderService:
    return services(request).orders


async def event_service(request: Request) -> EventService:
    return services(request).events


RuntimeDep = Annotated[Runtime, Depends(runtime)]
CurrentUser = Annotated[Principal, Depends(current_principal)]
MaybeUser = Annotated[Principal | None, Depends(optional_principal)]
CurrentHost = Annotated[Principal, Depends(current_host)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
Orders = Annotated[OrderService, Depends(order_service)]
Events = Annotated[EventService, Depends(event_service)]
