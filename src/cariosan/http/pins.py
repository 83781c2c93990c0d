"""Pins: `PUT`/`DELETE /v1/messages/{id}/pin` (the channel's moderators) and
`GET /v1/channels/{id}/pins` (its members)."""

from __future__ import annotations

import msgspec
from litestar import delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath

from cariosan.domain import pins
from cariosan.domain.auth import Caller
from cariosan.domain.views import MessageView
from cariosan.services import Services


class PinList(msgspec.Struct):
    messages: list[MessageView]


@put("/v1/messages/{message_id:str}/pin", status_code=200, tags=["moderation"])
async def pin_message(
    message_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> MessageView:
    """Pin a top-level message (again: no change); the message with `pinned_at`, `pinned_by`."""
    return await pins.set_pinned(services.db, caller, message_id, pinned=True)


@delete("/v1/messages/{message_id:str}/pin", status_code=200, tags=["moderation"])
async def unpin_message(
    message_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> MessageView:
    """Unpin a message (not pinned: no change); the message."""
    return await pins.set_pinned(services.db, caller, message_id, pinned=False)


@get("/v1/channels/{channel_id:str}/pins", tags=["moderation"])
async def list_pins(
    channel_id: FromPath[str], caller: NamedDependency[Caller], services: NamedDependency[Services]
) -> PinList:
    """The channel's pinned messages, most recently pinned first (at most 100)."""
    return PinList(messages=await pins.list_pins(services.db, caller, channel_id))


ROUTES = [pin_message, unpin_message, list_pins]
