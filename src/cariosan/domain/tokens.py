"""User JWTs: HS256 with CARIOS_JWT_SECRET; CARIOS_JWT_SECRET_PREVIOUS still verifies."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from cariosan.errors import Unauthorized, ValidationFailed

ALGORITHM = "HS256"
MAX_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class TokenClaims:
    workspace_id: uuid.UUID
    user_id: str
    expires_at: int


def mint(secret: str, workspace_id: uuid.UUID, user_id: str, ttl_seconds: int) -> tuple[str, int]:
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValidationFailed(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    now = int(time.time())
    expires = now + ttl_seconds
    claims = {"sub": user_id, "ws": str(workspace_id), "iat": now, "exp": expires}
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
                options={"require": ["sub", "ws", "exp", "iat"]},
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
        return TokenClaims(workspace_id, user_id, int(claims["exp"]))
    raise Unauthorized("the token signature is not valid")
