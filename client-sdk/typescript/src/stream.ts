/**
 * The realtime stream (`asyncapi.yaml`): timelines pushed over a WebSocket as they
 * change, as an async iterator of typed {@link StreamEvent}s that survives lost
 * connections. Made by `client.stream(options)` (`MinitterClient.stream` in `./index.ts`).
 *
 * **Why it is shaped so.** A socket is opened with a one-time ticket
 * (`POST /v1/stream/tickets`, made through the client's typed `api` with the key and the
 * bearer token, since neither belongs in a URL), so every connection, the first and each
 * reconnect, starts with a REST call; the client's own retries are off for it, because
 * the stream's reconnect policy (`./stream-policy.ts`, the README's "Reconnecting and
 * resuming", the same table as the Rust SDK's) decides when to ask again. Networks drop
 * sockets all the time, so a reconnect is an event (`reconnecting`), not an error: the
 * iteration throws only when the stream ends for good (revoked credentials). No tweet is
 * missed or repeated across a reconnect, because every topic is subscribed to again with
 * `since` set to where the stream was on it ({@link Positions}), and the server replays
 * what came meanwhile before going live; when more came than a replay holds, a `gap`
 * event says so, and the application reads the rest from the REST timeline.
 *
 * It speaks to the standard WebSocket interface (`addEventListener`, `send`, `close`), the
 * browser's `globalThis.WebSocket` by default, or a constructor given as the `WebSocket`
 * option (Node 20 has no global one: the `ws` package's fits). A WebSocket pushes its
 * messages whether or not they are read, so events wait in memory for the iterator:
 * read the stream, or close it.
 *
 * The message types are generated from `asyncapi.yaml` (`./generated/stream.ts`), with
 * the tweets and problems being the REST API's own types; a message type the document
 * does not know (a newer server's) is skipped.
 */
