"""RFC 9457 problem details: every error leaves the API as ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from reservation.api import metrics
from reservation.errors import PROBLEM_BASE, ReservationError, Unauthorized, Unavailable

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"

_HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    *,
    shed: bool = True,
    **extra: Any,
) -> Response:
    """A problem answer. Every 503 the server gives is made here, and counted here as a
    request shed, by its kind: ``overloaded`` (an event's queue was full),
    ``store-unavailable``, ``unavailable``. A probe's answer (``shed=False``) sheds no
    request and is not counted."""
    if status == 503 and shed:
        metrics.counter(metrics.SHED, kind).inc()
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _jsonable(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def body_too_large(limit: int) -> Response:
    return problem(413, "body-too-large", "Request body too large", f"bodies are limited to {limit} bytes")


def validation_problem(errors: Any) -> Response:
    return problem(
        422, "invalid-request", "Invalid request", "the request does not match the schema", errors=_jsonable(errors)
    )


def response_for(exc: Exception, method: str = "", path: str = "") -> Response:
    """The problem answer for an exception, wherever in the app it was raised."""
    if isinstance(exc, ReservationError):
        headers: dict[str, str] = {}
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return problem(exc.status, exc.kind, exc.title, exc.detail, headers, **exc.extra)
    if isinstance(exc, RequestValidationError):
        return validation_problem(exc.errors())
    if isinstance(exc, StarletteHTTPException):
        kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(exc.status_code, kind, title, str(exc.detail), dict(exc.headers or {}))
    if isinstance(exc, IntegrityError):
        return problem(409, "conflict", "Conflict", "the change conflicts with stored data")
    if isinstance(exc, DBAPIError):
        log.warning("store error on %s %s: %s", method, path, exc.orig)
        return problem(
            503, "store-unavailable", "The store is unavailable", "the database did not answer; retry",
            {"Retry-After": "1"},
        )
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return problem(500, "internal", "Internal error", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    """Map the exception tree, validation errors and routing errors to problems."""

    async def handle(request: Request, exc: Exception) -> Response:
        return response_for(exc, request.method, request.url.path)

    for kind in (ReservationError, RequestValidationError, StarletteHTTPException, DBAPIError, Exception):
        app.add_exception_handler(kind, handle)
