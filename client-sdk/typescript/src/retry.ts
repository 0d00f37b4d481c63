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
 *
 * Every attempt is reported to `onAttempt` when one is given (the operation, the attempt's
 * number, its status or error, and the wait before the next attempt when there is one):
 * the counterpart of the Rust SDK's `minitter_client.attempt` tracing span.
 */

import type { Middleware } from "openapi-fetch";

import type { Operation } from "./generated/operations.js";
import { RateLimit } from "./rate-limit.js";

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

/** One attempt of a call, as {@link ResilienceOptions.onAttempt} sees it once it is over. */
export interface Attempt {
  /** The `operationId` (such as `get_timeline`), when the call was made through a client's `api`. */
  readonly operation: string | undefined;
  /** 1 for the first attempt, 2 for the first retry… */
  readonly attempt: number;
  /** The HTTP method. */
  readonly method: string;
  /** The request's URL. */
  readonly url: string;
  /** The response's status, when there was a response. */
  readonly status: number | undefined;
  /** What the attempt threw (a network failure, a timeout), when there was no response. */
  readonly error: unknown;
  /** The rate limits the response reported (each page of an iteration included). */
  readonly rateLimit: RateLimit | undefined;
  /** How long the SDK waits before the next attempt, or `undefined` when this one was the last. */
  readonly retryInMs: number | undefined;
}

export interface ResilienceOptions {
  retry?: RetryOptions | undefined;
  /** How long one attempt may take, from sending the request to reading the whole response. Default 30000. */
  timeoutMs?: number | undefined;
  /**
   * Called after every attempt (the first one included), before the SDK waits for the
   * next one: to log, count or trace retries. It is awaited; if it throws, the call fails.
   */
  onAttempt?: ((attempt: Attempt) => void | Promise<void>) | undefined;
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

/** The operation of each request that {@link tagOperations} saw, for {@link Attempt.operation}. */
const operationOfRequest = new WeakMap<Request, string>();

/**
 * An openapi-fetch middleware that records which operation (by the document's facts:
 * `method` and path template) each request belongs to, so that {@link resilientFetch}
 * can name it in {@link Attempt.operation}. `createClient` installs it last.
 */
export function tagOperations(operations: readonly Operation[]): Middleware {
  const ids = new Map<string, string>();
  for (const operation of operations) ids.set(`${operation.method} ${operation.path}`, operation.id);
  return {
    onRequest({ request, schemaPath }) {
      const id = ids.get(`${request.method} ${schemaPath}`);
      if (id !== undefined) operationOfRequest.set(request, id);
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

/** Waits `ms`, or rejects with the signal's reason as soon as the caller gives up. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", abort);
      resolve();
    }, ms);
    signal.addEventListener("abort", abort, { once: true });
  });
}

/**
 * One attempt of `request`, given up after `timeoutMs` (a `TimeoutError`) or as soon as
 * the caller aborts. The request's signal aborts the transfer, but Node's `fetch` can
 * lose a signal it follows once a garbage collection runs (nodejs/undici#4068,
 * nodejs/node#55428: the attempt then waits for undici's own 300 s headers timeout), so
 * the deadline does not rest on the signal alone: the attempt also loses a race against
 * its own timer and the caller's signal. The timer keeps running after the response
 * arrives, so a body that is still being read when it fires is aborted too; it does not
 * keep a Node process alive.
 */
async function attemptWithDeadline(
  inner: typeof fetch,
  request: Request,
  deadline: AbortController,
  timeoutMs: number,
  callerSignal: AbortSignal,
): Promise<Response> {
  let giveUp: (reason: unknown) => void = () => {};
  const givenUp = new Promise<never>((_, reject) => {
    giveUp = reject;
  });
  const timer = setTimeout(() => {
    const reason = new DOMException("The operation was aborted due to timeout", "TimeoutError");
    deadline.abort(reason);
    giveUp(reason);
  }, timeoutMs);
  if (typeof timer === "object" && timer !== null && "unref" in timer) timer.unref();
  const callerAborted = () => {
    clearTimeout(timer);
    deadline.abort(callerSignal.reason);
    giveUp(callerSignal.reason);
  };
  if (callerSignal.aborted) callerAborted();
  else callerSignal.addEventListener("abort", callerAborted, { once: true });
  try {
    return await Promise.race([inner(request), givenUp]);
  } finally {
    callerSignal.removeEventListener("abort", callerAborted);
  }
}

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
  const onAttempt = options.onAttempt;

  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const operation = input instanceof Request ? operationOfRequest.get(input) : undefined;
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
      const deadline = new AbortController();
      const request = new Request(original.url, {
        method: original.method,
        headers,
        body,
        redirect: original.redirect,
        // The caller's abort also ends a body still being read (best effort: see above).
        signal: AbortSignal.any([original.signal, deadline.signal]),
      });
      const last = attempt >= retry.maxRetries;
      const report = async (response: Response | undefined, error: unknown, retryInMs: number | undefined) => {
        if (onAttempt === undefined) return;
        await onAttempt({
          operation,
          attempt: attempt + 1,
          method: original.method,
          url: original.url,
          status: response?.status,
          error,
          rateLimit: response && RateLimit.fromHeaders(response.headers),
          retryInMs,
        });
      };
      let response: Response;
      try {
        response = await attemptWithDeadline(inner, request, deadline, timeoutMs, original.signal);
      } catch (error) {
        const retrying = !last && shouldRetryError(error, safety, original.signal);
        const wait = retrying ? backoffMs(attempt, retry) : undefined;
        await report(undefined, error, wait);
        if (wait === undefined) throw error;
        await sleep(wait, original.signal);
        continue;
      }
      let wait: number | undefined;
      if (!last && (await shouldRetryResponse(response, safety))) {
        const asked = retryAfterMs(response.headers.get("retry-after"));
        wait = asked === undefined ? backoffMs(attempt, retry) : asked > retry.maxRetryAfterMs ? undefined : asked;
      }
      await report(response, undefined, wait);
      if (wait === undefined) return response;
      await response.body?.cancel();
      await sleep(wait, original.signal);
    }
  };
}
