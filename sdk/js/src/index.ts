/**
 * The Cariosan SDK: `ChatClient` for end users' apps (browser, React Native, Node), and
 * `ServerClient` + `verifyWebhook` for your backend. No runtime dependencies.
 */
export { banBody, ChatClient, newMessageId, SEND_RETRY_DELAYS } from "./chat.js";
export type {
  BanOptions, ChatClientOptions, CreateChannelInput, SendInput, TokenProvider, UploadedAttachment, UploadOptions, UploadProgress,
} from "./chat.js";
export { CariosanError, parseRetryAfter } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { BACKOFF, CLOSE_BANNED, CLOSE_RATE_LIMITED, CLOSE_UNAUTHORIZED, LiveStream } from "./live.js";
export type { LiveStreamOptions, WebSocketConstructor, WebSocketLike } from "./live.js";
export { ServerClient, verifyWebhook } from "./server.js";
export type { ServerClientOptions, WebhookEvent } from "./server.js";
export * from "./types.js";
