import { banBody, type BanOptions, ChatClient } from "./chat.js";
import { CariosanError } from "./errors.js";
import { compact, Connection, type FetchLike, type Query, segment, walkPages } from "./http.js";
import type {
  AuditPage, Ban, BanPage, DeliveryPage, DeliveryStatus, Flag, FlagAction, FlagPage, FlagStatus, JsonObject,
  PersistedEvent, Token, User, UserExport, UserPage, Webhook,
} from "./types.js";

export interface ServerClientOptions {
  baseUrl: string;
  /** The workspace API secret: keep it in your backend, never ship it to a browser. */
  apiSecret: string;
  fetch?: FetchLike;
}

/**
 * The server-side API, for your Node backend (workspace API secret): users, tokens, webhooks.
 *
 * ```ts
 * const server = new ServerClient({ baseUrl, apiSecret: process.env.CARIOS_API_SECRET! });
 * await server.upsertUser("alice", { name: "Alice" });
 * const { token } = await server.createToken("alice", { ttlSeconds: 3600 });
 * ```
 */
export class ServerClient {
  private readonly connection: Connection;
  private readonly apiSecret: string;

  constructor(options: ServerClientOptions) {
    if (!options.apiSecret) throw new Error("ServerClient needs apiSecret");
    this.connection = new Connection(options.baseUrl, options.fetch);
    this.apiSecret = options.apiSecret;
  }

  get baseUrl(): string {
    return this.connection.baseUrl;
  }

  private request<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    return this.connection.request<T>(method, path, this.apiSecret, options);
  }

  /** A ChatClient acting as `userId` (the backend posting as a user; no WebSocket). */
  asUser(userId: string): ChatClient {
    segment(userId);
    return new ChatClient({ baseUrl: this.baseUrl, token: this.apiSecret }, { connection: this.connection, actingAs: userId });
  }

  // -- users ---------------------------------------------------------------------------------

  /** Create the user or update it; fields left undefined are not sent (and stay unchanged). */
  upsertUser(userId: string, fields: { name?: string | null; imageUrl?: string | null; role?: "user" | "moderator" | "admin"; data?: JsonObject } = {}): Promise<User> {
    const body = compact({ name: fields.name, image_url: fields.imageUrl, role: fields.role, data: fields.data });
    return this.request("PUT", `/v1/users/${segment(userId)}`, { body });
  }

  getUser(userId: string): Promise<User> {
    return this.request("GET", `/v1/users/${segment(userId)}`);
  }

  /** `anonymize` (default) keeps their messages without identity; `hard` removes everything. */
  async deleteUser(userId: string, mode: "anonymize" | "hard" = "anonymize"): Promise<void> {
    await this.request("DELETE", `/v1/users/${segment(userId)}`, { query: { mode } });
  }

  /** Refuse every token of the user issued before now; its open sockets close with 4001. */
  async revokeTokens(userId: string): Promise<void> {
    await this.request("POST", `/v1/users/${segment(userId)}/revoke-tokens`);
  }

  /** A user JWT to hand to that user's app (valid `ttlSeconds`, server default 3600). */
  createToken(userId: string, options: { ttlSeconds?: number } = {}): Promise<Token> {
    const body = compact({ ttl_seconds: options.ttlSeconds });
    return this.request("POST", `/v1/users/${segment(userId)}/token`, { body });
  }

  // -- webhooks ------------------------------------------------------------------------------

  /** Register an endpoint for event types (or `["*"]`); keep the returned `secret`: shown once. */
  createWebhook(input: { url: string; events: string[] }): Promise<Webhook> {
    return this.request("POST", "/v1/webhooks", { body: { url: input.url, events: input.events } });
  }

  async listWebhooks(): Promise<Webhook[]> {
    return (await this.request<{ webhooks: Webhook[] }>("GET", "/v1/webhooks")).webhooks;
  }

  async deleteWebhook(webhookId: string): Promise<void> {
    await this.request("DELETE", `/v1/webhooks/${segment(webhookId)}`);
  }

  listDeliveries(webhookId: string, options: { status?: DeliveryStatus; limit?: number; cursor?: string } = {}): Promise<DeliveryPage> {
    return this.request("GET", `/v1/webhooks/${segment(webhookId)}/deliveries`, { query: options });
  }

  /** A page of the audit log, newest first; pass `next_cursor` back as `cursor`. */
  listAudit(options: { actor?: string; action?: string; limit?: number; cursor?: string } = {}): Promise<AuditPage> {
    return this.request("GET", "/v1/audit", { query: options });
  }

  async replayDelivery(webhookId: string, deliveryId: string): Promise<void> {
    await this.request("POST", `/v1/webhooks/${segment(webhookId)}/deliveries/${segment(deliveryId)}/replay`);
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

  // -- flags and the review queue (issue 14 point 4) -----------------------------------------

  /** A page of the review queue (workspace moderators and admins), newest first. */
  listFlags(options: { status?: FlagStatus; limit?: number; cursor?: string } = {}): Promise<FlagPage> {
    return this.request("GET", "/v1/moderation/flags", { query: options });
  }

  /** Every flag of `status` (default open), newest first, a page at a time. */
  async *iterFlags(options: { status?: FlagStatus; pageSize?: number } = {}): AsyncGenerator<Flag> {
    yield* walkPages((cursor) => this.listFlags({ status: options.status, limit: options.pageSize, cursor }), (page) => page.flags);
  }

  // -- the user directory (issue 14, point 6) ---------------------------------------------------

  /** A page of the user directory, by id: every active user of the workspace. `q` keeps users whose id or name starts with
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

  /** Close an open flag: dismiss it, delete the flagged message, or ban the user. */
  resolveFlag(flagId: string, action: FlagAction, options: { reason?: string } = {}): Promise<Flag> {
    return this.request("POST", `/v1/moderation/flags/${segment(flagId)}/resolve`, { body: compact({ action, reason: options.reason }) });
  }

  // -- privacy (issue 14, point 7) --------------------------------------------------------------

  /** Everything stored about the user as one JSON document, attachments with download URLs
   * valid 15 minutes. Recorded in the audit log (`user.exported`). */
  exportUser(userId: string): Promise<UserExport> {
    return this.request("GET", `/v1/users/${segment(userId)}/export`);
  }
}

