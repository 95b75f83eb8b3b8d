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


def _decode(token: str, key: str) -> tuple[Principal, float]:
    try:
        payload = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
        return Principal(str(payload["sub"]), Role(payload["role"])), float(payload["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise Unauthorized("invalid or expired token") from exc


def read_token(token: str, key: str) -> Principal:
    """Check a token's signature and expiry; raise Unauthorized if either fails."""
    return _decode(token, key)[0]


class TokenReader:
    """Checks bearer tokens, remembering each verified one until it expires.

    A client sends the same token with every request, so its signature is checked once
    per process rather than once per request (HS256 verification through PyJWT costs
    more than the rest of the booking path's request handling). A remembered token is
    still refused from its ``exp`` on. At ``max_entries`` the oldest tenth is dropped.
    """

    def __init__(self, key: str, max_entries: int = 100_000) -> None:
        self._key = key
        self._max = max_entries
        self._seen: dict[str, tuple[Principal, float]] = {}

    def read(self, token: str, now: float | None = None) -> Principal:
        hit = self._seen.get(token)
        if hit is not None:
            if hit[1] > (time.time() if now is None else now):
                return hit[0]
            del self._seen[token]
            raise Unauthorized("invalid or expired token")
        principal, expires = _decode(token, self._key)
        if len(self._seen) >= self._max:
            for stale in list(self._seen)[: max(1, self._max // 10)]:
                del self._seen[stale]
        self._seen[token] = (principal, expires)
        return principal
