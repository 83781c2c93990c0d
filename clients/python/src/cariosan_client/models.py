"""What the API returns, as typed, immutable `msgspec` structs decoded straight from JSON.

Decoding is lenient: fields this SDK does not know are ignored, so a newer server never breaks an
older SDK, and fields that may be absent default to None (or an empty list/dict). Times are
timezone-aware `datetime`s (UTC), decoded from the RFC 3339 strings of the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "Attachment",
    "Ban",
    "BanPage",
    "Block",
    "BlockPage",
    "Channel",
    "ChannelPage",
    "Delivery",
    "DeliveryPage",
    "Download",
    "Flag",
    "FlagPage",
    "Me",
    "Member",
    "Message",
    "MessagePage",
    "Token",
    "Upload",
    "User",
    "Webhook",
]


class User(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    name: str | None = None
    image_url: str | None = None
    role: str = "user"
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: datetime
    updated_at: datetime | None = None
    last_active_at: datetime | None = None
    deleted_at: datetime | None = None


class Token(msgspec.Struct, kw_only=True, frozen=True):
    """A user JWT for `ChatClient`, minted by `ServerClient.create_token`."""

    token: str
    expires_at: datetime


class Attachment(msgspec.Struct, kw_only=True, frozen=True):
    """An attachment as referenced by a message."""

    id: str
    filename: str
    content_type: str
    size: int


class Message(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    channel_id: str
    user_id: str
    text: str = ""
    parent_id: str | None = None
    reply_count: int = 0
    attachments: list[Attachment] = msgspec.field(default_factory=list)
    mentions: list[str] = msgspec.field(default_factory=list)
    reactions: dict[str, int] = msgspec.field(default_factory=dict)
    own_reactions: list[str] = msgspec.field(default_factory=list)
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: datetime
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    # True when the reading user mutes the author (`mute_user`); false for everyone else.
    muted: bool = False
    # Pins: None when not pinned; `pinned_by` None also when the backend pinned it as itself.
    pinned_at: datetime | None = None
    pinned_by: str | None = None


class Member(msgspec.Struct, kw_only=True, frozen=True):
    user_id: str
    role: str = "member"
    joined_at: datetime | None = None


class Channel(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    type: str
    name: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    member_count: int = 0
    last_message: Message | None = None
    last_message_at: datetime | None = None
    unread_count: int = 0
    # Present on single-channel reads (get_channel, create_channel, update_channel, add_members).
    members: list[Member] | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    # The reading user muted the channel (`mute_channel`): it does not count in total_unread.
    muted: bool = False
    # Slow mode: members send once per `cooldown_seconds` (0: off); frozen: only moderators send.
    cooldown_seconds: int = 0
    frozen: bool = False


class ChannelPage(msgspec.Struct, kw_only=True, frozen=True):
    """Channels, newest activity first; pass `next_cursor` back to get the next page."""

    channels: list[Channel] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


class MessagePage(msgspec.Struct, kw_only=True, frozen=True):
    """Messages oldest first; `has_more` says whether older (or newer, with `after`) ones exist."""

    messages: list[Message] = msgspec.field(default_factory=list)
    has_more: bool = False


class Me(msgspec.Struct, kw_only=True, frozen=True):
    user: User
    total_unread: int = 0


class Upload(msgspec.Struct, kw_only=True, frozen=True):
    """Where to PUT an attachment's bytes; reference `attachment_id` in `send` afterwards."""

    attachment_id: str
    upload_url: str
    upload_method: str = "PUT"
    upload_headers: dict[str, str] = msgspec.field(default_factory=dict)
    expires_at: datetime | None = None


class Download(msgspec.Struct, kw_only=True, frozen=True):
    """A presigned GET URL for an attachment, valid until `expires_at`."""

    url: str
    expires_at: datetime | None = None
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None


class Webhook(msgspec.Struct, kw_only=True, frozen=True):
    """A webhook endpoint; `secret` (for verifying signatures) is only set when just created."""

    id: str
    url: str
    events: list[str] = msgspec.field(default_factory=list)
    secret: str | None = None
    created_at: datetime | None = None


class Delivery(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    event_type: str
    seq: int | None = None
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None


class UserPage(msgspec.Struct, kw_only=True, frozen=True):
    """A page of the user directory (`list_users`); pass `next_cursor` back for the next."""

    users: list[User] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


class DeliveryPage(msgspec.Struct, kw_only=True, frozen=True):
    deliveries: list[Delivery] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


class AuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    """A moderation or admin action: `actor` is a user id, "backend" or "operator"."""

    id: str
    actor: str
    action: str
    target: str | None = None
    reason: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: datetime


class AuditPage(msgspec.Struct, kw_only=True, frozen=True):
    entries: list[AuditEntry] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


# Flags and the review queue (issue 14 point 4).


class Flag(msgspec.Struct, kw_only=True, frozen=True):
    """A report of a message (`message_id` set) or of a user, for the workspace's moderators.

    `user_id` is the user it is about (a message flag: the message's author); `reporter_id` a
    user id or "backend". `message` is the message as it is now (None for a user flag);
    `context`, in the review queue, a few messages around it, oldest first, itself included.
    """

    id: str
    message: Message | None = None
    message_id: str | None = None
    channel_id: str | None = None
    user_id: str
    reporter_id: str
    reason: str | None = None
    status: str = "open"
    created_at: datetime
    resolution: str | None = None
    resolution_reason: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    context: list[Message] | None = None


class FlagPage(msgspec.Struct, kw_only=True, frozen=True):
    flags: list[Flag] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


class Block(msgspec.Struct, kw_only=True, frozen=True):
    """A user the caller blocks (`block_user`), and since when."""

    user_id: str
    created_at: datetime | None = None


class BlockPage(msgspec.Struct, kw_only=True, frozen=True):
    """The users the caller blocks, newest block first; pass `next_cursor` back for more."""

    blocks: list[Block] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


# Envelopes the SDK unwraps before returning.


class WebhookList(msgspec.Struct, kw_only=True, frozen=True):
    webhooks: list[Webhook] = msgspec.field(default_factory=list)


class MessageList(msgspec.Struct, kw_only=True, frozen=True):
    messages: list[Message] = msgspec.field(default_factory=list)


class UnreadCount(msgspec.Struct, kw_only=True, frozen=True):
    unread_count: int = 0


# Bans (issue 14, point 2).


class Ban(msgspec.Struct, kw_only=True, frozen=True):
    """A user's ban from the workspace (`channel_id` None) or from one channel."""

    id: str
    user_id: str
    channel_id: str | None = None
    reason: str | None = None
    # None: until unbanned.
    expires_at: datetime | None = None
    shadow: bool = False
    # The moderator's user id, or "backend".
    created_by: str
    created_at: datetime


class BanPage(msgspec.Struct, kw_only=True, frozen=True):
    bans: list[Ban] = msgspec.field(default_factory=list)
    next_cursor: str | None = None
