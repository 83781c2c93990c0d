"""User JWTs: HS256 with CARIOS_JWT_SECRET; CARIOS_JWT_SECRET_PREVIOUS still verifies.

Issue time. Besides the standard `iat` (whole seconds, for any JWT tooling), a token carries
`iat_us`: the same instant in microseconds, taken from PostgreSQL's clock when it is minted. A
revocation stores the user's `tokens_valid_after` from that same clock, so "issued before the
revocation" is decided on one clock at the database's own precision: a token minted in the same
second but after a revoke works, one minted a millisecond before it does not, whatever the
clocks of the server nodes say. A token without `iat_us` (minted by an older release) counts as
issued at the start of its `iat` second, which can only make it refused earlier, never later.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from cariosan.errors import Unauthorized, ValidationFailed

ALGORITHM = "HS256"
MAX_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class TokenClaims:
    workspace_id: uuid.UUID
    user_id: str
    expires_at: int
    # When it was minted, in microseconds since the epoch (see the module docstring).
    issued_at_us: int = 0
    # Which secret verified it (`fingerprint`): a socket is closed once that secret is retired.
    key_id: str = ""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """A timestamp as whole microseconds since the epoch (exact: no float on the way)."""
    return (moment - _EPOCH) // (datetime.min.replace(microsecond=1) - datetime.min)


def fingerprint(secret: str) -> str:
    """Names a JWT secret in the database and in notices without revealing it."""
    return hashlib.sha256(b"cariosan-jwt-key\0" + secret.encode()).hexdigest()


def mint(
    secret: str,
    workspace_id: uuid.UUID,
    user_id: str,
    ttl_seconds: int,
    *,
    issued_at_us: int | None = None,
) -> tuple[str, int]:
    """A token for the user; `issued_at_us` comes from the database clock (module docstring)."""
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValidationFailed(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    if issued_at_us is None:
        issued_at_us = time.time_ns() // 1000
    now = issued_at_us // 1_000_000
    expires = now + ttl_seconds
    claims = {
        "sub": user_id,
        "ws": str(workspace_id),
        "iat": now,
        "iat_us": issued_at_us,
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


# Verified tokens, so that a client's every request does not pay for HMAC and JSON decoding
# again. Keyed by the token and the secrets that verified it; expiry is checked on every use.
_VERIFIED: OrderedDict[tuple[str, tuple[str, ...]], TokenClaims] = OrderedDict()
_VERIFIED_MAX = 10_000


def verify(token: str, secrets: list[str]) -> TokenClaims:
    """Claims of a valid token, or UNAUTHORIZED. Only HS256 is accepted (never `none`)."""
    key = (token, tuple(secrets))
    cached = _VERIFIED.get(key)
    if cached is not None:
        if cached.expires_at <= time.time():
            del _VERIFIED[key]
            raise Unauthorized("the token has expired")
        _VERIFIED.move_to_end(key)
        return cached
    claims = _verify(token, secrets)
    _VERIFIED[key] = claims
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return claims


def _verify(token: str, secrets: list[str]) -> TokenClaims:
    for secret in secrets:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                # `iat` comes from the database clock, which may run a little ahead of this
                # node's: a fresh token is not "from the future". Expiry is still checked.
                options={"require": ["sub", "ws", "exp", "iat"], "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token is malformed") from None
        try:
            workspace_id = uuid.UUID(str(claims["ws"]))
        except ValueError:
            raise Unauthorized("the token is malformed") from None
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not user_id:
            raise Unauthorized("the token is malformed")
        issued = _issued_at_us(claims)
        return TokenClaims(workspace_id, user_id, int(claims["exp"]), issued, fingerprint(secret))
    raise Unauthorized("the token signature is not valid")


def _issued_at_us(claims: dict[str, object]) -> int:
    iat, iat_us = claims["iat"], claims.get("iat_us")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise Unauthorized("the token is malformed")
    if iat_us is None:
        return int(iat) * 1_000_000
    if isinstance(iat_us, bool) or not isinstance(iat_us, int) or iat_us // 1_000_000 != int(iat):
        raise Unauthorized("the token is malformed")
    return iat_us
