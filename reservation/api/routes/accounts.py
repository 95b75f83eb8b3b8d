"""Registration, login (bearer tokens) and the caller's own account."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from reservation.api.deps import CurrentUser, RuntimeDep
from reservation.api.schemas import TokenCreate, TokenRead, UserCreate, UserRead
from reservation.auth import Principal, Role, hash_password, issue_token, verify_password
from reservation.domain.ids import new_id
from reservation.errors import NotFound, Unauthorized
from reservation.services.orders import utc
from reservation.store import accounts
from reservation.store.inventory import to_dt

router = APIRouter(prefix="/api", tags=["accounts"])


@router.post("/users", status_code=201, response_model=UserRead)
async def register(body: UserCreate, rt: RuntimeDep) -> dict[str, object]:
    """Register a customer or a host account."""
    now = to_dt(time.time())
    row = {
        "id": new_id(),
        "name": body.name,
        "email": body.email.lower(),
        # Hashing is deliberately slow: keep it off the event loop.
        "password_hash": await asyncio.to_thread(hash_password, body.password),
        "role": body.role.value,
        "created_at": now,
        "updated_at": now,
    }
    await accounts.create_user(rt.writer, row)
    return {**row, "created_at": utc(now)}


@router.post("/tokens", status_code=201, response_model=TokenRead)
async def login(body: TokenCreate, rt: RuntimeDep) -> dict[str, object]:
    """Exchange email and password for a bearer token."""
    user = await accounts.find_by_email(rt.reader, body.email.lower())
    ok = await asyncio.to_thread(verify_password, user["password_hash"] if user else None, body.password)
    if not ok or user is None:
        raise Unauthorized("wrong email or password")
    principal = Principal(user["id"], Role(user["role"]))
    ttl = rt.settings.token_ttl_s
    return {
        "access_token": issue_token(principal, rt.signing_key, ttl),
        "expires_in": ttl,
        "account_id": principal.account_id,
        "role": principal.role,
    }


@router.get("/users/me", response_model=UserRead)
async def me(who: CurrentUser, rt: RuntimeDep) -> dict[str, object]:
    user = await accounts.get_user(rt.reader, who.account_id)
    if user is None:
        raise NotFound("the account no longer exists")
    return {**user, "created_at": utc(user["created_at"])}
