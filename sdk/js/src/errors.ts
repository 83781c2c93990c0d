/** The API's error codes (API.md "Errors and limits"); a newer server may send others. */
export type ErrorCode =
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "BANNED"
  | "NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "VALIDATION_FAILED"
  | "CONFLICT"
  | "EVENTS_EXPIRED"
  | "PAYLOAD_TOO_LARGE"
  | "RATE_LIMITED"
  | "UNAVAILABLE"
  | "INTERNAL"
  | (string & {});

const BY_STATUS: Record<number, ErrorCode> = {
  400: "VALIDATION_FAILED",
  401: "UNAUTHORIZED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  405: "METHOD_NOT_ALLOWED",
  409: "CONFLICT",
  410: "EVENTS_EXPIRED",
  413: "PAYLOAD_TOO_LARGE",
  415: "VALIDATION_FAILED",
  422: "VALIDATION_FAILED",
  429: "RATE_LIMITED",
  500: "INTERNAL",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "UNAVAILABLE",
};

/**
 * Every error of the SDK. `code` is the API's code; `status` the HTTP status (0 when the server
 * could not be reached); `requestId` the server's request id (quote it when reporting a problem);
 * `retryAfter` the seconds of `Retry-After`, when sent.
 */
export class CariosanError extends Error {
  override readonly name = "CariosanError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly requestId: string | null;
  readonly retryAfter: number | null;

  constructor(
    message: string,
    options: { code: ErrorCode; status: number; requestId?: string | null; retryAfter?: number | null; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    this.status = options.status;
    this.requestId = options.requestId ?? null;
    this.retryAfter = options.retryAfter ?? null;
  }
}

/** Seconds from a `Retry-After` header (delta-seconds or an HTTP date). */
export function parseRetryAfter(value: string | null): number | null {
  if (!value) return null;
  const seconds = Number(value.trim());
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, (when - Date.now()) / 1000);
}

/** The error of a non-2xx response: by the envelope's `code`, else by the HTTP status. */
export async function errorFromResponse(response: Response): Promise<CariosanError> {
  let envelope: { code?: unknown; message?: unknown; request_id?: unknown } = {};
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && "error" in body) {
      const error = (body as { error: unknown }).error;
      if (error && typeof error === "object") envelope = error as typeof envelope;
    }
  } catch {
    // not JSON (a proxy's error page): fall back on the status
  }
  const status = response.status;
  const code =
    typeof envelope.code === "string" && envelope.code
      ? envelope.code
      : (BY_STATUS[status] ?? (status >= 500 ? "INTERNAL" : `HTTP_${status}`));
  const message =
    typeof envelope.message === "string" && envelope.message
      ? envelope.message
      : `HTTP ${status} ${response.statusText}`.trim();
  const requestId =
    typeof envelope.request_id === "string" ? envelope.request_id : response.headers.get("x-request-id");
  return new CariosanError(message, {
    code,
    status,
    requestId,
    retryAfter: parseRetryAfter(response.headers.get("retry-after")),
  });
}

/** The server could not be reached (status 0, code UNAVAILABLE). */
export function transportError(cause: unknown): CariosanError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new CariosanError(`cannot reach the Cariosan server: ${detail}`, { code: "UNAVAILABLE", status: 0, cause });
}
