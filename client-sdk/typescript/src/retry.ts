/**
 * Retries, per-attempt timeouts and automatic idempotency keys, as a `fetch` wrapper that
 * {@link createClient} hands to openapi-fetch, so that every call of `client.api` (and
 * every convenience built on it) goes through it.
 *
 * What is retried, at most `maxRetries` times after the first attempt (2 by default;
 * 0 turns retries off):
 *
 * - `429 Too Many Requests`, always: the gateway refused the request before running it;
 * - `502`, `503`, `504` and network failures (refused, reset, closed, timed out), only for
 *   requests that are safe to replay: `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, and
 *   `POST`/`PATCH` carrying an `Idempotency-Key`. A `POST`/`PATCH` without one is retried
 *   only when the connection was refused, so the server never saw it;
 * - `409 request_in_flight` for requests carrying an `Idempotency-Key`: the first attempt
 *   is still running, and the retry gets its response.
 *
 * Nothing else is: a 400, 401, 403, 404, 422… would fail again.
 *
 * A request to an operation that takes an `Idempotency-Key` gets one
 * (`crypto.randomUUID()`) when the caller sent none, from {@link idempotencyKeys}, and
 * every attempt sends the same key, so a retried post creates one tweet. Which operations
 * take the key is read from the OpenAPI document by codegen (`./generated/operations.ts`),
 * not listed here: an operation added to the document with that header is retried
 * safely with no change to this file.
 *
 * Between attempts it waits for the server's `Retry-After` (seconds or an HTTP date) when
 * there is one, else for exponential backoff with full jitter: a random delay between 0
 * and `min(maxDelayMs, baseDelayMs × 2^retry)`. A `Retry-After` longer than
 * `maxRetryAfterMs` (60 s) ends the retries at once, and the response is returned.
 */

import type { Middleware } from "openapi-fetch";

import type { Operation } from "./generated/operations.js";

export interface RetryOptions {
  /** Retries after the first attempt; 0 disables retrying. Default 2. */
  maxRetries?: number;
  /** The backoff before the first retry is at most this; it doubles each retry. Default 500. */
  baseDelayMs?: number;
  /** The cap on a backoff delay. Default 8000. */
  maxDelayMs?: number;
  /** The longest `Retry-After` to honour; a longer one ends the retries. Default 60000. */
  maxRetryAfterMs?: number;
}

export interface ResilienceOptions {
  retry?: RetryOptions | undefined;
  /** How long one attempt may take, from sending the request to reading the whole response. Default 30000. */
  timeoutMs?: number | undefined;
}

export const DEFAULT_RETRY: Required<RetryOptions> = {
  maxRetries: 2,
  baseDelayMs: 500,
  maxDelayMs: 8000,
  maxRetryAfterMs: 60_000,
};
export const DEFAULT_TIMEOUT_MS = 30_000;

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

type Safety = "idempotent" | "idempotency-key" | "not-idempotent";

/** The backoff before retry number `retry` (0 for the first), with full jitter. */
export function backoffMs(retry: number, options: Required<RetryOptions>): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** retry);
  return Math.random() * ceiling;
}

/** The wait a `Retry-After` value asks for, in milliseconds: delay-seconds or an HTTP date. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * An openapi-fetch middleware that gives a request a fresh `Idempotency-Key` when its
 * operation takes one (by the document's facts: `method` and path template) and the
 * caller sent none. It runs once per call, before {@link resilientFetch}'s attempts, so
 * every attempt sends the same key.
 */
export function idempotencyKeys(operations: readonly Operation[]): Middleware {
  const keyed = new Map<string, string>();
  for (const operation of operations) {
    if (operation.idempotencyKey !== null) keyed.set(`${operation.method} ${operation.path}`, operation.idempotencyKey);
  }
  return {
    onRequest({ request, schemaPath }) {
      const header = keyed.get(`${request.method} ${schemaPath}`);
      if (header !== undefined && !request.headers.has(header)) request.headers.set(header, crypto.randomUUID());
      return request;
    },
  };
}

/** The error's network code (`ECONNREFUSED`…), wherever undici put it. */
function networkCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function shouldRetryError(error: unknown, safety: Safety, callerSignal: AbortSignal): boolean {
  if (callerSignal.aborted) return false; // the caller gave up
  if (error instanceof DOMException && error.name === "TimeoutError") return safety !== "not-idempotent";
  if (!(error instanceof TypeError)) return false; // fetch reports network failures as TypeError
  const code = networkCode(error);
  if (code === "ECONNREFUSED") return true; // never reached the server
  return safety !== "not-idempotent";
}

async function shouldRetryResponse(response: Response, safety: Safety): Promise<boolean> {
  switch (response.status) {
    case 429:
      return true;
    case 502:
    case 503:
    case 504:
      return safety !== "not-idempotent";
    case 409: {
      if (safety !== "idempotency-key") return false;
      const problem: unknown = await response
        .clone()
        .json()
        .catch(() => undefined);
      return typeof problem === "object" && problem !== null && (problem as { code?: unknown }).code === "request_in_flight";
    }
    default:
      return false;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A `fetch` that retries as described in this module, with a timeout per attempt.
 * `createClient` uses it; it is exported to wrap calls made without openapi-fetch.
 */
export function resilientFetch(inner: typeof fetch, options: ResilienceOptions = {}): typeof fetch {
  const retry: Required<RetryOptions> = { ...DEFAULT_RETRY };
  for (const [name, value] of Object.entries(options.retry ?? {})) {
    if (value !== undefined) retry[name as keyof RetryOptions] = value;
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const original = new Request(input, init);
    const headers = new Headers(original.headers);
    const safety: Safety = headers.has("idempotency-key")
      ? "idempotency-key"
      : IDEMPOTENT_METHODS.has(original.method)
        ? "idempotent"
        : "not-idempotent";
    // Read the body once, so that every attempt can send it again.
    const body = original.body === null ? null : await original.arrayBuffer();

    for (let attempt = 0; ; attempt++) {
      const request = new Request(original.url, {
        method: original.method,
        headers,
        body,
        redirect: original.redirect,
        signal: AbortSignal.any([original.signal, AbortSignal.timeout(timeoutMs)]),
      });
      const last = attempt >= retry.maxRetries;
      let response: Response;
      try {
        response = await inner(request);
      } catch (error) {
        if (last || !shouldRetryError(error, safety, original.signal)) throw error;
        await sleep(backoffMs(attempt, retry));
        continue;
      }
      if (last || !(await shouldRetryResponse(response, safety))) return response;
      const wait = retryAfterMs(response.headers.get("retry-after"));
      if (wait !== undefined && wait > retry.maxRetryAfterMs) return response;
      await response.body?.cancel();
      await sleep(wait ?? backoffMs(attempt, retry));
    }
  };
}
