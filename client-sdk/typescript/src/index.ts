/**
 * `@minitter/client`: the TypeScript SDK for the Minitter API.
 *
 * The types are generated from `openapi.yaml` by openapi-typescript (`src/generated/`,
 * never edited) and the requests are made by openapi-fetch, so every path, parameter and
 * body is checked by `tsc` against the spec. This file is the small hand-written part:
 * a constructor that sends the credentials, errors as a typed {@link Problem}, an
 * async iterator over every paginated operation (the Rust SDK's `*_stream()`), retries
 * with backoff, a timeout per attempt, a hook per attempt and automatic idempotency keys
 * for the operations whose document entry takes one (see `./retry.ts`; the facts come
 * from `./generated/operations.ts`, written by codegen from the same document), a
 * conditional read's `304` as a typed outcome ({@link conditional}), the rate limits
 * of every response ({@link rateLimit}, `./rate-limit.ts`), and the realtime stream
 * ({@link MinitterClient.stream}: `./stream.ts`, its events, options and errors in
 * `./stream-types.ts`, its reconnect policy in `./stream-policy.ts`, its message types
 * generated from `asyncapi.yaml`).
 */
import createFetchClient, { type Client } from "openapi-fetch";

import { operations as operationFacts, type ProblemCode } from "./generated/operations.js";
import type { components, operations, paths } from "./generated/schema.js";
import { RateLimit } from "./rate-limit.js";
import { type Attempt, DEFAULT_RETRY, idempotencyKeys, type RetryOptions, resilientFetch, tagOperations } from "./retry.js";
import { MinitterStream } from "./stream.js";
import type { StreamOptions } from "./stream-types.js";

export {
  type Attempt,
  backoffMs,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
  idempotencyKeys,
  type ResilienceOptions,
  resilientFetch,
  type RetryOptions,
  retryAfterMs,
  tagOperations,
} from "./retry.js";
export { RateLimit, type RateLimitPolicy } from "./rate-limit.js";
export {
  type KnownWebhookEventType,
  verifyWebhook,
  WEBHOOK_TOLERANCE_SECONDS,
  type WebhookBody,
  WebhookError,
  type WebhookErrorReason,
  type WebhookEvent,
  type WebhookHeaders,
} from "./webhooks.js";

