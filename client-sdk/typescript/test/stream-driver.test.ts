// The stream's state machine without a server: a fake WebSocket (injected as the
// `WebSocket` option) and a fake `fetch` answering `POST /v1/stream/tickets` (injected
// into the client, so the ticket still goes through the SDK's typed call), with the
// jitter's random number and the reconnect wait injected. Every rule of the README's
// "Reconnecting and resuming" is driven here message by message; test/stream.test.ts
// runs the same stream against the real server.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  createClient,
  StreamError,
  type StreamEvent,
  type StreamOptions,
  type WebSocketLike,
} from "../src/index.js";

const BASE = "http://stream.test:8080";
const ALICE = "01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d";
const BOB = "01936c4e-0000-7cc3-a2d5-4f0e8c1b2a3d";
const NIL = "00000000-0000-0000-0000-000000000000";

function tweet(id: string, text = "hello") {
  return { id, author_id: ALICE, text, created_at: "2026-01-01T00:00:00Z" };
}

/** A WebSocket whose server side the test plays. */
class FakeSocket implements WebSocketLike {
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  closedWith: number | undefined;
  readonly #listeners = new Map<string, ((event: unknown) => void)[]>();

  constructor(readonly url: string) {}

  addEventListener(type: string, listener: (event: unknown) => void): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
  }

  send(data: string): void {
    assert.equal(this.readyState, 1, "sent on a socket that is not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  #fire(type: string, event: unknown): void {
    for (const listener of this.#listeners.get(type) ?? []) listener(event);
  }

  open(): void {
    this.readyState = 1;
    this.#fire("open", {});
  }

  receive(message: unknown): void {
    this.#fire("message", { data: JSON.stringify(message) });
  }

  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.#fire("close", { code, reason, wasClean: code !== 1006 });
  }

  /** Fails before opening, as a refused upgrade or an unreachable host does. */
  fail(message: string): void {
    this.#fire("error", { message });
    this.readyState = 3;
    this.#fire("close", { code: 1006, reason: "", wasClean: false });
  }
}

/** A stream on fakes: its sockets, its ticket requests, the waits it asked for. */
function harness(options: StreamOptions = {}, tickets: (() => Response)[] = []) {
  const sockets: FakeSocket[] = [];
  const ticketRequests: Request[] = [];
  const waits: number[] = [];
  let issued = 0;
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    ticketRequests.push(request);
    assert.equal(`${request.method} ${new URL(request.url).pathname}`, "POST /v1/stream/tickets");
    const scripted = tickets.shift();
    if (scripted !== undefined) return scripted();
    issued += 1;
    return Response.json({ ticket: `st_${issued}`, expires_at: "2026-01-01T00:00:30Z", url: `/v1/stream?ticket=st_${issued}` });
  };
  const client = createClient({ baseUrl: BASE, apiKey: "mk_test", bearerToken: "token", fetch });
  const stream = client.stream({
    WebSocket: class extends FakeSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    },
    random: () => 0.5,
    sleep: async (ms) => {
      waits.push(ms);
    },
    ...options,
  });
  const iterator = stream[Symbol.asyncIterator]();
  const seen: StreamEvent[] = [];
  /** The events up to and including the first of `type`. */
  async function until<T extends StreamEvent["type"]>(type: T): Promise<Extract<StreamEvent, { type: T }>> {
    for (;;) {
      const next = await iterator.next();
      assert.ok(!next.done, `the stream ended before a ${type} event`);
      seen.push(next.value);
      if (next.value.type === type) return next.value as Extract<StreamEvent, { type: T }>;
    }
  }
  /** The `n`th socket (1 for the first), once the stream has made it. */
  async function socket(n: number): Promise<FakeSocket> {
    for (let i = 0; i < 1000 && sockets.length < n; i += 1) await new Promise((resolve) => setImmediate(resolve));
    const made = sockets[n - 1];
    assert.ok(made !== undefined, `no socket #${n}`);
    return made;
  }
  return { stream, iterator, seen, until, socket, sockets, ticketRequests, waits };
}

function problem(status: number, code: string) {
  return { type: "about:blank", title: code, status, code, request_id: "r1" };
}

