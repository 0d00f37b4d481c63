/**
 * The realtime stream's reconnect policy and resume positions, as pure functions and a
 * small class: which failures end a stream, which reconnect at once, how long the others
 * wait (exponential backoff with full jitter, or the server's `Retry-After` when that is
 * longer), and what `since` each topic is subscribed to again with.
 *
 * It is kept apart from the socket (`./stream.ts`) so that every rule is unit-tested
 * without a server, and so that it reads side by side with the Rust SDK's
 * (`client-sdk/rust/src/stream/reconnect.rs` and `subscriptions.rs`), which implement the
 * same table: the README's "Reconnecting and resuming" is the contract both follow. The
 * jitter's random number is a parameter, so a test pins it.
 */

/** Close code: the server is going away (shutting down); reconnect. */
export const CLOSE_GOING_AWAY = 1001;
/** Close code: the connection ended without a close frame (the browser's and `ws`'s name for a lost socket). */
export const CLOSE_ABNORMAL = 1006;
/** Close code: the client fell behind (its queue on the server overflowed); reconnect at once. */
export const CLOSE_LAGGED = 4000;
/** Close code: the key was disabled or deleted, or the user deleted; never reconnect with them. */
export const CLOSE_UNAUTHORIZED = 4001;
/** Close code: the client broke the rules (too many refused messages, missed pings). */
export const CLOSE_POLICY = 4008;
/** Close code: the key's quota is spent; tickets are refused (429) until it resets. */
export const CLOSE_QUOTA = 4029;

/** The nil UUID: the `since` of a topic that had no tweet, so that it replays everything posted since. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/**
 * Exponential backoff with full jitter: before reconnect attempt `n` (0 for the first
 * after a good connection), a random delay in `[0, min(capMs, baseMs × 2ⁿ))`. Full jitter
 * spreads the clients that one server restart disconnected at the same instant over the
 * whole window, so that they do not come back together.
 */
export interface Backoff {
  /** The ceiling of the first delay; it doubles with each attempt. */
  baseMs: number;
  /** The ceiling never grows past this. */
  capMs: number;
}

/** 0.5 s doubling up to 30 s, as the Rust SDK's `Backoff::default()`. */
export const DEFAULT_STREAM_BACKOFF: Readonly<Backoff> = Object.freeze({ baseMs: 500, capMs: 30_000 });

/** `min(capMs, baseMs × 2^attempt)`: the longest delay before attempt `attempt`. */
export function backoffCeilingMs(attempt: number, backoff: Backoff = DEFAULT_STREAM_BACKOFF): number {
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** attempt);
}

/**
 * The delay before attempt `attempt`, given `unit`, a random number in `[0, 1)`:
 * `unit × ceiling`, in whole milliseconds. A `unit` outside `[0, 1]` (or NaN) is clamped
 * into it, so a broken random source cannot make the wait unbounded or negative.
 */
export function backoffDelayMs(attempt: number, unit: number, backoff: Backoff = DEFAULT_STREAM_BACKOFF): number {
  const clamped = Number.isNaN(unit) ? 0 : Math.min(1, Math.max(0, unit));
  return Math.floor(backoffCeilingMs(attempt, backoff) * clamped);
}

/** Why a socket ended, or could not be opened: what a `reconnecting` event carries. */
export type Disconnect =
  /** The server (or a proxy) closed the socket with this code; `1006` when it ended without a close frame. */
  | { readonly kind: "closed"; readonly code: number; readonly reason: string }
  /** The socket went silent (no ping or message for the idle timeout) or could not be written to. */
  | { readonly kind: "lost"; readonly error: string }
  /** `POST /v1/stream/tickets` was answered with this status (`retryAfterMs` from its `Retry-After`). */
  | { readonly kind: "ticket-refused"; readonly status: number; readonly retryAfterMs?: number }
  /** `POST /v1/stream/tickets` got no answer (refused, reset, timed out). */
  | { readonly kind: "ticket-unreachable"; readonly error: string }
  /**
   * The upgrade was answered with this status instead of `101`. Only a WebSocket that
   * reports it says so (the `ws` package does); a browser's reports `unreachable`.
   */
  | { readonly kind: "upgrade-refused"; readonly status: number }
  /** The socket could not be opened (no connection, a refused upgrade the WebSocket does not describe). */
  | { readonly kind: "unreachable"; readonly error: string }
  /**
   * The server refused a message of the stream's as `throttled` or `unavailable` (`code`)
   * without naming it (no `id`) while subscriptions were unanswered: which one was not
   * made is unknown, so the stream opens another socket, where each topic is subscribed
   * to once.
   */
  | { readonly kind: "throttled"; readonly code: string };

/** What to do after a {@link Disconnect}. */
export type ReconnectPlan =
  /** End the stream with an error: trying again with these credentials cannot help. */
  | { readonly kind: "stop" }
  /** Reconnect without waiting if this is the first attempt since a good connection, else after the backoff. */
  | { readonly kind: "at-once" }
  /** Reconnect after the backoff, or after `atLeastMs` when that is longer. */
  | { readonly kind: "backoff"; readonly atLeastMs?: number };

