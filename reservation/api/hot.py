"""The hot routes, answered beneath FastAPI: what an on-sale peak hammers, and the probe.

FastAPI's per-request machinery (its middleware stack, dependency solving, body
handling and response validation) costs several times what the rest of a booking
costs a front end: on the 2-core machine, one worker with the actor call stubbed out
answered about 2,700 booking requests/s through FastAPI and 10,300/s through this
layer. ``ReservationApp`` therefore answers these routes itself:

    GET  /healthz
    POST /api/orders
    GET  /api/events/{event_id}   the public view (a host reading its own event: FastAPI)
    GET  /api/events              with page_size and cursor only (other filters: FastAPI)

with the same contract as the FastAPI routes, which stay: they document the API
(OpenAPI), answer everything else, and answer these too when ``hot_routes`` is off
(``RESERVATION_HOT_ROUTES=false``). Both share the services, the token reader, the
problem answers and the metrics; tests run the contract against both.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from reservation.api import metrics
from reservation.api.deps import bearer_token, check_idempotency_key, principal_for
from reservation.api.problems import body_too_large, response_for, validation_problem
from reservation.api.schemas import OrderCreate, order_json
from reservation.auth import Principal
from reservation.errors import InvalidRequest
from reservation.services.events import EventService
from reservation.services.orders import OrderService

if TYPE_CHECKING:
    from reservation.runtime import Runtime

JSON = b"application/json"
HEALTHY = orjson.dumps({"status": "ok"})


class Answer:
    """A finished response: status, JSON body and extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""


class HotRequest:
    """What a hot handler needs from the ASGI scope: headers, query, body."""

    __slots__ = ("headers", "param", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, param: str = "") -> None:
        self.scope = scope
        self.receive = receive
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.param = param

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks = []
        seen = 0
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Services:
    """What the hot handlers use, as plain attributes: each ``app.state`` lookup goes
    through Starlette's ``State.__getattr__``, about 1.3 µs on the 2-core machine, and
    a read used two of them (5% of what a front end spent on it)."""

    runtime: Runtime
    orders: OrderService
    events: EventService


Handler = Callable[[Services, HotRequest], Awaitable[Answer | None]]


# --------------------------------------------------------------- shared checks


def _principal(sv: Services, req: HotRequest, *, required: bool) -> Principal | None:
    return principal_for(sv.runtime, bearer_token(req.header(b"authorization")), required=required)


# --------------------------------------------------------------- handlers


async def healthz(sv: Services, req: HotRequest) -> Answer:
    return Answer(200, HEALTHY)


