/**
 * What the API returns and what the WebSocket carries (API.md), as strict types.
 *
 * Every model below has a `…_FIELDS` list: the compiler proves it names exactly the model's
 * keys, and test/schema.test.ts proves it matches the component of `/openapi.json`, so these
 * types cannot drift from the server without a failing test.
 */

/** RFC 3339 UTC time, as the API sends it. */
export type Timestamp = string;
export type JsonObject = { [key: string]: unknown };

/** `true` only when the two types are the same (used to prove the field lists complete). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Fields<T> = readonly (keyof T)[];
function fields<T>() {
  return <const L extends Fields<T>>(list: L & (Same<L[number], keyof T> extends true ? unknown : never)) =>
    list;
}

export type ChannelType = "dm" | "group" | "public";
export type Role = "user" | "moderator" | "admin";

export interface User {
  id: string;
  name: string | null;
  image_url: string | null;
  role: string;
  data: JsonObject;
  created_at: Timestamp;
  updated_at: Timestamp | null;
  last_active_at: Timestamp | null;
  deleted_at: Timestamp | null;
}
export const USER_FIELDS = fields<User>()([
  "id", "name", "image_url", "role", "data", "created_at", "updated_at", "last_active_at", "deleted_at",
]);

export interface AttachmentRef {
  id: string;
  filename: string;
  content_type: string;
  size: number;
}
export const ATTACHMENT_REF_FIELDS = fields<AttachmentRef>()(["id", "filename", "content_type", "size"]);

export interface Message {
  id: string;
  channel_id: string;
  user_id: string;
  text: string;
  parent_id: string | null;
  reply_count: number;
  attachments: AttachmentRef[];
  mentions: string[];
  reactions: Record<string, number>;
  own_reactions: string[];
  data: JsonObject;
  created_at: Timestamp;
  edited_at: Timestamp | null;
  deleted_at: Timestamp | null;
  /** `true` when the reading user mutes the author (`muteUser`); false for everyone else. */
  muted?: boolean;
  /** Pins: null when not pinned; `pinned_by` null also when the backend pinned it as itself. */
  pinned_at?: Timestamp | null;
  pinned_by?: string | null;
}
export const MESSAGE_FIELDS = fields<Message>()([
  "id", "channel_id", "user_id", "text", "parent_id", "reply_count", "attachments", "mentions",
  "reactions", "own_reactions", "data", "created_at", "edited_at", "deleted_at", "muted",
  "pinned_at", "pinned_by",
]);

export type MemberRole = "owner" | "moderator" | "member";
export interface Member {
  user_id: string;
  role: MemberRole;
  joined_at: Timestamp;
}
export const MEMBER_FIELDS = fields<Member>()(["user_id", "role", "joined_at"]);

export interface Channel {
  id: string;
  type: ChannelType;
  name: string | null;
  data: JsonObject;
  member_count: number;
  /** Set in channel lists. */
  last_message?: Message | null;
  last_message_at?: Timestamp | null;
  unread_count?: number;
  /** Set on single-channel reads (getChannel, createChannel, updateChannel, addMembers). */
  members?: Member[];
  created_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp | null;
  deleted_at: Timestamp | null;
  /** The reading user muted the channel (`muteChannel`): it does not count in `total_unread`. */
  muted?: boolean;
  /** Slow mode: members send once per `cooldown_seconds` (0: off). */
  cooldown_seconds?: number;
  /** Frozen: only the channel's moderators send or react. */
  frozen?: boolean;
}
export const CHANNEL_FIELDS = fields<Channel>()([
  "id", "type", "name", "data", "member_count", "last_message", "last_message_at", "unread_count",
  "members", "created_by", "created_at", "updated_at", "deleted_at", "muted", "cooldown_seconds",
  "frozen",
]);

export interface ChannelPage {
  channels: Channel[];
  next_cursor: string | null;
}
export const CHANNEL_PAGE_FIELDS = fields<ChannelPage>()(["channels", "next_cursor"]);

export interface MessagePage {
  /** Oldest first. */
  messages: Message[];
  has_more: boolean;
}
export const MESSAGE_PAGE_FIELDS = fields<MessagePage>()(["messages", "has_more"]);

// Mutes and blocks (issue 14.3).
/** A user the caller blocks (`blockUser`), and since when. */
export interface Block {
  user_id: string;
  created_at: Timestamp;
}
export const BLOCK_FIELDS = fields<Block>()(["user_id", "created_at"]);

/** The users the caller blocks, newest block first. */
export interface BlockPage {
  blocks: Block[];
  next_cursor: string | null;
}
export const BLOCK_PAGE_FIELDS = fields<BlockPage>()(["blocks", "next_cursor"]);

