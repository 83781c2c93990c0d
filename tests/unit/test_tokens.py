from __future__ import annotations

import time
import uuid

import pytest

from cariosan.domain import tokens
from cariosan.errors import Unauthorized

SECRET = "s" * 40
OTHER = "o" * 40


def test_a_verified_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token, expires = tokens.mint(SECRET, uuid.uuid4(), "alice", 60)
    assert tokens.verify(token, [SECRET]).user_id == "alice"
    assert tokens.verify(token, [SECRET]).user_id == "alice"  # served from the cache
    monkeypatch.setattr(time, "time", lambda: expires + 1)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token, [SECRET])


def test_the_cache_never_vouches_for_other_secrets() -> None:
    token, _ = tokens.mint(SECRET, uuid.uuid4(), "bob", 60)
    assert tokens.verify(token, [OTHER, SECRET]).user_id == "bob"
    with pytest.raises(Unauthorized, match="signature"):
        tokens.verify(token, [OTHER])


def test_issue_time_is_kept_to_the_microsecond_and_iat_stays_whole_seconds() -> None:
    second = int(time.time())
    issued = second * 1_000_000 + 123_456
    token, expires = tokens.mint(SECRET, uuid.uuid4(), "alice", 60, issued_at_us=issued)
    claims = tokens.verify(token, [SECRET])
    assert claims.issued_at_us == issued
    assert expires == second + 60
    assert claims.key_id == tokens.fingerprint(SECRET) != tokens.fingerprint(OTHER)
    assert SECRET not in claims.key_id


def _signed(claims: dict[str, object]) -> str:
    import jwt

    return jwt.encode(claims, SECRET, algorithm=tokens.ALGORITHM)


def test_a_token_without_iat_us_counts_from_the_start_of_its_second() -> None:
    now = int(time.time())
    claims = {"sub": "old", "ws": str(uuid.uuid4()), "iat": now, "exp": now + 60}
    assert tokens.verify(_signed(claims), [SECRET]).issued_at_us == now * 1_000_000


@pytest.mark.parametrize("iat_us", ["1", 1.5, True, 0, 10**30])
def test_an_iat_us_that_is_not_the_same_instant_as_iat_is_refused(iat_us: object) -> None:
    now = int(time.time())
    claims = {"sub": "x", "ws": str(uuid.uuid4()), "iat": now, "exp": now + 60, "iat_us": iat_us}
    with pytest.raises(Unauthorized, match="malformed"):
        tokens.verify(_signed(claims), [SECRET])