async def place_order(sv: Services, req: HotRequest) -> Answer:
    """Checks in FastAPI's order, so both layers answer a request with several faults alike:
    a body over the limit (413), JSON that does not parse (422), the token (401), the
    Idempotency-Key (422), the content type (422), then the order's fields (422)."""
    raw = await req.body(sv.runtime.settings.max_body_bytes)
    content_type = (req.header(b"content-type") or "").split(";", 1)[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    body: OrderCreate | None = None
    invalid: list[dict[str, Any]] = []
    if is_json:
        try:
            body = OrderCreate.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors()
            invalid = [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
            if any(e["type"] == "json_invalid" for e in errors):
                raise _BodyInvalid(invalid) from None
    who = _principal(sv, req, required=True)
    assert who is not None
    key = check_idempotency_key(req.header(b"idempotency-key"))
    if not is_json:
        raise _BodyInvalid([{"loc": ("body",), "msg": "send the order as application/json", "type": "content_type"}])
    if body is None:
        raise _BodyInvalid(invalid)
    view = await sv.orders.place(who, body, key)
    return Answer(201, order_json(view))


async def event_detail(sv: Services, req: HotRequest) -> Answer | None:
    viewer = _principal(sv, req, required=False)
    cached = sv.events.cached_public(req.param, viewer) or await sv.events.public(req.param, viewer)
    if cached is None:
        return None  # the host's own view: FastAPI reads, validates and writes it
    return Answer(200, *cached.encoded(req.headers.get(b"accept-encoding")))


_LIST_PARAMS = {"page_size", "cursor"}


def _list_query(raw: bytes) -> tuple[int, str | None] | None:
    """(page_size, cursor) of a list query this layer answers; None leaves it to FastAPI."""
    query = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in query]
    if not set(names) <= _LIST_PARAMS or len(names) != len(set(names)):
        return None  # search and date filters, repeated parameters: FastAPI checks them
    params = dict(query)
    page_size = params.get("page_size", "20")
    if not page_size.isdigit() or int(page_size) < 1:
        return None  # FastAPI's own message for a malformed integer
    cursor = params.get("cursor") or None
    if cursor is not None and len(cursor) > 500:
        return None
    return int(page_size), cursor


# Parsed list queries: browsing clients repeat the same few, byte for byte.
_LIST_QUERIES: dict[bytes, tuple[int, str | None] | None] = {}


async def event_list(sv: Services, req: HotRequest) -> Answer | None:
    raw: bytes = req.scope["query_string"]
    if raw in _LIST_QUERIES:
        parsed = _LIST_QUERIES[raw]
    else:
        parsed = _list_query(raw)
        if len(_LIST_QUERIES) >= 1024:
            _LIST_QUERIES.clear()
        _LIST_QUERIES[raw] = parsed
    if parsed is None:
        return None
    page_size, cursor = parsed
    limit = sv.runtime.settings.max_page_size
    if page_size > limit:
        raise InvalidRequest(f"page_size is at most {limit}")
    events = sv.events
    cached = events.cached_page(cursor, page_size) or await events.browse(
        text=None, starts_from=None, starts_to=None, cursor=cursor, limit=page_size
    )
    return Answer(200, *cached.encoded(req.headers.get(b"accept-encoding")))


class _BodyInvalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors


_EXACT: dict[tuple[str, str], tuple[str, Handler]] = {
    ("GET", "/healthz"): ("/healthz", healthz),
    ("POST", "/api/orders"): ("/api/orders", place_order),
    ("GET", "/api/events"): ("/api/events", event_list),
}
_EVENT_PREFIX = "/api/events/"
# The buffered metric children of each (method, route, status), looked up once.
_METRIC_CHILDREN: dict[tuple[str, str, int], tuple[metrics.BufferedCount, metrics.BufferedHistogram]] = {}


class ReservationApp(FastAPI):
    """FastAPI, with the hot routes answered before its own stack (see the module doc)."""

    hot_routes: bool = True
    # Set with ``use``, for the hot routes and FastAPI's alike (``deps``); until then
    # every request goes to FastAPI's stack.
    services: Services | None = None

    def use(self, runtime: Runtime) -> None:
        """Answer with this runtime's services."""
        self.services = Services(runtime, OrderService(runtime), EventService(runtime))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_routes and scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            found = _EXACT.get((method, path))
            param = ""
            if found is None and method == "GET" and path.startswith(_EVENT_PREFIX):
                param = path[len(_EVENT_PREFIX) :]
                if param and "/" not in param:
                    found = ("/api/events/{event_id}", event_detail)
            if found is not None and await self._serve(found, scope, receive, send, param):
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, found: tuple[str, Handler], scope: Scope, receive: Receive, send: Send, param: str) -> bool:
        """Answer the request; False hands it, untouched, to FastAPI."""
        services = self.services
        if services is None:
            return False
        route, handler = found
        started = time.perf_counter()
        method = scope["method"]
        try:
            answer = await handler(services, HotRequest(scope, receive, param))
        except _TooLarge:
            response = body_too_large(services.runtime.settings.max_body_bytes)
            status = await _send_response(response, scope, receive, send)
        except _BodyInvalid as exc:
            status = await _send_response(validation_problem(exc.errors), scope, receive, send)
        except _Disconnected:
            return True
        except Exception as exc:  # the same answers as FastAPI's exception handlers
            status = await _send_response(response_for(exc, method, scope["path"]), scope, receive, send)
        else:
            if answer is None:
                return False
            status = answer.status
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", JSON),
                        (b"content-length", str(len(answer.body)).encode()),
                        *answer.headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer.body})
        children = _METRIC_CHILDREN.get((method, route, status))
        if children is None:
            children = _METRIC_CHILDREN[(method, route, status)] = (
                metrics.counter(metrics.REQUESTS, method, route, str(status)),
                metrics.histogram(metrics.LATENCY, method, route),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        return True


async def _send_response(response: Any, scope: Scope, receive: Receive, send: Send) -> int:
    await response(scope, receive, send)
    return int(response.status_code)