export interface Me {
  user: User;
  total_unread: number;
}
export const ME_FIELDS = fields<Me>()(["user", "total_unread"]);

export interface Token {
  token: string;
  expires_at: Timestamp;
}
export const TOKEN_FIELDS = fields<Token>()(["token", "expires_at"]);

export interface Upload {
  attachment_id: string;
  upload_url: string;
  upload_method: string;
  upload_headers: Record<string, string>;
  expires_at: Timestamp;
}
export const UPLOAD_FIELDS = fields<Upload>()([
  "attachment_id", "upload_url", "upload_method", "upload_headers", "expires_at",
]);

export interface Download {
  url: string;
  expires_at: Timestamp;
  filename: string;
  content_type: string;
  size: number;
}
export const DOWNLOAD_FIELDS = fields<Download>()(["url", "expires_at", "filename", "content_type", "size"]);

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  created_at: Timestamp;
  /** Set when the server disabled the endpoint. */
  disabled_reason?: string | null;
  /** `whsec_…`: only in the answer of createWebhook (and a secret rotation). */
  secret?: string;
}
export const WEBHOOK_FIELDS = fields<Webhook>()([
  "id", "url", "events", "enabled", "created_at", "disabled_reason", "secret",
]);

export type DeliveryStatus = "pending" | "succeeded" | "failed";
export interface Delivery {
  id: string;
  event_type: string;
  seq: number | null;
  status: DeliveryStatus;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  next_attempt_at: Timestamp | null;
  created_at: Timestamp;
}
export const DELIVERY_FIELDS = fields<Delivery>()([
  "id", "event_type", "seq", "status", "attempts", "last_status_code", "last_error",
  "next_attempt_at", "created_at",
]);

export interface DeliveryPage {
  deliveries: Delivery[];
  next_cursor: string | null;
}
export const DELIVERY_PAGE_FIELDS = fields<DeliveryPage>()(["deliveries", "next_cursor"]);

/** A moderation or admin action: `actor` is a user id, "backend" or "operator". */
export interface AuditEntry {
  id: string;
  actor: string;
  action: string;
  target: string | null;
  reason: string | null;
  data: JsonObject;
  created_at: Timestamp;
}
export const AUDIT_ENTRY_FIELDS = fields<AuditEntry>()([
  "id", "actor", "action", "target", "reason", "data", "created_at",
]);

export interface AuditPage {
  entries: AuditEntry[];
  next_cursor: string | null;
}
export const AUDIT_PAGE_FIELDS = fields<AuditPage>()(["entries", "next_cursor"]);

export interface EventPage {
  events: PersistedEvent[];
  latest_seq: number;
  /** More events follow `events`' last seq (servers with the trimmed event log). */
  has_more?: boolean;
}
export const EVENT_PAGE_FIELDS = fields<EventPage>()(["events", "latest_seq", "has_more"]);

// Bans (issue 14, point 2).
export interface Ban {
  id: string;
  user_id: string;
  /** null: banned from the whole workspace. */
  channel_id: string | null;
  reason: string | null;
  /** null: until unbanned. */
  expires_at: Timestamp | null;
  /** The user may still send; nobody else sees what it sends. */
  shadow: boolean;
  /** The moderator's user id, or "backend". */
  created_by: string;
  created_at: Timestamp;
}
export const BAN_FIELDS = fields<Ban>()([
  "id", "user_id", "channel_id", "reason", "expires_at", "shadow", "created_by", "created_at",
]);

export interface BanPage {
  bans: Ban[];
  next_cursor: string | null;
}
export const BAN_PAGE_FIELDS = fields<BanPage>()(["bans", "next_cursor"]);
// Flags and the review queue (issue 14 point 4).

export type FlagStatus = "open" | "resolved";
export type FlagAction = "dismiss" | "delete_message" | "ban_user";

/**
 * A report of a message (`message_id` set) or of a user, for the workspace's moderators.
 * `user_id` is the user it is about (for a message flag, its author); `reporter_id` a user id or
 * "backend". `context` (in the review queue): messages around the flagged one, oldest first.
 */
export interface Flag {
  id: string;
  message: Message | null;
  message_id: string | null;
  channel_id: string | null;
  user_id: string;
  reporter_id: string;
  reason: string | null;
  status: FlagStatus;
  created_at: Timestamp;
  resolution: FlagAction | null;
  resolution_reason: string | null;
  resolved_by: string | null;
  resolved_at: Timestamp | null;
  context?: Message[] | null;
}
export const FLAG_FIELDS = fields<Flag>()([
  "id", "message", "message_id", "channel_id", "user_id", "reporter_id", "reason", "status",
  "created_at", "resolution", "resolution_reason", "resolved_by", "resolved_at", "context",
]);

