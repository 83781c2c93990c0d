import { CariosanError } from "./errors.js";
import type { ConnectionState, LiveEvent, LiveEventOf, LiveEventType } from "./types.js";

/** The part of the WebSocket API the stream uses: the browser's, React Native's, Node 22's or `ws`'s. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Close codes of the server (docs/realtime.md). */
export const CLOSE_UNAUTHORIZED = 4001;
export const CLOSE_RATE_LIMITED = 4008;
/** Banned from the workspace (issue 14): reconnecting is refused while the ban lasts. */
export const CLOSE_BANNED = 4003;

/** Reconnect delays in milliseconds (jittered ±50 %): the first, doubling up to `maxMs`; at least `rateLimitedMs` after a 4008 close. */
export const BACKOFF = { firstMs: 250, maxMs: 30_000, rateLimitedMs: 2000 };

type Handler<T extends LiveEventType> = (event: LiveEventOf<T>) => void;
type AnyHandler = (event: LiveEvent) => void;
type ErrorHandler = (error: CariosanError) => void;

export interface LiveStreamOptions {
  url: string;
  WebSocket: WebSocketConstructor;
  token: () => Promise<string>;
  /** Asks for a new token after `rejected` was refused (null: no tokenProvider). */
  refresh: ((rejected: string) => Promise<string>) | null;
  afterSeq: number | null;
}

/**
 * One user's live events. Subscribe with `on(type, handler)` (or `on("*", handler)`), stop with
 * `close()`. The stream keeps itself connected: after any close it reconnects with backoff and
 * sends `resume` with the last seq it emitted, skips what it already emitted, and reports its
 * state as `connection.changed` events (`connecting`, `connected`, `reconnecting`, `closed`).
 * `resync.required` (the server trimmed the events after our seq) is emitted to the app, which
 * should refetch channels and history; the stream itself continues from the new `latest_seq`.
 * A token refused twice in a row (close 4001) ends the stream with an `UNAUTHORIZED` error.
 */
export class LiveStream {
  /** The seq of the last persisted event emitted (the resume point). */
  lastSeq: number | null;
  state: ConnectionState = "connecting";
  /** How many times the connection was lost and made again. */
  reconnects = 0;

  private readonly options: LiveStreamOptions;
  private readonly handlers = new Map<string, Set<AnyHandler>>();
  private readonly errorHandlers = new Set<ErrorHandler>();
  private socket: WebSocketLike | null = null;
  private delayMs = BACKOFF.firstMs;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private refusedInARow = 0;
  private readyWaiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(options: LiveStreamOptions) {
    this.options = options;
    this.lastSeq = options.afterSeq;
    queueMicrotask(() => void this.open());
  }

  on<T extends LiveEventType>(type: T, handler: Handler<T>): this;
  on(type: "*", handler: AnyHandler): this;
  on(type: string, handler: AnyHandler): this {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler);
    return this;
  }

  off<T extends LiveEventType>(type: T, handler: Handler<T>): this;
  off(type: "*", handler: AnyHandler): this;
  off(type: string, handler: AnyHandler): this {
    this.handlers.get(type)?.delete(handler);
    return this;
  }

  /** Called when the stream gives up (a token refused after a refresh, or no tokenProvider). */
  onError(handler: ErrorHandler): this {
    this.errorHandlers.add(handler);
    return this;
  }

  /** Resolves once connected and resumed (rejects if the stream ends first). */
  ready(): Promise<void> {
    if (this.state === "connected") return Promise.resolve();
    if (this.closed) return Promise.reject(new Error("the stream is closed"));
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Send a client frame (`typing.start`/`typing.stop` with `channel_id`); dropped while disconnected. */
  send(frame: { type: "typing.start" | "typing.stop"; channel_id: string } | { type: "ping" }): boolean {
    if (this.state !== "connected" || !this.socket) return false;
    try {
      this.socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = socket.onmessage = socket.onerror = socket.onopen = null;
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
    }
    this.setState("closed");
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(new Error("the stream is closed"));
  }

  // -- internals -----------------------------------------------------------------------------

  private emit(event: LiveEvent): void {
    for (const key of [event.type, "*"]) {
      for (const handler of [...(this.handlers.get(key) ?? [])]) {
        try {
          handler(event);
        } catch (error) {
          // An app's handler bug must not stop the stream: report it the platform's way.
          const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
          if (report) report(error);
          else console.error("cariosan: an event handler threw", error);
        }
      }
    }
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit({ type: "connection.changed", state });
  }

  private fail(error: CariosanError): void {
    for (const handler of this.errorHandlers) handler(error);
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error);
    this.close();
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    let token: string;
    try {
      token = await this.options.token();
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.closed) return;
    let socket: WebSocketLike;
    try {
      socket = new this.options.WebSocket(`${this.options.url}?token=${encodeURIComponent(token)}`);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let resumed = false;
    socket.onerror = () => undefined; // a close follows
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      let frame: unknown;
      try {
        frame = JSON.parse(typeof message.data === "string" ? message.data : String(message.data));
      } catch {
        return;
      }
      if (!frame || typeof frame !== "object" || typeof (frame as { type?: unknown }).type !== "string") return;
      const event = frame as LiveEvent & { seq?: unknown };
      if (event.type === "connection.ready") {
        if (this.lastSeq === null) this.lastSeq = event.latest_seq;
        // Resume at once: replays what was missed, then live events follow.
        socket.send(JSON.stringify({ type: "resume", after_seq: this.lastSeq }));
        resumed = true;
        this.refusedInARow = 0;
        this.delayMs = BACKOFF.firstMs;
        this.setState("connected");
        this.emit(event);
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        return;
      }
      if (event.type === "resync.required") {
        this.lastSeq = event.latest_seq;
        this.emit(event);
        return;
      }
      if (typeof event.seq === "number") {
        if (this.lastSeq !== null && event.seq <= this.lastSeq) return; // already emitted
        this.lastSeq = event.seq;
      }
      this.emit(event);
    };
    socket.onclose = (close) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (this.closed) return;
      this.reconnects += 1;
      if (close.code === CLOSE_BANNED) {
        this.fail(new CariosanError("the WebSocket was closed: the user is banned from the workspace (4003)", { code: "BANNED", status: 403 }));
        return;
      }
      if (close.code === CLOSE_UNAUTHORIZED) {
        this.refusedInARow += 1;
        if (!this.options.refresh || this.refusedInARow > 1) {
          this.fail(new CariosanError("the WebSocket was closed: the token is not valid (4001)", { code: "UNAUTHORIZED", status: 401 }));
          return;
        }
        this.setState("reconnecting");
        this.options.refresh(token).then(
          () => void this.open(),
          (error: unknown) =>
            this.fail(
              error instanceof CariosanError
                ? error
                : new CariosanError(`the tokenProvider failed: ${String(error)}`, { code: "UNAUTHORIZED", status: 401, cause: error }),
            ),
        );
        return;
      }
      if (close.code === CLOSE_RATE_LIMITED) this.delayMs = Math.max(this.delayMs, BACKOFF.rateLimitedMs);
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    this.setState("reconnecting");
    const delay = this.delayMs * (0.5 + Math.random());
    this.delayMs = Math.min(this.delayMs * 2, BACKOFF.maxMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.open();
    }, delay);
  }
}
