"""How chat objects look to clients: in HTTP responses, events, and webhook payloads alike.

They are msgspec structs so that one definition serves the API responses (http/), the event
payloads stored for catch-up (db/events.py) and the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class UserView(msgspec.Struct):
    id: str
    name: str | None
    image_url: str | None
    role: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_active_at: datetime | None
    deleted_at: datetime | None


class AttachmentRef(msgspec.Struct):
    id: str
    filename: str
    content_type: str
    size: int


class MessageView(msgspec.Struct):
    id: str
    channel_id: str
    user_id: str
    text: str
    parent_id: str | None
    reply_count: int
    attachments: list[AttachmentRef]
    mentions: list[str]
    reactions: dict[str, int]
    own_reactions: list[str]
    data: dict[str, Any]
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    # True only for a reader who mutes the author (PUT /v1/users/{id}/mute); false for everyone
    # else, in events shared by all members and in webhook bodies.
    muted: bool = False
    # Pins (issue 14): null when not pinned; pinned_by null also when the backend pinned it.
    pinned_at: datetime | None = None
    pinned_by: str | None = None


class MemberView(msgspec.Struct):
    user_id: str
    role: str
    joined_at: datetime


class ChannelView(msgspec.Struct):
    id: str
    type: str
    name: str | None
    data: dict[str, Any]
    created_by: str | None
    member_count: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_message: MessageView | None = None
    last_message_at: datetime | None = None
    unread_count: int = 0
    # Present on single-channel reads (GET /v1/channels/{id} and after changes).
    members: list[MemberView] | None = None
    # The reader muted the channel (PUT /v1/channels/{id}/mute); false in events.
    muted: bool = False
    # Slow mode (0: off) and freeze (issue 14).
    cooldown_seconds: int = 0
    frozen: bool = False


def to_payload(value: msgspec.Struct) -> dict[str, Any]:
    """A view as plain JSON-ready data, for event payloads."""
    result: dict[str, Any] = msgspec.to_builtins(value)
    return result
