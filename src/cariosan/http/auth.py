"""Authentication and rate limiting as Litestar dependencies: `caller` for client endpoints,
`server` for the API-secret-only ones."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from cariosan.domain.auth import Caller, authenticate
from cariosan.domain.ratelimit import check_request
from cariosan.domain.workspaces import SECRET_PREFIX
from cariosan.errors import Forbidden, Unauthorized
from cariosan.http.middleware import RATE_LIMIT_KEY
from cariosan.services import Services

# Set in the `opt` of a route that sends a message: its request also counts against the
# sender's message burst limit, in the same round trip to the rate-limit store.
SENDS_MESSAGE = "sends_message"


def bearer_credential(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing Authorization: Bearer <API secret or user token>")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("the Authorization header must be 'Bearer <credential>'")
    return credential


async def _acting_user(request: Request[Any, Any, Any]) -> str | None:
    """`user_id` from the query, else from a JSON object body (API.md: "in the body or query")."""
    value = request.query_params.get("user_id")
    if isinstance(value, str):
        return value
    if request.method in ("POST", "PUT", "PATCH"):
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            return None  # the handler reports malformed JSON
        if isinstance(body, dict) and isinstance(body.get("user_id"), str):
            return str(body["user_id"])
    return None


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else "unknown"


async def _identify(
    request: Request[Any, Any, Any], services: Services, credential: str, act_as: str | None
) -> Caller:
    address = client_address(request)
    services.auth_failures.check(address)
    try:
        caller = await authenticate(
            services.db, services.token_checks, services.jwt_secrets, credential, act_as
        )
    except Unauthorized:
        await services.auth_failures.failed(address)
        raise
    state = await check_request(
        services.ephemeral,
        services.settings.limits,
        caller,
        sends_message=bool(request.route_handler.opt.get(SENDS_MESSAGE)),
    )
    request.scope[RATE_LIMIT_KEY] = state  # type: ignore[literal-required]
    return caller


async def provide_caller(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Caller:
    credential = bearer_credential(request)
    if credential.startswith(SECRET_PREFIX):
        act_as = await _acting_user(request)
    else:
        # A user token acts as its own user; naming another one is refused (403).
        act_as = request.query_params.get("user_id")
    return await _identify(request, services, credential, act_as)


async def provide_server(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Caller:
    caller = await _identify(request, services, bearer_credential(request), None)
    if not caller.is_server:
        raise Forbidden("this endpoint needs the workspace API secret, not a user token")
    return caller