export interface FlagPage {
  /** Newest first. */
  flags: Flag[];
  next_cursor: string | null;
}
export const FLAG_PAGE_FIELDS = fields<FlagPage>()(["flags", "next_cursor"]);
// Privacy and the user directory (issue 14, points 6 and 7).

/** A page of the user directory (`listUsers`); pass `next_cursor` back for the next one. */
export interface UserPage {
  users: User[];
  next_cursor: string | null;
}
export const USER_PAGE_FIELDS = fields<UserPage>()(["users", "next_cursor"]);

/** One channel of an exported user: its role, when it joined, how far it read. */
export interface ExportMembership {
  channel_id: string;
  channel_type: ChannelType;
  channel_name: string | null;
  channel_deleted_at: Timestamp | null;
  role: string;
  joined_at: Timestamp;
  last_read_message_id: string | null;
  last_read_at: Timestamp | null;
}

/** A message of an exported user (replies and deleted ones too). */
export interface ExportMessage {
  id: string;
  channel_id: string;
  parent_id: string | null;
  text: string;
  mentions: string[];
  attachment_ids: string[];
  data: JsonObject;
  created_at: Timestamp;
  edited_at: Timestamp | null;
  deleted_at: Timestamp | null;
}

/** An attachment of an exported user, with a download URL valid 15 minutes. */
export interface ExportAttachment {
  id: string;
  channel_id: string;
  message_id: string | null;
  filename: string;
  content_type: string;
  size: number;
  status: string;
  created_at: Timestamp;
  download_url: string | null;
  download_expires_at: Timestamp | null;
}

/** Everything stored about a user (`ServerClient.exportUser`). Later releases add sections
 * (bans, mutes, blocks, flags) under their own names. */
export interface UserExport {
  format: string;
  exported_at: Timestamp;
  workspace_id: string;
  user: User;
  memberships: ExportMembership[];
  messages: ExportMessage[];
  reactions: { message_id: string; channel_id: string; type: string; created_at: Timestamp }[];
  read_state: { channel_id: string; last_read_message_id: string | null; last_read_at: Timestamp | null }[];
  attachments: ExportAttachment[];
  audit: {
    id: string; actor: string; action: string; target: string | null; reason: string | null;
    data: JsonObject; created_at: Timestamp;
  }[];
  [section: string]: unknown;
}

/** The OpenAPI component each model mirrors, for test/schema.test.ts. */
export const SCHEMA_COMPONENTS = {
  UserView: USER_FIELDS,
  AttachmentRef: ATTACHMENT_REF_FIELDS,
  MessageView: MESSAGE_FIELDS,
  MemberView: MEMBER_FIELDS,
  ChannelView: CHANNEL_FIELDS,
  ChannelPage: CHANNEL_PAGE_FIELDS,
  MessagePage: MESSAGE_PAGE_FIELDS,
  MeOut: ME_FIELDS,
  TokenOut: TOKEN_FIELDS,
  UploadOut: UPLOAD_FIELDS,
  DownloadOut: DOWNLOAD_FIELDS,
  DeliveryOut: DELIVERY_FIELDS,
  DeliveryPage: DELIVERY_PAGE_FIELDS,
  EventPage: EVENT_PAGE_FIELDS,
  AuditEntry: AUDIT_ENTRY_FIELDS,
  AuditPage: AUDIT_PAGE_FIELDS,
  // Bans (issue 14, point 2).
  BanView: BAN_FIELDS,
  BanPage: BAN_PAGE_FIELDS,
  // Flags and the review queue (issue 14 point 4).
  FlagView: FLAG_FIELDS,
  FlagPage: FLAG_PAGE_FIELDS,
  // Mutes and blocks (issue 14.3).
  Block: BLOCK_FIELDS,
  BlockPage: BLOCK_PAGE_FIELDS,
  // Privacy and the user directory (issue 14, points 6 and 7).
  UserPage: USER_PAGE_FIELDS,
} as const;
/** Fields the SDK knows that a server may not publish yet (API.md "Additions in progress"). */
export const PENDING_FIELDS: Readonly<Record<string, readonly string[]>> = {
  EventPage: ["has_more"],
};

// ---- live events ---------------------------------------------------------------------------

export interface ReactionRef {
  message_id: string;
  user_id: string;
  type: string;
}

interface Persisted<T extends string> {
  type: T;
  seq: number;
  channel_id?: string;
}

