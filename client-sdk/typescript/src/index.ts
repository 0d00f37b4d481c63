/**
 * `@minitter/client`: the TypeScript SDK for the Minitter API.
 *
 * The types are generated from `openapi.yaml` by openapi-typescript (`src/generated/`,
 * never edited) and the requests are made by openapi-fetch, so every path, parameter and
 * body is checked by `tsc` against the spec. This file is the small hand-written part:
 * a constructor that sends the credentials, errors as a typed {@link Problem}, an
 * async iterator over every paginated operation (the Rust SDK's `*_stream()`), and
 * retries with backoff, a timeout per attempt and automatic idempotency keys for the
 * operations whose document entry takes one (see `./retry.ts`; the facts come from
 * `./generated/operations.ts`, written by codegen from the same document).
 */
import createFetchClient, { type Client } from "openapi-fetch";

import { operations as operationFacts } from "./generated/operations.js";
import type { components, operations, paths } from "./generated/schema.js";
import { DEFAULT_RETRY, idempotencyKeys, type RetryOptions, resilientFetch } from "./retry.js";

export {
  backoffMs,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
  idempotencyKeys,
  type ResilienceOptions,
  resilientFetch,
  type RetryOptions,
  retryAfterMs,
} from "./retry.js";

export { type Operation, operations as operationFacts } from "./generated/operations.js";
export type { components, operations, paths };
export type Problem = components["schemas"]["Problem"];
export type User = components["schemas"]["User"];
export type CurrentUser = components["schemas"]["CurrentUser"];
export type Tweet = components["schemas"]["Tweet"];
export type Picture = components["schemas"]["Picture"];

/** An error response from the API, with its RFC 9457 problem document. */
export class MinitterError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(problem ? `${status} ${problem.code}: ${problem.detail ?? problem.title}` : `HTTP ${status}`);
    this.name = "MinitterError";
  }
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
}

type Page<T> = { items: T[]; next_page?: string | null };

/** Resolves to the response body of a successful call; throws {@link MinitterError} otherwise. */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) {
    throw new MinitterError(response.status, isProblem(error) ? error : undefined);
  }
  return data as T;
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}

/** Yields every item of a keyset-paginated list, fetching pages as they are needed. */
async function* paginate<T>(fetchPage: (pageToken: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let token: string | undefined;
  do {
    const page = await fetchPage(token);
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
      fetch: resilientFetch(options.fetch ?? globalThis.fetch, { retry: options.retry, timeoutMs: options.timeoutMs }),
    });
    // A key only matters to a retry: with retries off, requests go as the caller wrote them.
    if ((options.retry?.maxRetries ?? DEFAULT_RETRY.maxRetries) > 0) this.api.use(idempotencyKeys(operationFacts));
  }

  /** The same client, acting as the user this token belongs to. */
  withBearerToken(bearerToken: string): MinitterClient {
    return new MinitterClient({ ...this.options, bearerToken });
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

  /** A user's profile picture, as bytes and their media type. */
  async picture(userId: string): Promise<{ contentType: string; bytes: Uint8Array }> {
    const { response, data, error } = await this.api.GET("/v1/users/{user_id}/picture", {
      params: { path: { user_id: userId } },
      parseAs: "arrayBuffer",
    });
    if (!response.ok) throw new MinitterError(response.status, isProblem(error) ? error : undefined);
    return { contentType: response.headers.get("content-type") ?? "", bytes: new Uint8Array(data as ArrayBuffer) };
  }

  /** The logged-in user's timeline, newest first, across all pages. */
  timeline(query: { limit?: number } = {}): AsyncGenerator<Tweet> {
    return paginate((page_token) =>
      unwrap(this.api.GET("/v1/timeline", { params: { query: { ...query, ...(page_token ? { page_token } : {}) } } })),
    );
  }

  /** A user's tweets, newest first, across all pages. */
  userTweets(userId: string, query: { limit?: number } = {}): AsyncGenerator<Tweet> {
    return paginate((page_token) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/tweets", {
          params: { path: { user_id: userId }, query: { ...query, ...(page_token ? { page_token } : {}) } },
        }),
      ),
    );
  }

  /** A user's followers, most recent follow first, across all pages. */
  followers(userId: string, query: { limit?: number } = {}): AsyncGenerator<User> {
    return paginate((page_token) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/followers", {
          params: { path: { user_id: userId }, query: { ...query, ...(page_token ? { page_token } : {}) } },
        }),
      ),
    );
  }

  /** The users a user follows, most recent follow first, across all pages. */
  following(userId: string, query: { limit?: number } = {}): AsyncGenerator<User> {
    return paginate((page_token) =>
      unwrap(
        this.api.GET("/v1/users/{user_id}/following", {
          params: { path: { user_id: userId }, query: { ...query, ...(page_token ? { page_token } : {}) } },
        }),
      ),
    );
  }
}

/** A client for the API at `options.baseUrl`. */
export function createClient(options: ClientOptions): MinitterClient {
  return new MinitterClient(options);
}