test("a stream gets a ticket with the client's credentials and subscribes to each topic from its since", async () => {
  const { stream, until, socket, ticketRequests } = harness({
    topics: ["home", { topic: `user:${ALICE}`, since: "page-token" }],
  });
  assert.equal(stream.state, "connecting");
  const first = await socket(1);
  assert.equal(first.url, "ws://stream.test:8080/v1/stream?ticket=st_1");
  const request = ticketRequests[0]!;
  assert.equal(request.headers.get("x-api-key"), "mk_test");
  assert.equal(request.headers.get("authorization"), "Bearer token");
  first.open();
  assert.deepEqual(await until("open"), { type: "open" });
  assert.equal(stream.state, "open");
  assert.deepEqual(first.sent, [
    { action: "subscribe", topic: "home", id: "home" },
    { action: "subscribe", topic: `user:${ALICE}`, id: `user:${ALICE}`, since: "page-token" },
  ]);
  first.receive({ type: "tweet.created", topic: `user:${ALICE}`, data: tweet("t1") });
  first.receive({ type: "subscribed", topic: `user:${ALICE}`, id: `user:${ALICE}`, replayed: 1, truncated: false, newest: "t1" });
  first.receive({ type: "subscribed", topic: "home", id: "home", newest: "t1" });
  first.receive({ type: "tweet.deleted", topic: "home", data: { tweet_id: "t0", author_id: ALICE } });
  // A newer server's message, a broken one and one of a topic not followed are skipped.
  first.receive({ type: "tweet.liked", topic: "home" });
  first.receive({ type: "tweet.created", topic: `user:${BOB}`, data: tweet("x") });
  first.receive("not an object");
  first.receive({ type: "pong" });
  const created = await until("tweet.created");
  assert.equal(created.tweet.text, "hello");
  assert.equal(created.topic, `user:${ALICE}`);
  assert.deepEqual(await until("subscribed"), { type: "subscribed", topic: `user:${ALICE}`, replayed: 1, newest: "t1" });
  assert.deepEqual(await until("subscribed"), { type: "subscribed", topic: "home", newest: "t1" });
  assert.deepEqual(await until("tweet.deleted"), {
    type: "tweet.deleted",
    topic: "home",
    deleted: { tweet_id: "t0", author_id: ALICE },
  });
  stream.close();
  assert.deepEqual(await until("closed"), { type: "closed" });
  assert.equal(stream.state, "closed");
  assert.equal(first.closedWith, 1000);
  assert.deepEqual(await stream[Symbol.asyncIterator]().next(), { done: true, value: undefined });
});

test("a lagged socket reconnects at once and resumes every topic from where it was", async () => {
  const { stream, until, socket, waits } = harness({ topics: ["home", `user:${ALICE}`, `user:${BOB}`] });
  const first = await socket(1);
  first.open();
  first.receive({ type: "subscribed", topic: "home", id: "home", newest: "h0" });
  first.receive({ type: "subscribed", topic: `user:${ALICE}`, id: `user:${ALICE}`, newest: "a0" });
  first.receive({ type: "subscribed", topic: `user:${BOB}`, id: `user:${BOB}` });
  first.receive({ type: "tweet.created", topic: "home", data: tweet("h1") });
  first.receive({ type: "tweet.created", topic: "home", data: tweet("h2") });
  await until("tweet.created");
  first.receive({ type: "lagged", last_tweet_id: "h3" });
  first.serverClose(4000, "lagged");
  const reconnecting = await until("reconnecting");
  assert.deepEqual(reconnecting, {
    type: "reconnecting",
    attempt: 0,
    delayMs: 0,
    cause: { kind: "closed", code: 4000, reason: "lagged" },
  });
  const second = await socket(2);
  assert.equal(second.url, "ws://stream.test:8080/v1/stream?ticket=st_2");
  second.open();
  await until("open");
  // The last tweet received; else the newest of the last `subscribed`; else the nil UUID.
  assert.deepEqual(second.sent, [
    { action: "subscribe", topic: "home", id: "home", since: "h2" },
    { action: "subscribe", topic: `user:${ALICE}`, id: `user:${ALICE}`, since: "a0" },
    { action: "subscribe", topic: `user:${BOB}`, id: `user:${BOB}`, since: NIL },
  ]);
  assert.deepEqual(waits, [], "no wait before the first reconnect after a lag");
  stream.close();
});

