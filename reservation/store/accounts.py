"""Accounts: customers and hosts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from reservation.errors import Conflict
from reservation.store.schema import users


async def create_user(engine: AsyncEngine, row: dict[str, Any]) -> None:
    try:
        async with engine.begin() as conn:
            await conn.execute(users.insert(), row)
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists") from exc


async def find_by_email(engine: AsyncEngine, email: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.email == email))).first()
    return None if row is None else dict(row._mapping)


async def get_user(engine: AsyncEngine, user_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return None if row is None else dict(row._mapping)
