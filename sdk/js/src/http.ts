import { CariosanError, errorFromResponse, transportError } from "./errors.js";

export type Query = Record<string, string | number | boolean | null | undefined>;
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** A path segment, escaped; an empty id is a caller bug, reported before any request. */
export function segment(value: string): string {
  if (typeof value !== "string" || value === "") {
    throw new CariosanError("an id must be a non-empty string", { code: "VALIDATION_FAILED", status: 0 });
  }
  return encodeURIComponent(value);
}

/** The fields of `body` that are set (undefined ones are not sent). */
export function compact<T extends object>(body: T): Partial<T> {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/** One base URL and one fetch; every call sends a Bearer credential and decodes JSON. */
export class Connection {
  readonly baseUrl: string;
  private readonly fetchImpl: FetchLike;

  constructor(baseUrl: string, fetchImpl?: FetchLike) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    const found = fetchImpl ?? (globalThis.fetch as FetchLike | undefined);
    if (!found) throw new Error("no fetch: pass `fetch` in the options");
    this.fetchImpl = (input, init) => found(input, init);
  }

  url(path: string, query?: Query): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  async request<T>(method: string, path: string, credential: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${credential}`, accept: "application/json" };
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path, options.query), init);
    } catch (cause) {
      throw transportError(cause);
    }
    if (!response.ok) throw await errorFromResponse(response);
    if (response.status === 204 || response.status === 202) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** Every item of a cursor-paged list, fetching a page at a time until one has no `next_cursor`. */
export async function* walkPages<P extends { next_cursor: string | null }, T>(
  fetchPage: (cursor: string | undefined) => Promise<P>,
  items: (page: P) => T[],
): AsyncGenerator<T> {
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    const found = items(page);
    yield* found;
    if (!page.next_cursor || found.length === 0) return;
    cursor = page.next_cursor;
  }
}
