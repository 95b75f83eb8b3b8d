"""Liveness, readiness and metrics for operators."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import Response

from reservation.api import metrics
from reservation.api.deps import RuntimeDep
from reservation.api.problems import problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(rt: RuntimeDep) -> dict[str, Any] | Response:
    """Ready when the store answers and Ray is connected."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with rt.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"failed: {type(exc).__name__}"
    try:
        checks["ray"] = "ok" if ray.is_initialized() and await asyncio.to_thread(ray.nodes) else "not connected"
    except Exception as exc:
        checks["ray"] = f"failed: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return problem(
        503, "unavailable", "Not ready", "a dependency is down", {"Retry-After": "1"}, shed=False, checks=checks
    )


@router.get("/metrics", include_in_schema=False)
async def prometheus(rt: RuntimeDep) -> Response:
    rt.sample_gauges()  # this front end's own figures are fresh, the others' up to a flush old
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