test("other closes back off with full jitter, growing until a connection is answered", async () => {
  const { stream, until, socket, waits } = harness({ topics: ["home"] });
  (await socket(1)).open();
  (await socket(1)).receive({ type: "subscribed", topic: "home", id: "home" });
  (await socket(1)).serverClose(1006);
  assert.deepEqual(await until("reconnecting"), {
    type: "reconnecting",
    attempt: 0,
    delayMs: 250, // 0.5 × min(30 s, 0.5 s × 2⁰)
    cause: { kind: "closed", code: 1006, reason: "" },
  });
  (await socket(2)).fail("connect ECONNREFUSED 127.0.0.1:8080");
  const unreachable = await until("reconnecting");
  assert.equal(unreachable.attempt, 1);
  assert.equal(unreachable.delayMs, 500);
  assert.deepEqual(unreachable.cause, { kind: "unreachable", error: "connect ECONNREFUSED 127.0.0.1:8080" });
  const third = await socket(3);
  third.open();
  third.serverClose(1001, "the server is stopping; reconnect"); // before its subscription was answered
  assert.equal((await until("reconnecting")).delayMs, 1000);
  const fourth = await socket(4);
  fourth.open();
  fourth.receive({ type: "subscribed", topic: "home", id: "home" }); // a good connection: the backoff starts over
  fourth.serverClose(4008, "missed heartbeats");
  const policy = await until("reconnecting");
  assert.equal(policy.attempt, 0);
  assert.equal(policy.delayMs, 250);
  const fifth = await socket(5);
  fifth.open();
  fifth.receive({ type: "subscribed", topic: "home", id: "home" });
  fifth.serverClose(4029, "the key's quota is spent");
  assert.equal((await until("reconnecting")).delayMs, 250);
  assert.deepEqual(waits, [250, 500, 1000, 250, 250]);
  stream.close();
});

test("an upgrade refused with 401 (an expired ticket) gets another ticket at once", async () => {
  const { stream, until, socket, waits } = harness({ topics: ["home"] });
  (await socket(1)).fail("Unexpected server response: 401");
  assert.deepEqual((await until("reconnecting")).cause, { kind: "upgrade-refused", status: 401 });
  (await socket(2)).open();
  await until("open");
  assert.deepEqual(waits, []);
  stream.close();
});

test("a ticket answered 429 waits its Retry-After, 503 backs off, and 401 ends the stream", async () => {
  const refusal = (status: number, code: string, headers: Record<string, string> = {}) => () =>
    Response.json(problem(status, code), { status, headers: { "content-type": "application/problem+json", ...headers } });
  const { stream, until, waits, sockets, iterator } = harness({ topics: ["home"] }, [
    refusal(429, "quota_exceeded", { "retry-after": "7" }),
    refusal(503, "unavailable"),
    refusal(401, "unauthorized"),
  ]);
  const throttled = await until("reconnecting");
  assert.deepEqual(throttled.cause, { kind: "ticket-refused", status: 429, retryAfterMs: 7000 });
  assert.equal(throttled.delayMs, 7000);
  const unavailable = await until("reconnecting");
  assert.deepEqual(unavailable.cause, { kind: "ticket-refused", status: 503 });
  assert.equal(unavailable.delayMs, 500);
  const closed = await until("closed");
  assert.ok(closed.error instanceof StreamError);
  assert.equal(closed.error.reason, "ticket");
  assert.equal(closed.error.status, 401);
  assert.equal(closed.error.problem?.code, "unauthorized");
  // The iteration then throws it, once, and ends.
  await assert.rejects(iterator.next(), (error) => error === closed.error);
  assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  assert.deepEqual(waits, [7000, 500]);
  assert.equal(sockets.length, 0);
  assert.equal(stream.state, "closed");
});