export { MinitterStream, socketUrl } from "./stream.js";
export {
  StreamError,
  type StreamErrorReason,
  type StreamEvent,
  type StreamOptions,
  type StreamState,
  type StreamTweet,
  type Topic,
  type TopicSubscription,
  type TweetDeletedData,
  userTopic,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./stream-types.js";
export {
  type Backoff,
  backoffCeilingMs,
  backoffDelayMs,
  CLOSE_ABNORMAL,
  CLOSE_GOING_AWAY,
  CLOSE_LAGGED,
  CLOSE_POLICY,
  CLOSE_QUOTA,
  CLOSE_UNAUTHORIZED,
  DEFAULT_STREAM_BACKOFF,
  type Disconnect,
  NIL_UUID,
  Positions,
  reconnectDelayMs,
  reconnectPlan,
  type ReconnectPlan,
} from "./stream-policy.js";
// The stream's messages as asyncapi.yaml defines them (generated, never edited), for
// applications that speak to the socket themselves; `client.stream()` turns them into
// `StreamEvent`s.
export type {
  ClientMessage,
  ErrorMessage,
  LaggedMessage,
  PingMessage,
  PongMessage,
  ServerMessage,
  SubscribedMessage,
  SubscribeMessage,
  TweetCreatedMessage,
  TweetDeletedMessage,
  UnsubscribedMessage,
  UnsubscribeMessage,
} from "./generated/stream.js";

export { type Operation, operations as operationFacts } from "./generated/operations.js";
export type { components, operations, paths };

// The `code`s the document lists for a `Problem` (its `x-extensible-enum`), as codegen
// writes them: `KnownProblemCode` is their union, and `ProblemCode` is that or any newer string.
export { type KnownProblemCode, knownProblemCodes, type ProblemCode } from "./generated/operations.js";
/**
 * An RFC 9457 problem document: what every refusal carries. A `400` lists every invalid
 * field in `errors`, each with a JSON pointer. The SDK does not validate requests itself,
 * so a value the schema refuses (a too-long tweet, an invalid email) is refused by the
 * server, always in this one shape.
 */
export type Problem = Omit<components["schemas"]["Problem"], "code"> & { code: ProblemCode };
/** One way in which a request breaks the document (an entry of {@link Problem.errors}). */
export type Violation = components["schemas"]["Violation"];
export type User = components["schemas"]["User"];
export type CurrentUser = components["schemas"]["CurrentUser"];
export type Tweet = components["schemas"]["Tweet"];
export type Picture = components["schemas"]["Picture"];

/** An error response from the API, with its RFC 9457 problem document. */
export class MinitterError extends Error {
  constructor(
    readonly status: number,
    /** The problem document, when the server answered with one (every declared error status). */
    readonly problem: Problem | undefined,
    /** The response (its body already read), for its headers. */
    readonly response?: Response,
  ) {
    super(problem ? `${status} ${problem.code}: ${problem.detail ?? problem.title}` : `HTTP ${status}`);
    this.name = "MinitterError";
  }

  /** The rate limits the refusal reported (a `429` reports what is left: nothing). */
  get rateLimit(): RateLimit | undefined {
    return this.response === undefined ? undefined : RateLimit.fromHeaders(this.response.headers);
  }

  /** The `Retry-After` of a `429` or `503`, in seconds. */
  get retryAfterSeconds(): number | undefined {
    const value = this.response?.headers.get("retry-after");
    return value !== null && value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
  }
}

/**
 * The rate limits a response reports (`RateLimit-Policy` and `RateLimit`, else
 * `X-RateLimit-*`): its quota and throttle, each with `limit`, `remaining` and
 * `resetSeconds`. Give it a `Response`, its `Headers`, anything with a `response` (what
 * `client.api` calls resolve to, a {@link Success} or {@link Conditional}), or a
 * {@link MinitterError}. `undefined` for an unkeyed operation such as `GET /healthz`.
 */
export function rateLimit(from: Response | Headers | { readonly response?: Response | undefined }): RateLimit | undefined {
  const headers = from instanceof Headers ? from : from instanceof Response ? from.headers : from.response?.headers;
  return headers === undefined ? undefined : RateLimit.fromHeaders(headers);
}

export interface ClientOptions {
  /** Where the API is, such as `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** The partner's API key, sent as `x-api-key`. */
  apiKey?: string;
  /** A user's token from `POST /v1/auth/token`, sent as `Authorization: Bearer …`. */
  bearerToken?: string;
  /** A `fetch` to use instead of the global one (each attempt calls it). */
  fetch?: typeof fetch;
  /**
   * Retries of `429`, `502`/`503`/`504` and network failures, with exponential backoff
   * and full jitter, honouring `Retry-After`: 2 retries, 500 ms base, 8 s cap, 60 s at
   * most for `Retry-After` by default; `{ maxRetries: 0 }` turns them off. Only requests
   * that are safe to replay are retried after a failure that leaves their fate unknown:
   * `GET`, `HEAD`, `PUT`, `DELETE`, and `POST`/`PATCH` with an `Idempotency-Key`
   * (added automatically to the operations that take one, such as `POST /v1/tweets`).
   */
  retry?: RetryOptions;
  /** How long one attempt may take, in milliseconds (default 30 000). */
  timeoutMs?: number;
  /**
   * Called after every attempt of every call (each page of an iteration included), with
   * the operation, the attempt's number, its status or error, and the wait before the
   * next attempt when there is one: to log or count retries.
   */
  onAttempt?: (attempt: Attempt) => void | Promise<void>;
}

/** One page of a keyset-paginated list. */
export type Page<T> = { items: T[]; next_page?: string | null };

/** What a `client.api` call resolves to (openapi-fetch's result), for {@link unwrap} and friends. */
export type Call<T> = Promise<{ data?: T; error?: unknown; response: Response }>;

/** A successful response: its body, and the response for its headers. */
export interface Success<T> {
  readonly value: T;
  readonly response: Response;
  /** The response's rate limits (see {@link rateLimit}). */
  readonly rateLimit: RateLimit | undefined;
}

/**
 * The outcome of a conditional read (a `GET` sent with `If-None-Match`): the `ETag` to
 * send next time, and either the current value or "not modified" (a `304`, no body).
 */
export type Conditional<T> =
  | (Success<T> & { readonly notModified: false; readonly etag: string | undefined })
  | {
      readonly notModified: true;
      readonly etag: string | undefined;
      readonly response: Response;
      readonly rateLimit: RateLimit | undefined;
    };

/** Resolves to the response body of a successful call; throws {@link MinitterError} otherwise. */
export async function unwrap<T>(call: Call<T>): Promise<T> {
  return (await unwrapResponse(call)).value;
}

/**
 * Like {@link unwrap}, with the response: `{ value, response, rateLimit }`. Throws
 * {@link MinitterError} for an error status.
 */
export async function unwrapResponse<T>(call: Call<T>): Promise<Success<T>> {
  const { data, error, response } = await call;
  if (!response.ok) throw new MinitterError(response.status, isProblem(error) ? error : undefined, response);
  return { value: data as T, response, rateLimit: RateLimit.fromHeaders(response.headers) };
}

/**
 * A conditional read, with the `304` as a typed outcome rather than an error:
 *
 * ```ts
 * const first = await conditional(client.api.GET("/v1/users/{user_id}", { params: { path: { user_id } } }));
 * const again = await conditional(
 *   client.api.GET("/v1/users/{user_id}", { params: { path: { user_id }, header: { "If-None-Match": first.etag } } }),
 * );
 * if (again.notModified) … else again.value
 * ```
 *
 * For the operations that take `If-None-Match` (`tsc` refuses the header on the others):
 * a user, a tweet, a picture, and the operator's plans, keys and usage reports. Throws
 * {@link MinitterError} for an error status.
 */
export async function conditional<T>(call: Call<T>): Promise<Conditional<T>> {
  const { data, error, response } = await call;
  const etag = response.headers.get("etag") ?? undefined;
  const limits = RateLimit.fromHeaders(response.headers);
  if (response.status === 304) return { notModified: true, etag, response, rateLimit: limits };
  if (!response.ok) throw new MinitterError(response.status, isProblem(error) ? error : undefined, response);
  return { notModified: false, etag, value: data as T, response, rateLimit: limits };
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}

/**
 * Yields every item of a keyset-paginated list, fetching pages as they are needed:
 * `fetchPage({})` for the first, then `fetchPage({ page_token })` with each page's
 * `next_page` (spread it into the call's `query`). The conveniences (`timeline()`…) are
 * built on it; use it for the other lists, such as the operator's `GET /admin/v1/api-keys`.
 * Each page is one call, retried like any other.
 */
export async function* paginate<T>(
  fetchPage: (page: { page_token?: string }) => Promise<Page<T>>,
): AsyncGenerator<T> {
  let token: string | undefined;
  do {
    const page = await fetchPage(token === undefined ? {} : { page_token: token });
    yield* page.items;
    token = page.next_page ?? undefined;
  } while (token !== undefined);
}

/** The Minitter API. `api` makes any call the spec allows; the rest are conveniences. */
export class MinitterClient {
  /** The typed openapi-fetch client: `client.api.GET("/v1/users/{user_id}", { params: { path: { user_id } } })`. */
  readonly api: Client<paths>;

  constructor(private readonly options: ClientOptions) {
    const headers: Record<string, string> = {};
    if (options.apiKey !== undefined) headers["x-api-key"] = options.apiKey;
    if (options.bearerToken !== undefined) headers["authorization"] = `Bearer ${options.bearerToken}`;
    this.api = createFetchClient<paths>({
      baseUrl: options.baseUrl,
      headers,
      fetch: resilientFetch(options.fetch ?? globalThis.fetch, {
        retry: options.retry,
        timeoutMs: options.timeoutMs,
        onAttempt: options.onAttempt,
      }),
    });
    // A key only matters to a retry: with retries off, requests go as the caller wrote them.
    if ((options.retry?.maxRetries ?? DEFAULT_RETRY.maxRetries) > 0) this.api.use(idempotencyKeys(operationFacts));
    this.api.use(tagOperations(operationFacts));
  }

  /**
   * The same client, acting as the user this token belongs to. Cheap: Node's `fetch`
   * shares one connection pool among all clients.
   */
  withBearerToken(bearerToken: string): MinitterClient {
    return new MinitterClient({ ...this.options, bearerToken });
  }

  /** The same client with other retry options; `{ maxRetries: 0 }` sends every request once. */
  withRetry(retry: RetryOptions): MinitterClient {
    return new MinitterClient({ ...this.options, retry });
  }

  /**
   * Uploads the logged-in user's profile picture: the image's bytes as they are (the spec
   * types an `application/octet-stream` body as a string, so this does the conversion).
   */
  putPicture(image: Uint8Array | Blob): Promise<Picture> {
    return unwrap(
      this.api.PUT("/v1/me/picture", {
        body: image as unknown as string,
        bodySerializer: (body: unknown) => body as BodyInit,
        headers: { "content-type": "application/octet-stream" },
      }),
    );
  }

  /**
   * The realtime stream (`asyncapi.yaml`) as this client's user (its bearer token) under
   * its key: an async iterator of {@link StreamEvent}s, with `close()`, `subscribe()` and
   * `unsubscribe()`. It connects at once (a ticket from `POST /v1/stream/tickets`, then the
   * WebSocket at the ticket's `url` on this client's base URL, `ws:` or `wss:`), subscribes
   * to `options.topics`, and reconnects as the README's "Reconnecting and resuming" says,
   * resuming every topic where it was. Browsers use their `WebSocket`; on Node 20 pass one
   * (`{ WebSocket }` from the `ws` package).
   *
   * ```ts
   * const stream = ada.stream({ topics: ["home"], WebSocket });
   * for await (const event of stream) if (event.type === "tweet.created") console.log(event.tweet.text);
   * ```
   */
  stream(options: StreamOptions = {}): MinitterStream {
    // The stream's policy decides when to ask again: the ticket is asked for once per try.
    const once = this.withRetry({ maxRetries: 0 });
    return new MinitterStream(
      {
        baseUrl: this.options.baseUrl,
        requestTicket: (signal) => once.api.POST("/v1/stream/tickets", { signal }),
      },
      options,
    );
  }

  /** A user's profile picture, as bytes and their media type. */
  async picture(userId: string): Promise<{ contentType: string; bytes: Uint8Array }> {
    const { response, data, error } = await this.api.GET("/v1/users/{user_id}/picture", {
      params: { path: { user_id: userId } },
      parseAs: "arrayBuffer",
    });
    if (!response.ok) throw new MinitterError(response.status, isProblem(error) ? error : undefined, response);
    return { contentType: response.headers.get("content-type") ?? "", bytes: new Uint8Array(data as ArrayBuffer) };
  }

  /** The logged-in user's timeline, newest first, across all pages. */
  timeline(query: { limit?: number } = {}): AsyncGenerator<Tweet> {
    return paginate((page) =>
      unwrap(this.api.GET("/v1/timeline", { params: { query: { ...query, ...page } } })),
    );
  }

  /** A user's tweets, newest first, across all pages. */
  userTweets(userId: string, query: { limit?: number } = {}): AsyncGenerator<Tweet> {
    return paginate((page) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/tweets", {
          params: { path: { user_id: userId }, query: { ...query, ...page } },
        }),
      ),
    );
  }

  /** A user's followers, most recent follow first, across all pages. */
  followers(userId: string, query: { limit?: number } = {}): AsyncGenerator<User> {
    return paginate((page) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/followers", {
          params: { path: { user_id: userId }, query: { ...query, ...page } },
        }),
      ),
    );
  }

  /** The users a user follows, most recent follow first, across all pages. */
  following(userId: string, query: { limit?: number } = {}): AsyncGenerator<User> {
    return paginate((page) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/following", {
          params: { path: { user_id: userId }, query: { ...query, ...page } },
        }),
      ),
    );
  }
}

/** A client for the API at `options.baseUrl`. */
export function createClient(options: ClientOptions): MinitterClient {
  return new MinitterClient(options);
}