const STOP: ReconnectPlan = { kind: "stop" };
const AT_ONCE: ReconnectPlan = { kind: "at-once" };
const BACKOFF: ReconnectPlan = { kind: "backoff" };

function withRetryAfter(retryAfterMs: number | undefined): ReconnectPlan {
  return retryAfterMs === undefined ? BACKOFF : { kind: "backoff", atLeastMs: retryAfterMs };
}

/** The policy's table (the README's "Reconnecting and resuming"). */
export function reconnectPlan(disconnect: Disconnect): ReconnectPlan {
  switch (disconnect.kind) {
    case "closed":
      if (disconnect.code === CLOSE_UNAUTHORIZED) return STOP;
      if (disconnect.code === CLOSE_LAGGED) return AT_ONCE;
      // 1001, 4008, 4029, 1006 and anything else the server or a proxy closes with.
      return BACKOFF;
    case "lost":
    case "ticket-unreachable":
    case "unreachable":
    case "throttled":
      return BACKOFF;
    case "ticket-refused":
      // The key or the user's token is refused: a new ticket will not be issued.
      if (disconnect.status === 401 || disconnect.status === 403) return STOP;
      if (disconnect.status === 429) return withRetryAfter(disconnect.retryAfterMs);
      if (disconnect.status >= 500 && disconnect.status <= 599) return BACKOFF;
      // A request the server will never accept (a wrong base URL, say).
      return STOP;
    case "upgrade-refused":
      // The ticket expired or was used between its issue and the upgrade: another one is all it takes.
      if (disconnect.status === 401) return AT_ONCE;
      if (disconnect.status === 429) return BACKOFF;
      if (disconnect.status >= 500 && disconnect.status <= 599) return BACKOFF;
      return STOP;
  }
}

/**
 * The wait before reconnect attempt `attempt` under `plan` (`undefined` for `stop`), with
 * `unit` the jitter's random number in `[0, 1)`.
 */
export function reconnectDelayMs(
  plan: ReconnectPlan,
  attempt: number,
  unit: number,
  backoff: Backoff = DEFAULT_STREAM_BACKOFF,
): number | undefined {
  switch (plan.kind) {
    case "stop":
      return undefined;
    case "at-once":
      return attempt === 0 ? 0 : backoffDelayMs(attempt, unit, backoff);
    case "backoff":
      return Math.max(backoffDelayMs(attempt, unit, backoff), plan.atLeastMs ?? 0);
  }
}

/** Where a stream is on one topic. */
interface Position {
  /** The application's `since` (a tweet id or a page token of the topic's REST list). */
  readonly initial: string | undefined;
  /** The id of the last `tweet.created` received on the topic. */
  lastTweet: string | undefined;
  /** Whether a `subscribed` answer came for the topic (`newest` is its `newest`). */
  subscribed: { newest: string | undefined } | undefined;
}

/**
 * The topics a stream follows and, for each, the `since` to subscribe to it again with,
 * so that a reconnect neither misses nor repeats a tweet (`asyncapi.yaml`'s "Resuming"):
 * the id of the last `tweet.created` received on the topic; when none came, the `newest`
 * of the topic's last `subscribed` answer; when that was absent (the topic had no
 * tweets), the nil UUID. Before the topic's first `subscribed` (and with no tweet
 * received) it is the `since` the application gave, if any: replaying from the nil UUID
 * would send an application that asked for live tweets only the topic's last hundred.
 *
 * Positions survive reconnects but not an unsubscription: a topic subscribed to again
 * later starts afresh, from the `since` given then.
 */
export class Positions<T extends string = string> {
  readonly #topics = new Map<T, Position>();

  /** Follows `topic` from `since`, unless it is followed already; whether it was added. */
  insert(topic: T, since?: string): boolean {
    if (this.#topics.has(topic)) return false;
    this.#topics.set(topic, { initial: since, lastTweet: undefined, subscribed: undefined });
    return true;
  }

  /** Stops following `topic`; whether it was followed. */
  remove(topic: T): boolean {
    return this.#topics.delete(topic);
  }

  has(topic: string): topic is T {
    return this.#topics.has(topic as T);
  }

  /** The topics, in the order they were added. */
  topics(): T[] {
    return [...this.#topics.keys()];
  }

  /** A `tweet.created` with this id came on `topic`. */
  tweet(topic: T, id: string): void {
    const position = this.#topics.get(topic);
    if (position !== undefined) position.lastTweet = id;
  }

  /** A `subscribed` answer came for `topic`, with this `newest`. */
  subscribed(topic: T, newest: string | undefined): void {
    const position = this.#topics.get(topic);
    if (position !== undefined) position.subscribed = { newest };
  }

  /** The `since` to subscribe to `topic` with now (`undefined`: live tweets only). */
  since(topic: T): string | undefined {
    const position = this.#topics.get(topic);
    if (position === undefined) return undefined;
    if (position.lastTweet !== undefined) return position.lastTweet;
    if (position.subscribed !== undefined) return position.subscribed.newest ?? NIL_UUID;
    return position.initial;
  }
}