test("a 4001 close ends the stream with an unauthorized error", async () => {
  const { stream, socket } = harness({ topics: ["home"] });
  const first = await socket(1);
  first.open();
  first.serverClose(4001, "the key was disabled");
  const events: StreamEvent[] = [];
  await assert.rejects(
    (async () => {
      for await (const event of stream) events.push(event);
    })(),
    (error) => error instanceof StreamError && error.reason === "unauthorized" && /4001 the key was disabled/.test(error.message),
  );
  assert.deepEqual(
    events.map((event) => event.type),
    ["connecting", "open", "closed"],
  );
});

test("a truncated replay is surfaced as a gap before its subscribed", async () => {
  const { stream, until, socket, seen } = harness({ topics: [{ topic: "home", since: "old" }] });
  const first = await socket(1);
  first.open();
  first.receive({ type: "tweet.created", topic: "home", data: tweet("r1") });
  first.receive({ type: "subscribed", topic: "home", id: "home", replayed: 100, truncated: true, newest: "r1" });
  await until("subscribed");
  assert.deepEqual(
    seen.map((event) => event.type),
    ["connecting", "open", "tweet.created", "gap", "subscribed"],
  );
  assert.deepEqual(seen[3], { type: "gap", topic: "home" });
  stream.close();
});

test("a refused subscription is dropped; a throttled one is sent again; an unnamed throttle reconnects", async () => {
  const { stream, until, socket } = harness({ topics: ["home", `user:${BOB}`] });
  const first = await socket(1);
  first.open();
  first.receive({ type: "error", id: `user:${BOB}`, problem: problem(404, "not_found") });
  const refused = await until("refused");
  assert.equal(refused.topic, `user:${BOB}`);
  assert.equal(refused.problem.code, "not_found");
  assert.deepEqual(stream.topics, ["home"]);
  first.receive({ type: "error", id: "home", problem: problem(429, "throttled") });
  await new Promise((resolve) => setTimeout(resolve, 1100)); // sent again a second later
  assert.deepEqual(first.sent.slice(2), [{ action: "subscribe", topic: "home", id: "home" }]);
  // Refused without an id while a subscription is unanswered: which one is unknown.
  first.receive({ type: "error", problem: problem(429, "throttled") });
  assert.deepEqual((await until("reconnecting")).cause, { kind: "throttled", code: "throttled" });
  assert.equal(first.closedWith, 1000);
  stream.close();
});

test("subscribe and unsubscribe change the topics of an open stream", async () => {
  const { stream, until, socket } = harness();
  const first = await socket(1);
  first.open();
  await until("open");
  stream.subscribe(`user:${ALICE}`, "t9");
  stream.subscribe(`user:${ALICE}`); // followed already: nothing
  stream.unsubscribe("home"); // not followed: nothing
  first.receive({ type: "subscribed", topic: `user:${ALICE}`, id: `user:${ALICE}`, replayed: 0 });
  await until("subscribed");
  stream.unsubscribe(`user:${ALICE}`);
  first.receive({ type: "unsubscribed", topic: `user:${ALICE}`, id: `user:${ALICE}` });
  assert.deepEqual(await until("unsubscribed"), { type: "unsubscribed", topic: `user:${ALICE}` });
  assert.deepEqual(first.sent, [
    { action: "subscribe", topic: `user:${ALICE}`, id: `user:${ALICE}`, since: "t9" },
    { action: "unsubscribe", topic: `user:${ALICE}`, id: `user:${ALICE}` },
  ]);
  assert.deepEqual(stream.topics, []);
  stream.close();
});

test("leaving a for-await loop closes the stream and its socket", async () => {
  const { stream, socket } = harness({ topics: ["home"] });
  const first = await socket(1);
  first.open();
  for await (const event of stream) if (event.type === "open") break;
  assert.equal(stream.state, "closed");
  assert.equal(first.closedWith, 1000);
});

test("without a WebSocket class the stream says what to pass", () => {
  const client = createClient({ baseUrl: BASE });
  const global = globalThis as { WebSocket?: unknown };
  const saved = global.WebSocket;
  delete global.WebSocket;
  try {
    assert.throws(() => client.stream(), /pass `WebSocket`/);
  } finally {
    if (saved !== undefined) global.WebSocket = saved;
  }
});
