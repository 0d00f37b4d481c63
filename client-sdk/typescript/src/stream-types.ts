/**
 * The realtime stream's types: what a {@link MinitterStream} is given, what it yields and
 * why it ends. They are the stream's public surface (re-exported by `./index.ts`), kept
 * apart from its machinery in `./stream.ts` so that each file reads on its own.
 */
import type { components } from "./generated/schema.js";
import type { Problem } from "./index.js";
import type { MinitterStream } from "./stream.js";
import type { Backoff, DEFAULT_STREAM_BACKOFF, Disconnect } from "./stream-policy.js";

/**
 * What a subscription follows: `home` (the user's home timeline: their own tweets and
 * their followees') or `user:<id>` (one author's tweets; see {@link userTopic}).
 */
export type Topic = "home" | `user:${string}`;

/** The topic of one author's tweets, `user:<id>`. */
export function userTopic(userId: string): Topic {
  return `user:${userId}`;
}

/** A topic to follow from `since`: a tweet id, or a `next_page` token of the topic's REST list. */
export interface TopicSubscription {
  readonly topic: Topic;
  /**
   * Where the application is: the last tweet id it has (from an earlier stream or a REST
   * timeline), or a `next_page` token of the topic's REST list (`GET /v1/timeline` for
   * `home`, `GET /v1/users/{user_id}/tweets` for `user:<id>`), standing for the last
   * tweet of its page. The server replays the tweets posted after it (the 100 most recent
   * at most; a `gap` event when there were more) before going live.
   */
  readonly since?: string;
}

/** A tweet, as the REST API returns it. */
export type StreamTweet = components["schemas"]["Tweet"];
/** What a `tweet.deleted` says: the tweet's and its author's ids. */
export type TweetDeletedData = components["schemas"]["TweetDeletedData"];

/** A stream's connection state, as its state events report it. */
export type StreamState = "connecting" | "open" | "reconnecting" | "closed";

/** What a {@link MinitterStream} yields. */
export type StreamEvent =
  /** A ticket is being fetched and a socket opened (the first time, and after each `reconnecting`'s wait). */
  | { readonly type: "connecting"; readonly attempt: number }
  /** A socket is open and its subscriptions are on their way (after every reconnect too). */
  | { readonly type: "open" }
  /**
   * A subscription is live. With a `since` (the application's, or the stream's own on a
   * reconnect), the `replayed` tweets it missed came just before, as `tweet.created`.
   * `newest` is the topic's newest tweet when it went live.
   */
  | { readonly type: "subscribed"; readonly topic: Topic; readonly replayed?: number; readonly newest?: string }
  /**
   * More tweets were missed on `topic` than a replay holds (100): the oldest of them were
   * not sent. Read the topic's REST list (`GET /v1/timeline` for `home`,
   * `GET /v1/users/{user_id}/tweets` for `user:<id>`) to fill the gap. Its `subscribed` follows.
   */
  | { readonly type: "gap"; readonly topic: Topic }
  /** A tweet was posted to `topic` (replayed or live). */
  | { readonly type: "tweet.created"; readonly topic: Topic; readonly tweet: StreamTweet }
  /** A tweet of `topic` was deleted. */
  | { readonly type: "tweet.deleted"; readonly topic: Topic; readonly deleted: TweetDeletedData }
  /** An {@link MinitterStream.unsubscribe} took effect. */
  | { readonly type: "unsubscribed"; readonly topic: Topic }
  /**
   * The server refused a message of the stream's. With a `topic`, it refused that
   * subscription for good (a `user:<id>` whose user does not exist, past 100 topics, a
   * `since` it does not understand), and the stream no longer follows it. Without,
   * something of the whole socket (`quota_exceeded`, just before it closes with 4029).
   */
  | { readonly type: "refused"; readonly topic?: Topic; readonly problem: Problem }
  /**
   * The socket ended, or could not be opened, for `cause`; the stream opens another after
   * `delayMs`. `attempt` counts the failures since the last good connection (0 for the
   * first), which the backoff grows with.
   */
  | { readonly type: "reconnecting"; readonly attempt: number; readonly delayMs: number; readonly cause: Disconnect }
  /**
   * The stream is over: the last event. Without `error`, {@link MinitterStream.close}
   * ended it; with one, the policy gave up (revoked credentials), and the iteration throws
   * that error after this event.
   */
  | { readonly type: "closed"; readonly error?: StreamError };