import type { components } from "./generated/schema.js";
import type { ClientMessage, ServerMessage } from "./generated/stream.js";
import type { Problem } from "./index.js";
import { retryAfterMs } from "./retry.js";
import {
  type Backoff,
  CLOSE_UNAUTHORIZED,
  DEFAULT_STREAM_BACKOFF,
  type Disconnect,
  Positions,
  reconnectDelayMs,
  reconnectPlan,
} from "./stream-policy.js";
import {
  StreamError,
  type StreamConnector,
  type StreamEvent,
  type StreamOptions,
  type StreamState,
  type StreamTweet,
  type Topic,
  type TopicSubscription,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./stream-types.js";

/** How long to wait before sending again a subscription the server refused as `unavailable` or `throttled`. */
const RESUBSCRIBE_DELAY_MS = 1000;
/**
 * The stream's own pace for its messages, a token bucket: under the server's per-socket
 * limit (`asyncapi.yaml`: 10 a second, in bursts of 20) with a margin for the network's
 * jitter, so that a stream of many topics is not throttled by its own subscriptions.
 */
const PACE_BURST = 16;
const PACE_PER_SECOND = 8;
const DEFAULT_IDLE_TIMEOUT_MS = 90_000;
/** `WebSocket.OPEN`. */
const OPEN = 1;

/** A token bucket: one token per client message. */
class Pace {
  #tokens = PACE_BURST;
  #at = now();

  /** Takes a token, or says how many milliseconds until the next one. */
  take(): number | undefined {
    const at = now();
    this.#tokens = Math.min(PACE_BURST, this.#tokens + ((at - this.#at) / 1000) * PACE_PER_SECOND);
    this.#at = at;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return undefined;
    }
    return Math.ceil(((1 - this.#tokens) / PACE_PER_SECOND) * 1000);
  }
}

function now(): number {
  return globalThis.performance.now();
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message;
  return String(error);
}

/**
 * The socket's URL: the ticket's `url` (a path, as the server gives it) on the client's
 * base URL with its scheme made `ws` or `wss`. A `url` that is absolute already is taken as
 * it is (its `http`/`https` made `ws`/`wss`).
 */
export function socketUrl(baseUrl: string, url: string): string {
  const websocket = (text: string) => {
    if (text.startsWith("https://")) return `wss://${text.slice("https://".length)}`;
    if (text.startsWith("http://")) return `ws://${text.slice("http://".length)}`;
    if (text.startsWith("wss://") || text.startsWith("ws://")) return text;
    return undefined;
  };
  const absolute = websocket(url);
  if (absolute !== undefined) return absolute;
  const base = websocket(baseUrl.replace(/\/+$/, ""));
  if (base === undefined) throw new StreamError("invalid-url", `the base URL ${JSON.stringify(baseUrl)} is not http(s)`);
  return url.startsWith("/") ? `${base}${url}` : `${base}/${url}`;
}

/**
 * A realtime stream; see the module. Iterate it (`for await (const event of stream)`) for
 * its {@link StreamEvent}s; {@link close} it when done (leaving a `for await` loop early
 * closes it too). It connects at once, and reconnects as the policy says until it is
 * closed or the policy gives up.
 */
export class MinitterStream implements AsyncIterable<StreamEvent> {
  readonly #connector: StreamConnector;
  readonly #WebSocket: WebSocketConstructor;
  readonly #backoff: Backoff;
  readonly #idleTimeoutMs: number;
  readonly #pingIntervalMs: number | undefined;
  readonly #random: () => number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #abort = new AbortController();
  readonly #positions = new Positions<Topic>();

  #state: StreamState = "connecting";
  /** Events not yet taken by the iterator, and the iterator's pending `next()`s. */
  readonly #events: StreamEvent[] = [];
  readonly #waiters: { resolve(result: IteratorResult<StreamEvent>): void; reject(error: unknown): void }[] = [];
  /** Set once the `closed` event is queued; `#error` is thrown after it, once. */
  #finished = false;
  #error: StreamError | undefined;

  /** Failed connections since the last good one (the backoff's exponent). */
  #attempt = 0;
  /** The open socket, and how to end it (with the {@link Disconnect} the run loop gets). */
  #socket: WebSocketLike | undefined;
  #endSocket: ((disconnect: Disconnect) => void) | undefined;
  /** The topics subscribed on this socket and not yet answered. */
  readonly #awaiting = new Set<Topic>();
  /** The topics to subscribe to again after {@link RESUBSCRIBE_DELAY_MS}. */
  readonly #resubscribe = new Set<Topic>();
  #resubscribeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Messages waiting for the pace. */
  #outbox: ClientMessage[] = [];
  #pace = new Pace();
  #sendTimer: ReturnType<typeof setTimeout> | undefined;
  #silenceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether the current socket reports the server's pings (then the idle timeout applies). */
  #pingsVisible = false;

  /** @internal Use `client.stream(options)`. */
  constructor(connector: StreamConnector, options: StreamOptions = {}) {
    const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocketClass === undefined) {
      throw new TypeError(
        "no WebSocket: this runtime has no global one (Node 20); pass `WebSocket` in the stream's options, such as the `ws` package's",
      );
    }
    this.#connector = connector;
    this.#WebSocket = WebSocketClass;
    this.#backoff = { ...DEFAULT_STREAM_BACKOFF, ...options.backoff };
    this.#idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#pingIntervalMs = options.pingIntervalMs;
    this.#random = options.random ?? Math.random;
    this.#sleep = options.sleep ?? defaultSleep;
    for (const entry of options.topics ?? []) {
      if (typeof entry === "string") this.#positions.insert(entry);
      else this.#positions.insert(entry.topic, entry.since);
    }
    this.#run().catch((error: unknown) => {
      // A bug of the stream's own (an injected `random` or `sleep` that threw): end it visibly.
      this.#finish(error instanceof StreamError ? error : new StreamError("refused", `the stream failed: ${describe(error)}`));
    });
  }

  /** The connection's state now: `connecting`, `open`, `reconnecting` (waiting to) or `closed`. */
  get state(): StreamState {
    return this.#state;
  }

  /** The topics followed now. */
  get topics(): Topic[] {
    return this.#positions.topics();
  }

  /**
   * Follows `topic` too, from `since` if given (see {@link TopicSubscription.since});
   * nothing if it is followed already. Its `subscribed` (or `refused`) event follows.
   */
  subscribe(topic: Topic, since?: string): void {
    if (this.#finished || !this.#positions.insert(topic, since)) return;
    if (this.#socket !== undefined) {
      this.#queueSubscribe(topic);
      this.#flush();
    }
  }

  /** Stops following `topic`; its `unsubscribed` event follows (when a socket is open). */
  unsubscribe(topic: Topic): void {
    if (this.#finished || !this.#positions.remove(topic)) return;
    this.#awaiting.delete(topic);
    this.#resubscribe.delete(topic);
    if (this.#socket === undefined) return;
    this.#outbox = this.#outbox.filter((message) => !(message.action === "subscribe" && message.topic === topic));
    this.#outbox.push({ action: "unsubscribe", topic, id: topic });
    this.#settle();
    this.#flush();
  }

  /** Closes the socket and ends the stream: a `closed` event, then the end of the iteration. */
  close(): void {
    if (this.#finished) return;
    this.#finish(undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    return {
      next: () => this.#next(),
      return: async () => {
        this.close();
        this.#events.length = 0;
        this.#error = undefined;
        return { done: true, value: undefined };
      },
    };
  }

  #next(): Promise<IteratorResult<StreamEvent>> {
    const event = this.#events.shift();
    if (event !== undefined) return Promise.resolve({ done: false, value: event });
    if (this.#finished) {
      const error = this.#error;
      this.#error = undefined;
      return error === undefined ? Promise.resolve({ done: true, value: undefined }) : Promise.reject(error);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #emit(event: StreamEvent): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve({ done: false, value: event });
    else this.#events.push(event);
  }

  #setState(state: StreamState): void {
    this.#state = state;
  }

  /** Ends the stream for good: closes the socket, emits `closed`, and settles every pending `next()`. */
  #finish(error: StreamError | undefined): void {
    if (this.#finished) return;
    this.#abort.abort();
    this.#endSocket?.({ kind: "lost", error: "the stream was closed" });
    this.#setState("closed");
    this.#emit(error === undefined ? { type: "closed" } : { type: "closed", error });
    this.#finished = true;
    this.#error = error;
    for (const waiter of this.#waiters.splice(0)) {
      const pending = this.#error;
      this.#error = undefined;
      if (pending === undefined) waiter.resolve({ done: true, value: undefined });
      else waiter.reject(pending);
    }
  }

  /** Connects, and reconnects as the policy says, until the stream is closed or the policy gives up. */
  async #run(): Promise<void> {
    let wait = 0;
    while (!this.#abort.signal.aborted) {
      if (wait > 0) await this.#sleep(wait, this.#abort.signal);
      if (this.#abort.signal.aborted) return;
      this.#setState("connecting");
      this.#emit({ type: "connecting", attempt: this.#attempt });
      let disconnect: Disconnect;
      try {
        disconnect = await this.#connect();
      } catch (error) {
        if (this.#abort.signal.aborted) return;
        this.#finish(
          error instanceof StreamError ? error : new StreamError("refused", `the stream failed: ${describe(error)}`),
        );
        return;
      }
      if (this.#abort.signal.aborted) return;
      const plan = reconnectPlan(disconnect);
      const delay = reconnectDelayMs(plan, this.#attempt, this.#random(), this.#backoff);
      if (delay === undefined) {
        this.#finish(
          disconnect.kind === "closed" && disconnect.code === CLOSE_UNAUTHORIZED
            ? new StreamError("unauthorized", `the stream's credentials were revoked (4001 ${disconnect.reason})`, {
                disconnect,
              })
            : new StreamError("refused", `the stream cannot reconnect: ${JSON.stringify(disconnect)}`, { disconnect }),
        );
        return;
      }
      this.#setState("reconnecting");
      this.#emit({ type: "reconnecting", attempt: this.#attempt, delayMs: delay, cause: disconnect });
      this.#attempt += 1;
      wait = delay;
    }
  }

  /** Gets a ticket and runs one socket; resolves to why it ended, or rejects with a {@link StreamError}. */
  async #connect(): Promise<Disconnect> {
    const ticket = await this.#ticket();
    if ("kind" in ticket) return ticket;
    const url = socketUrl(this.#connector.baseUrl, ticket.url);
    return new Promise<Disconnect>((resolve) => {
      let socket: WebSocketLike;
      try {
        socket = new this.#WebSocket(url);
      } catch (error) {
        resolve({ kind: "unreachable", error: describe(error) });
        return;
      }
      let opened = false;
      let failure: string | undefined;
      let ended = false;
      const end = (disconnect: Disconnect) => {
        if (ended) return;
        ended = true;
        this.#stopTimers();
        if (this.#socket === socket) {
          this.#socket = undefined;
          this.#endSocket = undefined;
        }
        if (socket.readyState <= OPEN) {
          try {
            socket.close(1000, "closed by the client");
          } catch {
            // Closing a socket that is closing already.
          }
        }
        resolve(disconnect);
      };
      this.#endSocket = end;
      socket.addEventListener("open", () => {
        if (ended) return;
        opened = true;
        this.#opened(socket);
      });
      socket.addEventListener("message", (event: { data?: unknown }) => {
        if (!ended) this.#message(event.data);
      });
      socket.addEventListener("error", (event: { message?: unknown; error?: unknown }) => {
        failure ??= typeof event.message === "string" && event.message !== "" ? event.message : describe(event.error ?? "the socket failed");
      });
      socket.addEventListener("close", (event: { code?: unknown; reason?: unknown }) => {
        if (!opened) {
          // A browser says nothing of a refused upgrade; the `ws` package names its status.
          const status = /Unexpected server response: (\d{3})/.exec(failure ?? "")?.[1];
          end(
            status !== undefined
              ? { kind: "upgrade-refused", status: Number(status) }
              : { kind: "unreachable", error: failure ?? "the socket closed before it opened" },
          );
          return;
        }
        const code = typeof event.code === "number" ? event.code : 1005;
        end({ kind: "closed", code, reason: typeof event.reason === "string" ? event.reason : "" });
      });
      // The `ws` package reports the server's pings; the silence timer counts them.
      const emitter = socket as unknown as { on?: (event: string, listener: () => void) => void };
      this.#pingsVisible = typeof emitter.on === "function";
      emitter.on?.("ping", () => {
        if (!ended) this.#heard();
      });
    });
  }

  /** A ticket from `POST /v1/stream/tickets`, or why there is none (to be retried). */
  async #ticket(): Promise<components["schemas"]["StreamTicket"] | Disconnect> {
    let result: Awaited<ReturnType<StreamConnector["requestTicket"]>>;
    try {
      result = await this.#connector.requestTicket(this.#abort.signal);
    } catch (error) {
      return { kind: "ticket-unreachable", error: describe(error) };
    }
    const { data, error, response } = result;
    if (response.ok) {
      if (data !== undefined && typeof data.url === "string") return data;
      return { kind: "ticket-unreachable", error: "the ticket could not be read" };
    }
    const retryAfter = retryAfterMs(response.headers.get("retry-after"));
    const disconnect: Disconnect =
      retryAfter === undefined
        ? { kind: "ticket-refused", status: response.status }
        : { kind: "ticket-refused", status: response.status, retryAfterMs: retryAfter };
    if (reconnectPlan(disconnect).kind === "stop") {
      const problem = isProblem(error) ? error : undefined;
      throw new StreamError(
        "ticket",
        `no stream ticket: ${response.status}${problem === undefined ? "" : ` ${problem.code}: ${problem.detail ?? problem.title}`}`,
        { disconnect, status: response.status, problem },
      );
    }
    return disconnect;
  }

  /** A socket opened: subscribe to every topic from its position. */
  #opened(socket: WebSocketLike): void {
    this.#socket = socket;
    this.#setState("open");
    this.#emit({ type: "open" });
    this.#awaiting.clear();
    this.#resubscribe.clear();
    this.#outbox = [];
    this.#pace = new Pace();
    for (const topic of this.#positions.topics()) this.#queueSubscribe(topic);
    this.#settle();
    this.#heard();
    this.#flush();
  }

  /** Something came: the socket is alive; wait for the next sign of life. */
  #heard(): void {
    if (this.#silenceTimer !== undefined) clearTimeout(this.#silenceTimer);
    this.#silenceTimer = undefined;
    const lost = (after: number) => () =>
      this.#endSocket?.({ kind: "lost", error: `nothing received for ${after} ms, not even a ping` });
    if (this.#pingsVisible) {
      this.#silenceTimer = setTimeout(lost(this.#idleTimeoutMs), this.#idleTimeoutMs);
    } else if (this.#pingIntervalMs !== undefined) {
      const interval = this.#pingIntervalMs;
      this.#silenceTimer = setTimeout(() => {
        this.#outbox.push({ action: "ping" });
        this.#flush();
        this.#silenceTimer = setTimeout(lost(2 * interval), interval);
      }, interval);
    }
  }

  #message(data: unknown): void {
    this.#heard();
    if (typeof data !== "string") return;
    let message: ServerMessage;
    try {
      const parsed: unknown = JSON.parse(data);
      if (typeof parsed !== "object" || parsed === null || typeof (parsed as { type?: unknown }).type !== "string") return;
      message = parsed as ServerMessage;
    } catch {
      // A server that breaks its own contract: the message is skipped, the socket kept
      // (closing would only replay the same message).
      return;
    }
    switch (message.type) {
      case "tweet.created": {
        if (!this.#positions.has(message.topic)) return;
        this.#positions.tweet(message.topic, message.data.id);
        this.#emit({ type: "tweet.created", topic: message.topic, tweet: message.data });
        return;
      }
      case "tweet.deleted": {
        if (!this.#positions.has(message.topic)) return;
        this.#emit({ type: "tweet.deleted", topic: message.topic, deleted: message.data });
        return;
      }
      case "subscribed": {
        const topic = message.topic as Topic;
        this.#awaiting.delete(topic);
        // Unsubscribed meanwhile: the `unsubscribed` answer follows.
        if (!this.#positions.has(topic)) return;
        this.#positions.subscribed(topic, message.newest);
        if (message.truncated === true) this.#emit({ type: "gap", topic });
        this.#emit({
          type: "subscribed",
          topic,
          ...(message.replayed === undefined ? {} : { replayed: message.replayed }),
          ...(message.newest === undefined ? {} : { newest: message.newest }),
        });
        this.#settle();
        return;
      }
      case "unsubscribed":
        this.#emit({ type: "unsubscribed", topic: message.topic as Topic });
        return;
      case "error": {
        // A subscription's refusal carries its correlation id, the topic's name.
        const topic = message.id !== undefined && this.#awaiting.has(message.id as Topic) ? (message.id as Topic) : undefined;
        const problem = message.problem as Problem;
        const again = problem.code === "throttled" || problem.code === "unavailable";
        if (topic !== undefined && again) {
          this.#resubscribe.add(topic);
          this.#resubscribeTimer ??= setTimeout(() => this.#resubscribeNow(), RESUBSCRIBE_DELAY_MS);
        } else if (topic === undefined && again && this.#awaiting.size > 0) {
          // Refused before it was read (the rate limits answer without the message's id):
          // which subscription was not made is unknown, and sending one twice would
          // replay its tweets twice.
          this.#endSocket?.({ kind: "throttled", code: problem.code });
        } else if (topic !== undefined) {
          this.#awaiting.delete(topic);
          this.#positions.remove(topic);
          this.#emit({ type: "refused", topic, problem });
          this.#settle();
        } else {
          this.#emit({ type: "refused", problem });
        }
        return;
      }
      case "lagged":
      case "pong":
        // `lagged`: the close (4000) follows, and the positions already say where to resume.
        return;
      default:
        // A message type this SDK does not know (a newer server's): skipped.
        return;
    }
  }

  #resubscribeNow(): void {
    this.#resubscribeTimer = undefined;
    const topics = [...this.#resubscribe];
    this.#resubscribe.clear();
    for (const topic of topics) if (this.#positions.has(topic)) this.#queueSubscribe(topic);
    this.#flush();
  }

  /** Once every subscription of this socket is answered, the connection counts as good and the backoff starts over. */
  #settle(): void {
    if (this.#awaiting.size === 0 && this.#resubscribe.size === 0) this.#attempt = 0;
  }

  /** Queues a subscription to `topic` from its position, its name as the correlation id. */
  #queueSubscribe(topic: Topic): void {
    const since = this.#positions.since(topic);
    this.#outbox.push(
      since === undefined ? { action: "subscribe", topic, id: topic } : { action: "subscribe", topic, id: topic, since },
    );
    this.#awaiting.add(topic);
  }

  /** Sends the queued messages the pace allows now; the rest wait for the next token. */
  #flush(): void {
    if (this.#sendTimer !== undefined) {
      clearTimeout(this.#sendTimer);
      this.#sendTimer = undefined;
    }
    const socket = this.#socket;
    if (socket === undefined) return;
    while (this.#outbox.length > 0) {
      const wait = this.#pace.take();
      if (wait !== undefined) {
        this.#sendTimer = setTimeout(() => this.#flush(), wait);
        return;
      }
      const message = this.#outbox.shift() as ClientMessage;
      try {
        socket.send(JSON.stringify(message));
      } catch (error) {
        this.#endSocket?.({ kind: "lost", error: describe(error) });
        return;
      }
    }
  }

  #stopTimers(): void {
    for (const timer of [this.#resubscribeTimer, this.#sendTimer, this.#silenceTimer]) {
      if (timer !== undefined) clearTimeout(timer);
    }
    this.#resubscribeTimer = undefined;
    this.#sendTimer = undefined;
    this.#silenceTimer = undefined;
  }
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}
