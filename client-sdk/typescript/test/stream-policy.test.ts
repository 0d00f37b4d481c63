// The stream's reconnect policy and resume positions, without a server: the same cases as
// the Rust SDK's `stream/reconnect.rs` and `stream/subscriptions.rs` tests, since both
// SDKs follow one table (the README's "Reconnecting and resuming"). Also: the generated
// message types are what the generator writes from asyncapi.yaml today.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import {
  backoffCeilingMs,
  backoffDelayMs,
  DEFAULT_STREAM_BACKOFF,
  type Disconnect,
  NIL_UUID,
  Positions,
  reconnectDelayMs,
  reconnectPlan,
  socketUrl,
  type Topic,
} from "../src/index.js";

const closed = (code: number): Disconnect => ({ kind: "closed", code, reason: "" });
const ticket = (status: number, retryAfterMs?: number): Disconnect =>
  retryAfterMs === undefined ? { kind: "ticket-refused", status } : { kind: "ticket-refused", status, retryAfterMs };
const upgrade = (status: number): Disconnect => ({ kind: "upgrade-refused", status });

test("the backoff's ceiling doubles from half a second up to thirty seconds", () => {
  const ceilings = Array.from({ length: 9 }, (_, attempt) => backoffCeilingMs(attempt));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  // However many attempts: no overflow, still the cap.
  assert.equal(backoffCeilingMs(10_000), 30_000);
  assert.deepEqual(DEFAULT_STREAM_BACKOFF, { baseMs: 500, capMs: 30_000 });
});

test("the delay is the random fraction of the ceiling (full jitter)", () => {
  assert.equal(backoffDelayMs(0, 0), 0);
  assert.equal(backoffDelayMs(0, 0.5), 250);
  assert.equal(backoffDelayMs(3, 0.25), 1000);
  assert.equal(backoffDelayMs(20, 0.5), 15_000);
  // Just below 1: just below the ceiling, never above it.
  assert.equal(backoffDelayMs(2, 0.999_999), 1999);
  // A broken random source cannot make the wait unbounded or negative.
  assert.equal(backoffDelayMs(1, 7), 1000);
  assert.equal(backoffDelayMs(1, -1), 0);
  assert.equal(backoffDelayMs(1, Number.NaN), 0);
  // Another backoff (a test's, say) scales the same way.
  assert.equal(backoffDelayMs(2, 0.5, { baseMs: 10, capMs: 25 }), 12);
});

test("every delay drawn stays within its bounds", () => {
  for (let attempt = 0; attempt < 12; attempt += 1) {
    for (let i = 0; i < 200; i += 1) {
      const wait = backoffDelayMs(attempt, Math.random());
      assert.ok(wait >= 0 && wait <= backoffCeilingMs(attempt), `${wait} at attempt ${attempt}`);
    }
  }
});

test("revoked credentials end the stream", () => {
  for (const disconnect of [closed(4001), ticket(401), ticket(403), ticket(404), upgrade(404)]) {
    assert.deepEqual(reconnectPlan(disconnect), { kind: "stop" }, JSON.stringify(disconnect));
    assert.equal(reconnectDelayMs(reconnectPlan(disconnect), 0, 0.5), undefined);
  }
});

test("a lagged socket and an expired ticket reconnect at once the first time", () => {
  for (const disconnect of [closed(4000), upgrade(401)]) {
    const plan = reconnectPlan(disconnect);
    assert.deepEqual(plan, { kind: "at-once" });
    assert.equal(reconnectDelayMs(plan, 0, 0.9), 0);
    // Not a loop without pause: a second failure in a row backs off.
    assert.equal(reconnectDelayMs(plan, 1, 0.5), 500);
  }
});

test("other failures back off", () => {
  const failures: Disconnect[] = [
    closed(1001),
    closed(4008),
    closed(4029),
    closed(1006),
    closed(1011),
    { kind: "lost", error: "reset" },
    { kind: "unreachable", error: "refused" },
    { kind: "ticket-unreachable", error: "refused" },
    { kind: "throttled", code: "throttled" },
    ticket(500),
    ticket(503),
    upgrade(502),
    upgrade(503),
    ticket(429),
    upgrade(429),
  ];
  for (const disconnect of failures) {
    const plan = reconnectPlan(disconnect);
    assert.deepEqual(plan, { kind: "backoff" }, JSON.stringify(disconnect));
    assert.equal(reconnectDelayMs(plan, 0, 0.5), 250);
    assert.equal(reconnectDelayMs(plan, 4, 0.5), 4000);
  }
});

