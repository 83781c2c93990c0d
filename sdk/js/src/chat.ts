import { CariosanError } from "./errors.js";
import { compact, Connection, type FetchLike, type Query, segment, walkPages } from "./http.js";
import { LiveStream, type WebSocketConstructor } from "./live.js";
import type {
  Ban, BanPage, BlockPage, Channel, ChannelPage, ChannelType, Download, EventPage, Flag, FlagAction, FlagPage,
  FlagStatus, JsonObject, Me, Member, MemberRole, Message, MessagePage, Upload, User, UserPage,
} from "./types.js";

function expiry(expiresAt: Date | string | undefined): { expires_at?: string } {
  if (expiresAt === undefined) return {};
  return { expires_at: expiresAt instanceof Date ? expiresAt.toISOString() : expiresAt };
}

/** Returns a fresh user JWT (from your backend); called again once when a token is refused. */
export type TokenProvider = () => string | Promise<string>;

export interface ChatClientOptions {
  /** The server, e.g. `https://chat.example.com`. */
  baseUrl: string;
  /** A user JWT. Give this, a `tokenProvider`, or both. */
  token?: string;
  tokenProvider?: TokenProvider;
  /** A WebSocket class for runtimes without a global one (Node < 22: `ws`; React Native has one). */
  WebSocket?: WebSocketConstructor;
  /** A fetch for runtimes without a global one, or to add headers. */
  fetch?: FetchLike;
}

export interface CreateChannelInput {
  type: ChannelType;
  members: string[];
  id?: string;
  name?: string;
  data?: JsonObject;
}

