"""Live and catch-up events (API.md, "WebSocket"), as one typed struct per event type.

async for event in chat.connect():
    match event:
        case MessageNew(message=message):
            print(message.user_id, message.text)
        case TypingStart(user_id=user_id, channel_id=channel_id):
            ...
        case ResyncRequired():
            ...  # refetch channels and history
        case _:
            pass  # UnknownEvent: a type this SDK does not know (yet); `data` holds it all

Every event has `type`; persisted ones have `seq`, `created_at` and, in a channel, `channel_id`.
A type this SDK does not know decodes as `UnknownEvent` rather than failing, so a newer server
never breaks an older SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import msgspec

from cariosan_client.models import Channel, Member, Message

__all__ = [
    "EVENT_TYPES",
    "AnyEvent",
    "ChannelCreated",
    "ChannelDeleted",
    "ChannelUpdated",
    "Event",
    "EventPage",
    "MemberAdded",
    "MemberRemoved",
    "MemberUpdated",
    "MessageDeleted",
    "MessageNew",
    "MessageUpdated",
    "PersistedEvent",
    "PresenceChanged",
    "Reaction",
    "ReactionDeleted",
    "ReactionNew",
    "ReadUpdated",
    "ResyncRequired",
    "TypingStart",
    "TypingStop",
    "UnknownEvent",
    "decode_event",
]


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """What every event has. `seq` is None for ephemeral ones (typing, presence)."""

    type: str
    seq: int | None = None
    channel_id: str | None = None
    created_at: datetime | None = None


class PersistedEvent(Event, kw_only=True, frozen=True):
    """An event that changed stored state: it has its place, `seq`, in the workspace's log."""

    seq: int


class MessageNew(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["message.new"] = "message.new"
    message: Message


class MessageUpdated(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["message.updated"] = "message.updated"
    message: Message


class MessageDeleted(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["message.deleted"] = "message.deleted"
    message: Message


class Reaction(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str
    user_id: str
    type: str
    created_at: datetime | None = None


class ReactionNew(PersistedEvent, kw_only=True, frozen=True):
    """A reaction was added; `message` is the message with its counts as they are now."""

    type: Literal["reaction.new"] = "reaction.new"
    reaction: Reaction
    message: Message | None = None


class ReactionDeleted(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["reaction.deleted"] = "reaction.deleted"
    reaction: Reaction
    message: Message | None = None


class MemberAdded(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["member.added"] = "member.added"
    user_id: str
    member: Member


class MemberRemoved(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["member.removed"] = "member.removed"
    user_id: str
    member: Member


class MemberUpdated(PersistedEvent, kw_only=True, frozen=True):
    """A member's role changed (`member` is the member as it is now)."""

    type: Literal["member.updated"] = "member.updated"
    user_id: str
    member: Member


class ChannelCreated(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["channel.created"] = "channel.created"
    channel: Channel


class ChannelUpdated(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["channel.updated"] = "channel.updated"
    channel: Channel


class ChannelDeleted(PersistedEvent, kw_only=True, frozen=True):
    type: Literal["channel.deleted"] = "channel.deleted"
    channel: Channel


class ReadUpdated(PersistedEvent, kw_only=True, frozen=True):
    """The user's own read position moved (sent to that user only)."""

    type: Literal["read.updated"] = "read.updated"
    user_id: str
    last_read_message_id: str | None = None
    unread_count: int = 0


class TypingStart(Event, kw_only=True, frozen=True):
    type: Literal["typing.start"] = "typing.start"
    user_id: str


class TypingStop(Event, kw_only=True, frozen=True):
    type: Literal["typing.stop"] = "typing.stop"
    user_id: str


class PresenceChanged(Event, kw_only=True, frozen=True):
    type: Literal["presence.changed"] = "presence.changed"
    user_id: str
    online: bool
    last_active_at: datetime | None = None


class ResyncRequired(Event, kw_only=True, frozen=True):
    """The client was away longer than the server keeps events: refetch the channels and the
    history it shows; the stream goes on from `latest_seq`."""

    type: Literal["resync.required"] = "resync.required"
    latest_seq: int


class UnknownEvent(Event, kw_only=True, frozen=True):
    """An event of a type this SDK does not know; `data` is the whole event as sent."""

    data: dict[str, Any] = msgspec.field(default_factory=dict)


AnyEvent = (
    MessageNew
    | MessageUpdated
    | MessageDeleted
    | ReactionNew
    | ReactionDeleted
    | MemberAdded
    | MemberRemoved
    | MemberUpdated
    | ChannelCreated
    | ChannelUpdated
    | ChannelDeleted
    | ReadUpdated
    | TypingStart
    | TypingStop
    | PresenceChanged
    | ResyncRequired
    | UnknownEvent
)


def _tag(cls: type[Event]) -> str:
    return next(str(f.default) for f in msgspec.structs.fields(cls) if f.name == "type")


# The union's members by the `type` they carry, which tags them on the wire.
EVENT_TYPES: dict[str, type[Event]] = {
    _tag(cls): cls
    for cls in (
        MessageNew,
        MessageUpdated,
        MessageDeleted,
        ReactionNew,
        ReactionDeleted,
        MemberAdded,
        MemberRemoved,
        MemberUpdated,
        ChannelCreated,
        ChannelUpdated,
        ChannelDeleted,
        ReadUpdated,
        TypingStart,
        TypingStop,
        PresenceChanged,
        ResyncRequired,
    )
}


class _Tag(msgspec.Struct):
    type: str


def decode_event(raw: bytes | str) -> AnyEvent:
    """One event from its JSON, as the struct of its `type`. A type this SDK does not know, or a
    known one whose shape it cannot read, is an `UnknownEvent` holding the whole event. Raises
    `msgspec.DecodeError` or `msgspec.ValidationError` for JSON that is not an event at all."""
    tag = msgspec.json.decode(raw, type=_Tag).type
    cls = EVENT_TYPES.get(tag)
    if cls is not None:
        try:
            return cast(AnyEvent, msgspec.json.decode(raw, type=cls))
        except msgspec.ValidationError:
            pass
    data = msgspec.json.decode(raw, type=dict[str, Any])
    try:
        base = msgspec.convert(data, type=Event, strict=False)
    except msgspec.ValidationError:
        base = Event(type=tag)
    return UnknownEvent(
        type=tag, seq=base.seq, channel_id=base.channel_id, created_at=base.created_at, data=data
    )


@dataclass(frozen=True)
class EventPage:
    """Persisted events after a `seq`, for catch-up, oldest first."""

    events: list[AnyEvent] = field(default_factory=list)
    latest_seq: int = 0
    # More follow: ask again with `after_seq=latest_seq`.
    has_more: bool = False


class RawEventPage(msgspec.Struct, kw_only=True, frozen=True):
    """The wire form of `EventPage`: each event decoded afterwards by its type."""

    events: list[msgspec.Raw] = msgspec.field(default_factory=list)
    latest_seq: int = 0
    has_more: bool = False

    def decoded(self) -> EventPage:
        return EventPage([decode_event(e) for e in self.events], self.latest_seq, self.has_more)