test("a ticket answered 429 waits its Retry-After when that is longer", () => {
  const plan = reconnectPlan(ticket(429, 5000));
  assert.deepEqual(plan, { kind: "backoff", atLeastMs: 5000 });
  assert.equal(reconnectDelayMs(plan, 0, 0.9), 5000);
  // The backoff wins when it is the longer wait.
  assert.equal(reconnectDelayMs(plan, 6, 0.5), 15_000);
});

test("before any answer the application's since is sent", () => {
  const positions = new Positions<Topic>();
  positions.insert("home", "page-token");
  positions.insert("user:7");
  assert.equal(positions.since("home"), "page-token");
  assert.equal(positions.since("user:7"), undefined);
});

test("the last tweet received wins over everything", () => {
  const positions = new Positions<Topic>();
  positions.insert("home", "page-token");
  positions.tweet("home", "t1");
  positions.tweet("home", "t2");
  positions.subscribed("home", "t1");
  assert.equal(positions.since("home"), "t2");
});

test("without a tweet the newest of the last subscribed answer is sent", () => {
  const positions = new Positions<Topic>();
  positions.insert("home");
  positions.subscribed("home", "t5");
  assert.equal(positions.since("home"), "t5");
  positions.subscribed("home", "t6");
  assert.equal(positions.since("home"), "t6");
});

test("a topic without tweets resumes from the nil UUID", () => {
  const positions = new Positions<Topic>();
  positions.insert("user:9");
  positions.subscribed("user:9", undefined);
  assert.equal(positions.since("user:9"), NIL_UUID);
  assert.equal(NIL_UUID, "00000000-0000-0000-0000-000000000000");
});

test("a topic is followed once and forgotten when removed", () => {
  const positions = new Positions<Topic>();
  assert.ok(positions.insert("home"));
  positions.tweet("home", "t3");
  assert.ok(!positions.insert("home", "other"));
  assert.equal(positions.since("home"), "t3");
  assert.ok(positions.remove("home"));
  assert.ok(!positions.remove("home"));
  // Tweets of a topic no longer followed move nothing.
  positions.tweet("home", "t4");
  assert.deepEqual(positions.topics(), []);
  assert.ok(positions.insert("home"));
  assert.equal(positions.since("home"), undefined);
});

test("the socket URL is the ticket's path on the base URL", () => {
  const path = "/v1/stream?ticket=st_abc";
  assert.equal(socketUrl("http://127.0.0.1:8080", path), "ws://127.0.0.1:8080/v1/stream?ticket=st_abc");
  assert.equal(socketUrl("https://api.example.com/", path), "wss://api.example.com/v1/stream?ticket=st_abc");
  // A base URL with a path prefix keeps it, as the REST calls do.
  assert.equal(socketUrl("https://example.com/api", path), "wss://example.com/api/v1/stream?ticket=st_abc");
  assert.equal(socketUrl("http://a", "https://b/v1/stream"), "wss://b/v1/stream");
  assert.throws(() => socketUrl("ftp://a", path), { name: "StreamError", reason: "invalid-url" });
});

test("src/generated/stream.ts is what the generator writes from asyncapi.yaml, every time", () => {
  const sdk = join(import.meta.dirname, "..", "..");
  const dir = mkdtempSync(join(tmpdir(), "minitter-stream-types-"));
  try {
    const generate = (file: string) => {
      execFileSync(process.execPath, ["scripts/stream-types.mjs", "../../asyncapi.yaml", join(dir, file)], { cwd: sdk });
      return readFileSync(join(dir, file), "utf8");
    };
    const first = generate("a.ts");
    assert.equal(generate("b.ts"), first, "two runs differ");
    assert.equal(readFileSync(join(sdk, "src", "generated", "stream.ts"), "utf8"), first, "run `npm run generate:stream`");
    // The REST API's schemas are referenced, not copied.
    assert.match(first, /data: components\["schemas"\]\["Tweet"\];/);
    assert.match(first, /problem: components\["schemas"\]\["Problem"\];/);
    assert.match(first, /export type ServerMessage =\n(  \| \w+Message\n?)+;/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