export interface MessageNewEvent extends Persisted<"message.new"> { message: Message; }
export interface MessageUpdatedEvent extends Persisted<"message.updated"> { message: Message; }
export interface MessageDeletedEvent extends Persisted<"message.deleted"> { message: Message; }
export interface ReactionNewEvent extends Persisted<"reaction.new"> { reaction: ReactionRef; message: Message; }
export interface ReactionDeletedEvent extends Persisted<"reaction.deleted"> { reaction: ReactionRef; message: Message; }
export interface MemberAddedEvent extends Persisted<"member.added"> { member: Member; user_id: string; }
export interface MemberRemovedEvent extends Persisted<"member.removed"> { member: Member; user_id: string; }
export interface ChannelCreatedEvent extends Persisted<"channel.created"> { channel: Channel; }
export interface MemberUpdatedEvent extends Persisted<"member.updated"> { member: Member; user_id: string; }
export interface ChannelUpdatedEvent extends Persisted<"channel.updated"> { channel: Channel; }
export interface ChannelDeletedEvent extends Persisted<"channel.deleted"> { channel: Channel; }
// Flags (issue 14 point 4): received by workspace moderators and admins only (and webhooks).
/** A message or a user was flagged; `message` is the flagged message as it is now. */
export interface MessageFlaggedEvent extends Persisted<"message.flagged"> { flag: Flag; message?: Message; }
/** A moderator resolved a flag (`flag.resolution` says how). */
export interface FlagResolvedEvent extends Persisted<"flag.resolved"> { flag: Flag; message?: Message; }
// Pins and slow mode (issue 14 point 5).
export interface MessagePinnedEvent extends Persisted<"message.pinned"> { message: Message; }
export interface MessageUnpinnedEvent extends Persisted<"message.unpinned"> { message: Message; }
export interface ReadUpdatedEvent extends Persisted<"read.updated"> {
  user_id: string;
  channel_id: string;
  last_read_message_id: string | null;
  unread_count: number;
}

// Bans (issue 14, point 2): a channel ban goes to the channel's members (with `channel_id`), a
// workspace ban to the banned user.
export interface UserBannedEvent extends Persisted<"user.banned"> { user_id: string; ban: Ban; }
export interface UserUnbannedEvent extends Persisted<"user.unbanned"> { user_id: string; ban: Ban; }

/** Events with a `seq`: stored, replayed after a reconnect, and returned by `events()`. */
export type PersistedEvent =
  | MessageNewEvent
  | MessageUpdatedEvent
  | MessageDeletedEvent
  | ReactionNewEvent
  | ReactionDeletedEvent
  | MemberAddedEvent
  | MemberRemovedEvent
  | MemberUpdatedEvent
  | ChannelCreatedEvent
  | ChannelUpdatedEvent
  | ChannelDeletedEvent
  | ReadUpdatedEvent
  // Bans (issue 14, point 2).
  | UserBannedEvent
  | UserUnbannedEvent
  // Flags (issue 14 point 4).
  | MessageFlaggedEvent
  | FlagResolvedEvent
  // Pins and slow mode (issue 14 point 5).
  | MessagePinnedEvent
  | MessageUnpinnedEvent;

export interface TypingStartEvent { type: "typing.start"; channel_id: string; user_id: string; }
export interface TypingStopEvent { type: "typing.stop"; channel_id: string; user_id: string; }
export interface PresenceChangedEvent {
  type: "presence.changed";
  user_id: string;
  online: boolean;
  last_active_at: Timestamp;
}
/** Events without a `seq`: live only, never replayed. */
export type EphemeralEvent = TypingStartEvent | TypingStopEvent | PresenceChangedEvent;

export interface ConnectionReadyEvent { type: "connection.ready"; user_id: string; latest_seq: number; }
/**
 * The server no longer has the events after the stream's last seq: refetch channels and history;
 * the stream goes on from `latest_seq` by itself.
 */
export interface ResyncRequiredEvent { type: "resync.required"; latest_seq: number; }
export interface ServerErrorEvent { type: "error"; code: string; message: string; }

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";
/** Made by the SDK (never sent by the server): the stream's connection state changed. */
export interface ConnectionChangedEvent { type: "connection.changed"; state: ConnectionState; }

/** Every event a `LiveStream` emits. */
export type LiveEvent =
  | PersistedEvent
  | EphemeralEvent
  | ConnectionReadyEvent
  | ResyncRequiredEvent
  | ServerErrorEvent
  | ConnectionChangedEvent;
export type LiveEventType = LiveEvent["type"];
export type LiveEventOf<T extends LiveEventType> = Extract<LiveEvent, { type: T }>;
export const PERSISTED_EVENT_TYPES = [
  "message.new", "message.updated", "message.deleted", "reaction.new", "reaction.deleted",
  "member.added", "member.removed", "member.updated", "channel.created", "channel.updated", "channel.deleted",
  "read.updated",
  // Moderation (issue 14): bans, flags (moderators only), pins.
  "user.banned", "user.unbanned", "message.flagged", "flag.resolved", "message.pinned", "message.unpinned",
] as const satisfies readonly PersistedEvent["type"][];
