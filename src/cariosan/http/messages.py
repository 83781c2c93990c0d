"""Client endpoints for messages: send, history, threads, edit, delete, reactions, search."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from cariosan.domain import messages, reactions, search
from cariosan.domain.auth import Caller
from cariosan.domain.views import MessageView
from cariosan.http.auth import SENDS_MESSAGE
from cariosan.services import Services

# Every body may name `user_id`: the backend (API secret) acts as that user (see http/auth.py).


class MessageIn(msgspec.Struct):
    text: str = ""
    id: str | None = None
    parent_id: str | None = None
    attachment_ids: list[str] = msgspec.field(default_factory=list)
    mentions: list[str] = msgspec.field(default_factory=list)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    user_id: str | None = None


class MessagePatch(msgspec.Struct):
    text: str
    user_id: str | None = None


class MessagePage(msgspec.Struct):
    messages: list[MessageView]
    has_more: bool


class SearchResults(msgspec.Struct):
    messages: list[MessageView]


@post(
    "/v1/channels/{channel_id:str}/messages",
    status_code=201,
    tags=["messages"],
    # Counted against the sender's message burst limit with the request (http/auth.py).
    opt={SENDS_MESSAGE: True},
    responses={
        200: ResponseSpec(
            data_container=MessageView,
            description="A message with this `id` exists already: the original, not a duplicate",
        )
    },
)
async def send_message(
    channel_id: FromPath[str],
    data: JSONBody[MessageIn],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> Response[MessageView]:
    """Send a message (201). Sending the same `id` again returns the original with 200."""
    view, created = await messages.post_message(
        services.db,
        services.sends,
        services.blobs,
        services.settings.limits,
        caller,
        channel_id,
        messages.Draft(
            text=data.text,
            id=data.id,
            parent_id=data.parent_id,
            attachment_ids=data.attachment_ids,
            mentions=data.mentions,
            data=data.data,
        ),
    )
    return Response(view, status_code=201 if created else 200)


@get("/v1/channels/{channel_id:str}/messages", tags=["messages"])
async def list_messages(
    channel_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    limit: FromQuery[int] = messages.DEFAULT_PAGE,
    before: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> MessagePage:
    """Top-level messages, oldest first: the latest `limit`, or those just before or after a
    message (`has_more`: more lie in that direction)."""
    page = await messages.list_messages(
        services.db, caller, channel_id, limit=limit, before=before, after=after
    )
    return MessagePage(messages=page.messages, has_more=page.has_more)


@patch("/v1/messages/{message_id:str}", tags=["messages"])
async def edit_message(
    message_id: FromPath[str],
    data: JSONBody[MessagePatch],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> MessageView:
    """Replace the text (the author, admin users, the backend); `edited_at` is set."""
    return await messages.edit_message(
        services.db, services.settings.limits, caller, message_id, data.text
    )


@delete("/v1/messages/{message_id:str}", status_code=204, tags=["messages"])
async def delete_message(
    message_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> None:
    """Soft-delete (the author, the channel's owner, admin users, the backend)."""
    await messages.delete_message(services.db, caller, message_id)


@get("/v1/messages/{message_id:str}/replies", tags=["messages"])
async def list_replies(
    message_id: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    limit: FromQuery[int] = messages.DEFAULT_PAGE,
    before: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> MessagePage:
    """The thread's replies, oldest first, paged like a channel's messages."""
    page = await messages.list_replies(
        services.db, caller, message_id, limit=limit, before=before, after=after
    )
    return MessagePage(messages=page.messages, has_more=page.has_more)


@put("/v1/messages/{message_id:str}/reactions/{type:str}", status_code=200, tags=["messages"])
async def add_reaction(
    message_id: FromPath[str],
    type: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> MessageView:
    """Add the caller's reaction (idempotent); the message with its reaction counts."""
    return await reactions.add_reaction(services.db, caller, message_id, type)


@delete("/v1/messages/{message_id:str}/reactions/{type:str}", status_code=200, tags=["messages"])
async def remove_reaction(
    message_id: FromPath[str],
    type: FromPath[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
) -> MessageView:
    """Remove the caller's reaction (idempotent); the message with its reaction counts."""
    return await reactions.remove_reaction(services.db, caller, message_id, type)


@get("/v1/search", tags=["messages"])
async def search_messages(
    q: FromQuery[str],
    caller: NamedDependency[Caller],
    services: NamedDependency[Services],
    channel_id: FromQuery[str | None] = None,
    limit: FromQuery[int] = search.DEFAULT_LIMIT,
) -> SearchResults:
    """Messages matching every word of `q`, newest first, from the caller's channels."""
    found = await search.search_messages(services.db, caller, q, channel_id=channel_id, limit=limit)
    return SearchResults(messages=found)


ROUTES = [
    send_message,
    list_messages,
    edit_message,
    delete_message,
    list_replies,
    add_reaction,
    remove_reaction,
    search_messages,
]