/** Why a stream ended for good; see {@link StreamError.reason}. */
export type StreamErrorReason =
  /** The server closed the socket with 4001: the key was disabled or deleted, or the user deleted. */
  | "unauthorized"
  /** `POST /v1/stream/tickets` was refused for good: 401 or 403, or a status the policy does not retry. */
  | "ticket"
  /** A failure the policy does not retry, such as an upgrade refused with 404. */
  | "refused"
  /** The base URL and the ticket's `url` do not make a `ws:` or `wss:` URL. */
  | "invalid-url";

/** Why a {@link MinitterStream} ended: thrown by its iteration after its `closed` event. */
export class StreamError extends Error {
  /** What ended it. */
  readonly reason: StreamErrorReason;
  /** The failure that the policy did not retry, when there was one. */
  readonly disconnect: Disconnect | undefined;
  /** The ticket request's status, for `ticket`. */
  readonly status: number | undefined;
  /** The server's problem document, when the ticket request was refused with one. */
  readonly problem: Problem | undefined;

  constructor(
    reason: StreamErrorReason,
    message: string,
    details: { disconnect?: Disconnect; status?: number; problem?: Problem | undefined } = {},
  ) {
    super(message);
    this.name = "StreamError";
    this.reason = reason;
    this.disconnect = details.disconnect;
    this.status = details.status;
    this.problem = details.problem;
  }
}

/** The part of the standard WebSocket interface the stream uses (the browser's, Node 22's, the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // `any`: each implementation types its events its own way (the DOM's `MessageEvent`,
  // `ws`'s own), so no one event type fits all; the stream reads `data`, `code`, `reason`
  // and `message` defensively.
  addEventListener(type: "open" | "message" | "error" | "close", listener: (event: any) => void): void;
}

/** A WebSocket class: `globalThis.WebSocket`, or `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface StreamOptions {
  /** The topics to follow from the start, each a {@link Topic} or a {@link TopicSubscription} with a `since`. */
  topics?: readonly (Topic | TopicSubscription)[];
  /**
   * The WebSocket class: `globalThis.WebSocket` by default (browsers, Node 22+). On Node 20
   * pass one, such as `WebSocket` from the `ws` package.
   */
  WebSocket?: WebSocketConstructor;
  /** The backoff between reconnects: 0.5 s doubling up to 30 s ({@link DEFAULT_STREAM_BACKOFF}). */
  backoff?: Partial<Backoff>;
  /**
   * How long a socket may stay silent before it counts as lost (90 s by default). The
   * server pings every 30 s, so three missed pings mean the connection is gone though no
   * reset arrived (a sleeping laptop, a dropped NAT mapping). It applies only where the
   * WebSocket reports the server's pings (the `ws` package's does; a browser's does not:
   * see `pingIntervalMs`).
   */
  idleTimeoutMs?: number;
  /**
   * Where pings cannot be seen (browsers): after this long without a message, send a
   * `ping` and count the socket as lost if nothing comes within as long again. Off by
   * default: each ping and its `pong` take a unit of the key's quota.
   */
  pingIntervalMs?: number;
  /** The jitter's random source, a number in `[0, 1)` (`Math.random` by default): for tests. */
  random?: () => number;
  /** Waits `ms` before a reconnect, or less if `signal` aborts (a `setTimeout` by default): for tests. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** @internal What a stream needs of its client: where the API is, and a ticket. */
export interface StreamConnector {
  readonly baseUrl: string;
  /** `POST /v1/stream/tickets` through the client's typed `api`, its retries off. */
  requestTicket(signal: AbortSignal): Promise<{
    data?: components["schemas"]["StreamTicket"];
    error?: unknown;
    response: Response;
  }>;
}