export interface SendInput {
  text: string;
  /** A uuid; `send` makes one when absent and reuses it when it retries. */
  id?: string;
  parentId?: string;
  attachmentIds?: string[];
  mentions?: string[];
  data?: JsonObject;
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

export interface UploadOptions {
  filename: string;
  contentType: string;
  onProgress?: (progress: UploadProgress) => void;
}

/** What `upload` returns: the attachment id to pass to `send({ attachmentIds })`. */
export interface UploadedAttachment {
  id: string;
  filename: string;
  contentType: string;
  size: number;
}

/** Pauses before `send` retries after a network error or 503 (milliseconds). */
export const SEND_RETRY_DELAYS = [500, 1500];

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A message id that grows with time (UUIDv7: 48 bits of Unix milliseconds, then random bits),
 * as the server and the Python SDK make them: a channel's recent messages then sit together in
 * the server's index, where random ids scatter them.
 */
export function newMessageId(): string {
  const c = globalThis.crypto;
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The client API as one end user, authenticated by a user JWT.
 *
 * ```ts
 * const chat = new ChatClient({ baseUrl, tokenProvider: () => myBackend.cariosanToken() });
 * const channel = await chat.createChannel({ type: "dm", members: ["alice", "bob"] });
 * await chat.send(channel.id, { text: "hello" });
 * ```
 */
export class ChatClient {
  private readonly connection: Connection;
  private token: string | null;
  private pendingToken: Promise<string> | null = null;
  private readonly tokenProvider: TokenProvider | null;
  private readonly actingAs: string | null;
  private readonly webSocket: WebSocketConstructor | undefined;

  constructor(options: ChatClientOptions, internal?: { connection: Connection; actingAs: string }) {
    if (!options.token && !options.tokenProvider) throw new Error("ChatClient needs a token or a tokenProvider");
    this.connection = internal?.connection ?? new Connection(options.baseUrl, options.fetch);
    this.token = options.token ?? null;
    this.tokenProvider = options.tokenProvider ?? null;
    this.actingAs = internal?.actingAs ?? null;
    this.webSocket = options.WebSocket;
  }

  get baseUrl(): string {
    return this.connection.baseUrl;
  }

  /** The user a `ServerClient.asUser` client acts as, else null. */
  get userId(): string | null {
    return this.actingAs;
  }

  // -- plumbing ------------------------------------------------------------------------------

  /** The current token (asks the provider when there is none yet). */
  async currentToken(): Promise<string> {
    if (this.token !== null) return this.token;
    return this.freshToken(null);
  }

  /** A new token from the provider, shared by concurrent callers that saw `rejected` refused. */
  async freshToken(rejected: string | null): Promise<string> {
    if (this.token !== null && this.token !== rejected) return this.token;
    if (!this.tokenProvider) {
      throw new CariosanError("the token was refused and there is no tokenProvider", { code: "UNAUTHORIZED", status: 401 });
    }
    if (!this.pendingToken) {
      const provider = this.tokenProvider;
      this.pendingToken = (async () => {
        try {
          const token = await provider();
          this.token = token;
          return token;
        } finally {
          this.pendingToken = null;
        }
      })();
    }
    return this.pendingToken;
  }

  /** Whether a 4001 close / 401 may be retried with a new token. */
  get canRefresh(): boolean {
    return this.tokenProvider !== null;
  }

  private async request<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    const query = this.actingAs === null ? options.query : { ...options.query, user_id: this.actingAs };
    const token = await this.currentToken();
    try {
      return await this.connection.request<T>(method, path, token, { ...options, query });
    } catch (error) {
      if (!(error instanceof CariosanError) || error.code !== "UNAUTHORIZED" || !this.tokenProvider) throw error;
    }
    const fresh = await this.freshToken(token);
    return this.connection.request<T>(method, path, fresh, { ...options, query });
  }

  // -- me ------------------------------------------------------------------------------------

  /** The current user and their unread total across channels. */
  me(): Promise<Me> {
    return this.request("GET", "/v1/me");
  }

  // -- channels ------------------------------------------------------------------------------

  /** Create a channel (a dm between the same two users is returned again, not duplicated). */
  createChannel(input: CreateChannelInput): Promise<Channel> {
    return this.request("POST", "/v1/channels", { body: compact(input) });
  }

  /** The caller's channels, newest activity first (`public: true` adds public channels). */
  listChannels(options: { limit?: number; cursor?: string; public?: boolean } = {}): Promise<ChannelPage> {
    return this.request("GET", "/v1/channels", { query: options });
  }

  // -- the user directory (issue 14, point 6) ---------------------------------------------------

  /** A page of the user directory, by id: the caller and the users it shares a channel with. `q` keeps users whose id or name starts with
   * it (ignoring case). */
  listUsers(options: { q?: string; limit?: number; cursor?: string } = {}): Promise<UserPage> {
    return this.request("GET", "/v1/users", { query: options });
  }

  /** The first page of users whose id or name starts with `q` (ignoring case). */
  searchUsers(q: string, options: { limit?: number } = {}): Promise<UserPage> {
    return this.listUsers({ q, limit: options.limit });
  }

  /** Every user of the directory (matching `q`), by id, a page at a time:
   * `for await (const user of client.iterUsers({ q: "al" })) ...` */
  async *iterUsers(options: { q?: string; pageSize?: number } = {}): AsyncGenerator<User> {
    yield* walkPages((cursor) => this.listUsers({ q: options.q, limit: options.pageSize, cursor }), (page) => page.users);
  }

  /** One channel, with its `members`. */
  getChannel(id: string): Promise<Channel> {
    return this.request("GET", `/v1/channels/${segment(id)}`);
  }

  /** Change a channel; slow mode (`cooldown_seconds`, 0: off) and `frozen`: moderators only. */
  updateChannel(
    id: string,
    changes: { name?: string; data?: JsonObject; cooldown_seconds?: number; frozen?: boolean },
  ): Promise<Channel> {
    return this.request("PATCH", `/v1/channels/${segment(id)}`, { body: compact(changes) });
  }

  /** Soft-delete a channel (its history is kept for export). */
  async deleteChannel(id: string): Promise<void> {
    await this.request("DELETE", `/v1/channels/${segment(id)}`);
  }

  addMembers(channelId: string, userIds: string[]): Promise<Channel> {
    return this.request("POST", `/v1/channels/${segment(channelId)}/members`, { body: { user_ids: userIds } });
  }

  /** Change a member's role (moderators of the channel; see docs/moderation.md). */
  setMemberRole(channelId: string, userId: string, role: MemberRole): Promise<Member> {
    return this.request("PATCH", `/v1/channels/${segment(channelId)}/members/${segment(userId)}`, { body: { role } });
  }

  async removeMember(channelId: string, userId: string): Promise<void> {
    await this.request("DELETE", `/v1/channels/${segment(channelId)}/members/${segment(userId)}`);
  }

  // -- messages ------------------------------------------------------------------------------

  /** A page of a channel's messages, oldest first, before or after a message id. */
  listMessages(channelId: string, options: { limit?: number; before?: string; after?: string } = {}): Promise<MessagePage> {
    return this.request("GET", `/v1/channels/${segment(channelId)}/messages`, { query: options });
  }

  /**
   * Post a message (a reply when `parentId` is set). Idempotent: the message id (made here when
   * not given) is reused when a network error or 503 makes `send` retry, so the server returns
   * the original message instead of storing a duplicate.
   */
  async send(channelId: string, input: SendInput): Promise<Message> {
    const body = compact({
      id: input.id ?? newMessageId(),
      text: input.text,
      parent_id: input.parentId,
      attachment_ids: input.attachmentIds,
      mentions: input.mentions,
      data: input.data,
    });
    const path = `/v1/channels/${segment(channelId)}/messages`;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request<Message>("POST", path, { body });
      } catch (error) {
        const retryable = error instanceof CariosanError && error.code === "UNAVAILABLE";
        const delay = SEND_RETRY_DELAYS[attempt];
        if (!retryable || delay === undefined) throw error;
        await sleep(delay);
      }
    }
  }

  /** Replace a message's text (author or admin); sets `edited_at`. */
  editMessage(id: string, text: string): Promise<Message> {
    return this.request("PATCH", `/v1/messages/${segment(id)}`, { body: { text } });
  }

  /** Soft-delete a message: `deleted_at` set, text and attachments gone from reads. */
  async deleteMessage(id: string): Promise<void> {
    await this.request("DELETE", `/v1/messages/${segment(id)}`);
  }

  /** A page of a message's thread replies, oldest first. */
  replies(messageId: string, options: { limit?: number; before?: string } = {}): Promise<MessagePage> {
    return this.request("GET", `/v1/messages/${segment(messageId)}/replies`, { query: options });
  }

  addReaction(messageId: string, type: string): Promise<Message> {
    return this.request("PUT", `/v1/messages/${segment(messageId)}/reactions/${segment(type)}`);
  }

  removeReaction(messageId: string, type: string): Promise<Message> {
    return this.request("DELETE", `/v1/messages/${segment(messageId)}/reactions/${segment(type)}`);
  }

  // -- pins (issue 14 point 5) ---------------------------------------------------------------

  /** Pin a top-level message (the channel's moderators); the message with `pinned_at`. */
  pinMessage(messageId: string): Promise<Message> {
    return this.request("PUT", `/v1/messages/${segment(messageId)}/pin`);
  }

  unpinMessage(messageId: string): Promise<Message> {
    return this.request("DELETE", `/v1/messages/${segment(messageId)}/pin`);
  }

  /** The channel's pinned messages, most recently pinned first. */
  async listPins(channelId: string): Promise<Message[]> {
    const path = `/v1/channels/${segment(channelId)}/pins`;
    return (await this.request<{ messages: Message[] }>("GET", path)).messages;
  }

  // -- read state and typing -----------------------------------------------------------------

  /** Mark the channel read up to `messageId` (default: latest); resolves to its unread count. */
  async markRead(channelId: string, messageId?: string): Promise<number> {
    const body = compact({ message_id: messageId });
    const result = await this.request<{ unread_count: number }>("POST", `/v1/channels/${segment(channelId)}/read`, { body });
    return result.unread_count;
  }

  async typing(channelId: string, state: "start" | "stop"): Promise<void> {
    await this.request("POST", `/v1/channels/${segment(channelId)}/typing`, { body: { state } });
  }

  // -- attachments ---------------------------------------------------------------------------

  /** Reserve an attachment: PUT its bytes to `upload_url` with `upload_headers` (or use `upload`). */
  createUpload(channelId: string, input: { filename: string; contentType: string; size: number }): Promise<Upload> {
    const body = { channel_id: channelId, filename: input.filename, content_type: input.contentType, size: input.size };
    return this.request("POST", "/v1/attachments", { body });
  }

  /**
   * Upload a file in one call: asks for the upload URL, PUTs the bytes there (reporting progress
   * where the runtime can: XMLHttpRequest in browsers; otherwise once, at the end) and resolves
   * to the attachment to reference in `send({ attachmentIds })`.
   */
  async upload(channelId: string, blob: Blob, options: UploadOptions): Promise<UploadedAttachment> {
    const size = blob.size;
    const reserved = await this.createUpload(channelId, { filename: options.filename, contentType: options.contentType, size });
    // Exactly the signed headers (the content type among them): the URL's signature covers them.
    const headers: Record<string, string> = { ...reserved.upload_headers };
    if (!Object.keys(headers).some((name) => name.toLowerCase() === "content-type")) {
      headers["content-type"] = options.contentType;
    }
    const report = options.onProgress ?? (() => undefined);
    report({ loaded: 0, total: size });
    const XHR = (globalThis as { XMLHttpRequest?: typeof XMLHttpRequest }).XMLHttpRequest;
    if (XHR) {
      await new Promise<void>((resolve, reject) => {
        const xhr = new XHR();
        xhr.open(reserved.upload_method || "PUT", reserved.upload_url);
        for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
        xhr.upload.onprogress = (event) => report({ loaded: event.loaded, total: event.lengthComputable ? event.total : size });
        xhr.onload = () =>
          xhr.status >= 200 && xhr.status < 300
            ? resolve()
            : reject(new CariosanError(`the upload was refused (HTTP ${xhr.status})`, { code: xhr.status === 413 ? "PAYLOAD_TOO_LARGE" : "UNAVAILABLE", status: xhr.status }));
        xhr.onerror = () => reject(new CariosanError("the upload failed: network error", { code: "UNAVAILABLE", status: 0 }));
        xhr.send(blob);
      });
    } else {
      let response: Response;
      try {
        response = await fetch(reserved.upload_url, { method: reserved.upload_method || "PUT", headers, body: blob });
      } catch (cause) {
        throw new CariosanError("the upload failed: network error", { code: "UNAVAILABLE", status: 0, cause });
      }
      if (!response.ok) {
        throw new CariosanError(`the upload was refused (HTTP ${response.status})`, { code: response.status === 413 ? "PAYLOAD_TOO_LARGE" : "UNAVAILABLE", status: response.status });
      }
    }
    report({ loaded: size, total: size });
    return { id: reserved.attachment_id, filename: options.filename, contentType: options.contentType, size };
  }

  /** A presigned download URL (valid 15 minutes) for an attachment. */
  getAttachment(id: string): Promise<Download> {
    return this.request("GET", `/v1/attachments/${segment(id)}`);
  }

  // -- mutes and blocks (private to the caller) ----------------------------------------------

  /**
   * Mute a channel the caller belongs to, until `expiresAt` or `unmuteChannel`: it no longer
   * counts in `me().total_unread` and is `muted` in `listChannels`. Muting again replaces the
   * expiry.
   */
  async muteChannel(channelId: string, options: { expiresAt?: Date | string } = {}): Promise<void> {
    await this.request("PUT", `/v1/channels/${segment(channelId)}/mute`, { body: expiry(options.expiresAt) });
  }

  async unmuteChannel(channelId: string): Promise<void> {
    await this.request("DELETE", `/v1/channels/${segment(channelId)}/mute`);
  }

  /** Mute another user, until `expiresAt` or `unmuteUser`: its messages come with `muted: true` for the caller. */
  async muteUser(userId: string, options: { expiresAt?: Date | string } = {}): Promise<void> {
    await this.request("PUT", `/v1/users/${segment(userId)}/mute`, { body: expiry(options.expiresAt) });
  }

  async unmuteUser(userId: string): Promise<void> {
    await this.request("DELETE", `/v1/users/${segment(userId)}/mute`);
  }

  /** Block another user: no new dm between the two (403 FORBIDDEN), and its mentions of the caller are dropped. */
  async blockUser(userId: string): Promise<void> {
    await this.request("PUT", `/v1/users/${segment(userId)}/block`);
  }

  async unblockUser(userId: string): Promise<void> {
    await this.request("DELETE", `/v1/users/${segment(userId)}/block`);
  }

  /** The users the caller blocks, newest block first. */
  listBlocks(options: { limit?: number; cursor?: string } = {}): Promise<BlockPage> {
    return this.request("GET", "/v1/users/me/blocks", { query: options });
  }

  // -- search and events ---------------------------------------------------------------------

  /** Messages matching `q` in the caller's channels (or in one channel). */
  async search(q: string, options: { channelId?: string; limit?: number } = {}): Promise<Message[]> {
    const query = { q, channel_id: options.channelId, limit: options.limit };
    return (await this.request<{ messages: Message[] }>("GET", "/v1/search", { query })).messages;
  }

  /** Persisted events after `afterSeq`, in order (the WebSocket's stream, for catch-up). */
  events(options: { afterSeq?: number; limit?: number } = {}): Promise<EventPage> {
    return this.request("GET", "/v1/events", { query: { after_seq: options.afterSeq, limit: options.limit } });
  }

  // -- flags and the review queue (issue 14 point 4) -----------------------------------------

  /** Report a message of one of the caller's channels (its open flag again, if it has one). */
  flagMessage(messageId: string, options: { reason?: string } = {}): Promise<Flag> {
    return this.request("POST", `/v1/messages/${segment(messageId)}/flag`, { body: compact({ reason: options.reason }) });
  }

  /** Report a user of the workspace to its moderators. */
  flagUser(userId: string, options: { reason?: string } = {}): Promise<Flag> {
    return this.request("POST", `/v1/users/${segment(userId)}/flag`, { body: compact({ reason: options.reason }) });
  }

  /** A page of the review queue (workspace moderators and admins), newest first. */
  listFlags(options: { status?: FlagStatus; limit?: number; cursor?: string } = {}): Promise<FlagPage> {
    return this.request("GET", "/v1/moderation/flags", { query: options });
  }

  /** Every flag of `status` (default open), newest first, a page at a time. */
  async *iterFlags(options: { status?: FlagStatus; pageSize?: number } = {}): AsyncGenerator<Flag> {
    yield* walkPages((cursor) => this.listFlags({ status: options.status, limit: options.pageSize, cursor }), (page) => page.flags);
  }

  /** Close an open flag: dismiss it, delete the flagged message, or ban the user. */
  resolveFlag(flagId: string, action: FlagAction, options: { reason?: string } = {}): Promise<Flag> {
    return this.request("POST", `/v1/moderation/flags/${segment(flagId)}/resolve`, { body: compact({ action, reason: options.reason }) });
  }

  /**
   * Live events over one WebSocket. The stream reconnects with backoff and resumes after the last
   * `seq` it emitted (from `afterSeq` when given, else from now), so no persisted event is
   * missed or emitted twice; on close code 4001 it asks the tokenProvider once for a new token.
   */
  connect(options: { afterSeq?: number; WebSocket?: WebSocketConstructor } = {}): LiveStream {
    if (this.actingAs !== null) throw new Error("the WebSocket needs a user token, not the API secret");
    const WebSocketImpl =
      options.WebSocket ?? this.webSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new Error("no WebSocket in this runtime: pass one, e.g. new ChatClient({ ..., WebSocket }) with the `ws` package");
    }
    const url = this.connection.baseUrl.replace(/^http/, "ws") + "/v1/ws";
    return new LiveStream({
      url,
      WebSocket: WebSocketImpl,
      token: () => this.currentToken(),
      refresh: this.tokenProvider ? (rejected) => this.freshToken(rejected) : null,
      afterSeq: options.afterSeq ?? null,
    });
  }

  // -- bans (issue 14, point 2) ----------------------------------------------------------------

  /**
   * Ban a user from the workspace (no `channelId`: workspace moderators) or from a channel (its
   * moderators too), until `expiresAt` (RFC 3339; none: until unbanned). `shadow`: the user may
   * still send, and nobody else sees what it sends. The banned user's calls then fail with a
   * `CariosanError` of code `BANNED`.
   */
  banUser(userId: string, options: BanOptions = {}): Promise<Ban> {
    return this.request("POST", "/v1/bans", { body: banBody(userId, options) });
  }

  /** Lift the user's workspace ban, or its ban of `channelId` (`NOT_FOUND` without one). */
  async unbanUser(userId: string, options: { channelId?: string } = {}): Promise<void> {
    await this.request("DELETE", `/v1/bans/${segment(userId)}`, { query: { channel_id: options.channelId } });
  }

  /** A page of active bans, newest first (all, or `channelId`'s); pass `next_cursor` back as `cursor`. */
  listBans(options: { channelId?: string; limit?: number; cursor?: string } = {}): Promise<BanPage> {
    const query = { channel_id: options.channelId, limit: options.limit, cursor: options.cursor };
    return this.request("GET", "/v1/bans", { query });
  }
}

// Bans (issue 14, point 2).
export interface BanOptions {
  channelId?: string;
  reason?: string;
  /** RFC 3339, or a Date. */
  expiresAt?: string | Date;
  shadow?: boolean;
}

/** The body of `POST /v1/bans` (shared with ServerClient). */
export function banBody(userId: string, options: BanOptions): Record<string, unknown> {
  const expires = options.expiresAt instanceof Date ? options.expiresAt.toISOString() : options.expiresAt;
  return compact({
    user_id: userId,
    channel_id: options.channelId,
    reason: options.reason,
    expires_at: expires,
    shadow: options.shadow ?? false,
  });
}
