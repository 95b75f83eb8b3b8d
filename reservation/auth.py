"""Passwords (argon2) and signed bearer tokens (JWT, HS256).

Tokens carry the account id and role and are checked without a database round
trip, which keeps the booking path to the actor's one group commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from reservation.errors import Unauthorized

_hasher = PasswordHasher()
ALGORITHM = "HS256"
# A fixed hash to verify against when the account is unknown, so that timing does not
# tell which emails are registered.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class Role(StrEnum):
    CUSTOMER = "customer"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    role: Role


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; constant work whether or not the account exists."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def issue_token(principal: Principal, key: str, ttl_s: int, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    payload = {"sub": principal.account_id, "role": principal.role.value, "iat": issued, "exp": issued + ttl_s}
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def read_token(token: str, key: str) -> Principal:
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
        return Principal(str(payload["sub"]), Role(payload["role"]))
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise Unauthorized("invalid or expired token") from exc
