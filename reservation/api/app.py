"""The FastAPI application of one front-end process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ray
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reservation import __version__, gc_tuning
from reservation.api import metrics, problems
from reservation.api.hot import ReservationApp
from reservation.api.routes import accounts, events, ops, orders
from reservation.cluster import join_ray
from reservation.config import Settings, get_settings
from reservation.runtime import Runtime

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (declared or streamed) with 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(413, f"bodies are limited to {self.limit} bytes")
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await problems.body_too_large(self.limit)({"type": "http"}, _no_body, send)


class _TooLarge(HTTPException):
    """A streamed body passed the limit. An HTTPException, because FastAPI turns any
    other error raised while it reads a body into a 400; the problem handler answers 413."""


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Metrics:
    """Count and time every request by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            metrics.counter(metrics.REQUESTS, method, path, str(status)).inc()
            metrics.histogram(metrics.LATENCY, method, path).observe(time.perf_counter() - started)


def _connect_ray(settings: Settings) -> None:
    """Join Ray once per process, keeping uvicorn's SIGTERM handler (see ``join_ray``)."""
    if not ray.is_initialized():
        join_ray(settings, keep_sigterm=True)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; without ``runtime`` one is made at start-up (joining Ray)."""
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: ReservationApp) -> AsyncIterator[None]:
        owned = app.services is None
        if owned:
            _connect_ray(settings)
            app.use(Runtime.create(settings))
        assert app.services is not None
        rt = app.services.runtime
        # Everything loaded so far lives as long as the process: out of the cyclic
        # collector's sight, its full passes walk only what requests create.
        gc.collect()
        gc.freeze()
        gc_tuning.tune()
        metrics.count_from_zero()
        flushing = asyncio.create_task(metrics.flush_periodically(sample=rt.sample_gauges))
        try:
            yield
        finally:
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            if owned:
                await rt.close()

    app = ReservationApp(
        title="Reservation server",
        version=__version__,
        description="Book events at on-sale peaks: per-event actors, durable group-committed bookings.",
        lifespan=lifespan,
    )
    app.hot_routes = settings.hot_routes
    if runtime is not None:
        app.use(runtime)
    problems.install(app)
    for module in (accounts, events, orders, ops):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Metrics)
    return app


def __getattr__(name: str) -> Any:
    # `uvicorn reservation.api.app:app` builds the app from the environment on demand.
    if name == "app":
        return create_app()
    raise AttributeError(name)
