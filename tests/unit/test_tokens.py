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
