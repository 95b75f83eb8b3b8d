"""Bearer tokens: issued, checked once per process, refused once expired or forged."""

from __future__ import annotations

import time

import pytest

from reservation.auth import Principal, Role, TokenReader, issue_token
from reservation.errors import Unauthorized

KEY = "k" * 40
WHO = Principal("acc-1", Role.CUSTOMER)


def test_valid_token_is_read_and_remembered() -> None:
    reader = TokenReader(KEY)
    token = issue_token(WHO, KEY, ttl_s=60)
    assert reader.read(token) == WHO
    assert reader.read(token) == WHO
    assert len(reader._seen) == 1


def test_remembered_token_is_refused_from_its_expiry_on() -> None:
    reader = TokenReader(KEY)
    now = time.time()
    token = issue_token(WHO, KEY, ttl_s=60, now=now)
    assert reader.read(token, now=now) == WHO
    with pytest.raises(Unauthorized):
        reader.read(token, now=now + 61)
    # Forgotten, then checked again in full (and refused by PyJWT's own clock check).
    assert token not in reader._seen
    expired = issue_token(WHO, KEY, ttl_s=60, now=now - 120)
    with pytest.raises(Unauthorized):
        reader.read(expired)


@pytest.mark.parametrize(
    "token",
    [
        issue_token(WHO, "another-key" * 4, ttl_s=60),
        issue_token(WHO, KEY, ttl_s=60)[:-2] + "xx",
        "not-a-token",
        "",
    ],
    ids=["other key", "bad signature", "garbage", "empty"],
)
def test_forged_or_broken_tokens_are_refused_and_not_remembered(token: str) -> None:
    reader = TokenReader(KEY)
    with pytest.raises(Unauthorized):
        reader.read(token)
    with pytest.raises(Unauthorized):
        reader.read(token)
    assert reader._seen == {}


def test_memory_is_bounded() -> None:
    reader = TokenReader(KEY, max_entries=10)
    tokens = [issue_token(Principal(f"acc-{n}", Role.CUSTOMER), KEY, ttl_s=60) for n in range(25)]
    for n, token in enumerate(tokens):
        assert reader.read(token).account_id == f"acc-{n}"
        assert len(reader._seen) <= 10
    assert tokens[-1] in reader._seen and tokens[0] not in reader._seen