// -- webhook signatures (Standard Webhooks) ----------------------------------------------------

/** A webhook's body: one persisted event. */
export type WebhookEvent = PersistedEvent;

function header(headers: Headers | Record<string, string | string[] | undefined>, name: string): string | null {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name);
  const record = headers as Record<string, string | string[] | undefined>;
  const found = Object.keys(record).find((key) => key.toLowerCase() === name);
  const value = found === undefined ? undefined : record[found];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Check a webhook request's Standard Webhooks signature and return its event.
 *
 * `body` is the raw request body exactly as received (a string or bytes: not re-serialized JSON);
 * `headers` the request's headers (a `Headers` or Node's `req.headers`); `secret` the endpoint's
 * `whsec_…` secret. Throws a `CariosanError` (`UNAUTHORIZED`) when the signature does not match
 * or the timestamp is more than `toleranceSeconds` (default 300) away from now.
 */
export async function verifyWebhook(
  body: string | Uint8Array,
  headers: Headers | Record<string, string | string[] | undefined>,
  secret: string,
  options: { toleranceSeconds?: number; now?: number } = {},
): Promise<WebhookEvent> {
  const refuse = (why: string) => new CariosanError(`webhook refused: ${why}`, { code: "UNAUTHORIZED", status: 401 });
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) throw refuse("missing webhook-id, webhook-timestamp or webhook-signature");
  const seconds = Number(timestamp);
  const now = options.now ?? Date.now() / 1000;
  if (!Number.isInteger(seconds) || Math.abs(now - seconds) > (options.toleranceSeconds ?? 300)) {
    throw refuse("timestamp too old or too new");
  }
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error("verifyWebhook needs Web Crypto (Node 20+, any browser)");
  const key = await subtle.importKey("raw", base64ToBytes(secret.replace(/^whsec_/, "")), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await subtle.sign("HMAC", key, new TextEncoder().encode(`${id}.${timestamp}.${text}`));
  const expected = bytesToBase64(new Uint8Array(mac));
  const matches = signatures.split(" ").some((entry) => {
    const [version, signature] = entry.split(",", 2);
    return version === "v1" && signature !== undefined && sameText(signature, expected);
  });
  if (!matches) throw refuse("no signature matches the secret");
  return JSON.parse(text) as WebhookEvent;
}
