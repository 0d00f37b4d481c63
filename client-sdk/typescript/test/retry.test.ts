// The SDK's retries against the real server: throttling answered by waiting for
// Retry-After, a whole timeline iterated through a tiny plan (every page retried, each
// attempt seen by the hook), a lost response to a post retried with the same
// Idempotency-Key (one tweet), a timeout per attempt against a server that never
// answers, and the caller's deadline across attempts and waits.
import assert from "node:assert/strict";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { type Attempt, createClient, MinitterError, retryAfterMs, unwrap } from "../src/index.js";
import { planKey, type RunningServer, startServer } from "./support/server.js";

const PASSWORD = "correct horse battery staple";
/** Short backoffs, so that only Retry-After makes a test slow. */
const QUICK = { baseDelayMs: 50, maxDelayMs: 100 };

let server: RunningServer;
const opened: Server[] = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const listener of opened) listener.close();
  await server.stop();
});

async function signUp(username: string) {
  const anonymous = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
  const email = `${username}@example.com`;
  const user = await unwrap(anonymous.api.POST("/v1/users", { body: { username, email, password: PASSWORD } }));
  const token = await unwrap(anonymous.api.POST("/v1/auth/token", { body: { email, password: PASSWORD } }));
  return { user, token: token.access_token };
}

async function tweetCount(userId: string): Promise<number> {
  const anonymous = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
  const user = await unwrap(anonymous.api.GET("/v1/users/{user_id}", { params: { path: { user_id: userId } } }));
  return user.tweet_count;
}

/** Listens on a free port; resolves to its URL. */
async function listen(listener: Server): Promise<string> {
  opened.push(listener);
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const address = listener.address();
  assert.ok(address !== null && typeof address === "object");
  return `http://127.0.0.1:${address.port}`;
}

/**
 * A proxy to the server that forwards the first connection's request, waits for the
 * answer and closes the connection without passing it on (a lost response); later
 * connections pass through.
 */
async function lossyProxy(): Promise<{ url: string; connections: () => number }> {
  const upstream = new URL(server.baseUrl);
  let connections = 0;
  const listener = createServer((client: Socket) => {
    const first = connections++ === 0;
    const target = connect(Number(upstream.port), upstream.hostname);
    client.on("error", () => {});
    target.on("error", () => {});
    if (!first) {
      client.pipe(target).pipe(client);
      return;
    }
    let request = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      request = Buffer.concat([request, chunk]);
      const end = request.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = /content-length:\s*(\d+)/i.exec(request.subarray(0, end).toString())?.[1] ?? "0";
      if (request.length < end + 4 + Number(length)) return;
      target.write(request);
      target.once("data", () => {
        // The server answered: drop both sides, the client never sees it.
        target.destroy();
        client.destroy();
      });
    });
  });
  return { url: await listen(listener), connections: () => connections };
}

test("a throttled burst waits for Retry-After and succeeds; without retries it gets 429", async () => {
  const { user } = await signUp("throttled");
  // One request, then one more every half second.
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 2, burst_limit: 1 } });
  const patient = createClient({ baseUrl: server.baseUrl, apiKey: key, retry: QUICK });
  const path = { params: { path: { user_id: user.id } } };

  const started = Date.now();
  for (let i = 0; i < 4; i++) {
    const fetched = await unwrap(patient.api.GET("/v1/users/{user_id}", path));
    assert.equal(fetched.id, user.id);
  }
  // Three of the four were throttled with Retry-After: 1, and waited for it.
  assert.ok(Date.now() - started >= 2500, `${Date.now() - started} ms`);

  const impatient = createClient({ baseUrl: server.baseUrl, apiKey: key, retry: { maxRetries: 0 } });
  const refusals: [number, string | undefined][] = [];
  for (let i = 0; i < 4; i++) {
    try {
      await unwrap(impatient.api.GET("/v1/users/{user_id}", path));
    } catch (error) {
      assert.ok(error instanceof MinitterError);
      refusals.push([error.status, error.problem?.code]);
    }
  }
  assert.ok(refusals.length > 0, "the burst was never throttled");
  for (const refusal of refusals) assert.deepEqual(refusal, [429, "throttled"]);
});

test("a whole timeline iterates to the end through a tiny plan; without retries it stops at a 429", async () => {
  const { token } = await signUp("streamer");
  const author = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey, bearerToken: token });
  for (let n = 0; n < 6; n++) await unwrap(author.api.POST("/v1/tweets", { body: { text: `tweet ${n}` } }));
  // Two requests a second, so the pages of two tweets run into the throttle.
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 2, burst_limit: 1 } });
  const attempts: Attempt[] = [];
  const reader = createClient({
    baseUrl: server.baseUrl,
    apiKey: key,
    bearerToken: token,
    retry: QUICK,
    onAttempt: (attempt) => {
      attempts.push(attempt);
    },
  });

  const texts: string[] = [];
  for await (const tweet of reader.timeline({ limit: 2 })) texts.push(tweet.text);

  assert.deepEqual(texts, ["tweet 5", "tweet 4", "tweet 3", "tweet 2", "tweet 1", "tweet 0"]);
  assert.ok(attempts.length > 0 && attempts.every((a) => a.operation === "get_timeline" && a.method === "GET"));
  const throttled = attempts.filter((a) => a.status === 429);
  assert.ok(throttled.length > 0, `the iteration was never throttled: ${JSON.stringify(attempts)}`);
  for (const attempt of throttled) {
    assert.ok(attempt.retryInMs !== undefined && attempt.retryInMs >= 1000, "a 429 waits for its Retry-After");
    assert.equal(attempt.rateLimit?.throttle?.remaining, 0, "the hook sees each page's rate limits");
  }
  assert.ok(attempts.some((a) => a.attempt > 1 && a.status === 200), "a retry succeeded");
  assert.ok(attempts.some((a) => a.url.includes("page_token=")), "a later page was fetched");

  // With retries off, the first throttled page ends the iteration with a typed 429.
  const impatient = reader.withRetry({ maxRetries: 0 });
  const seen: string[] = [];
  const refused = await (async () => {
    try {
      for (let round = 0; round < 5; round++) for await (const tweet of impatient.timeline({ limit: 2 })) seen.push(tweet.id);
    } catch (error) {
      return error;
    }
    return undefined;
  })();
  assert.ok(refused instanceof MinitterError, `not a MinitterError: ${refused}`);
  assert.deepEqual([refused.status, refused.problem?.code], [429, "throttled"]);
  assert.ok(refused.retryAfterSeconds !== undefined && refused.retryAfterSeconds >= 1);
  assert.equal(refused.rateLimit?.throttle?.remaining, 0);
});

test("the caller's signal is a deadline across attempts and their waits", async () => {
  const { user } = await signUp("hurried");
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 0.1, burst_limit: 1 } });
  const client = createClient({ baseUrl: server.baseUrl, apiKey: key, retry: { maxRetries: 5 } });
  const path = { params: { path: { user_id: user.id } } };
  await unwrap(client.api.GET("/v1/users/{user_id}", path)); // the bucket is now empty for ten seconds

  const started = Date.now();
  await assert.rejects(
    unwrap(client.api.GET("/v1/users/{user_id}", { ...path, signal: AbortSignal.timeout(500) })),
    (error: unknown) => error instanceof DOMException && error.name === "TimeoutError",
  );
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 450 && elapsed < 2000, `${elapsed} ms: the wait for Retry-After was cut short`);
});

test("a post whose response is lost is retried with the same key: one tweet", async () => {
  const { user, token } = await signUp("poster");
  const proxy = await lossyProxy();
  const client = createClient({ baseUrl: proxy.url, apiKey: server.apiKey, bearerToken: token, retry: QUICK });

  const tweet = await unwrap(client.api.POST("/v1/tweets", { body: { text: "exactly once" } }));
  assert.equal(tweet.text, "exactly once");
  assert.equal(proxy.connections(), 2);
  assert.equal(await tweetCount(user.id), 1);

  // Without retries the caller sees the lost connection, though the tweet was made.
  const lossy = await lossyProxy();
  const impatient = createClient({ baseUrl: lossy.url, apiKey: server.apiKey, bearerToken: token, retry: { maxRetries: 0 } });
  await assert.rejects(impatient.api.POST("/v1/tweets", { body: { text: "lost" } }), TypeError);
  assert.equal(await tweetCount(user.id), 2);
});

test("an attempt times out even when a garbage collection runs while it waits", async () => {
  // Node's fetch can lose a signal it follows after a collection (nodejs/undici#4068);
  // the attempt must still end at its timeout, not at undici's own 300 s.
  const sockets: Socket[] = [];
  const silent = createServer((socket) => {
    sockets.push(socket);
  });
  const url = await listen(silent);
  const client = createClient({ baseUrl: url, apiKey: "mk_unused", timeoutMs: 300, retry: { maxRetries: 0 } });
  setFlagsFromString("--expose-gc");
  const collect = runInNewContext("gc") as () => void;

  const started = Date.now();
  const call = client.api.GET("/healthz");
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    collect();
  }
  await assert.rejects(call, (error: unknown) => error instanceof DOMException && error.name === "TimeoutError");
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 5000, `${elapsed} ms`);
  for (const socket of sockets) socket.destroy();
});

test("each attempt times out, and the retries are bounded", async () => {
  // Requests received (undici may open a spare connection that sends nothing).
  let connections = 0;
  const sockets: Socket[] = [];
  const silent = createServer((socket) => {
    socket.once("data", () => connections++);
    sockets.push(socket); // accepted, read, never answered
  });
  const url = await listen(silent);
  const client = createClient({ baseUrl: url, apiKey: "mk_unused", timeoutMs: 300, retry: QUICK });

  const started = Date.now();
  await assert.rejects(client.api.GET("/healthz"), (error: unknown) => error instanceof DOMException && error.name === "TimeoutError");
  const elapsed = Date.now() - started;
  assert.equal(connections, 3, "three attempts");
  assert.ok(elapsed >= 900 && elapsed < 2500, `${elapsed} ms`);

  // A POST without an Idempotency-Key may have been received: it is not sent again.
  await assert.rejects(client.api.POST("/v1/auth/token", { body: { email: "a@example.com", password: PASSWORD } }));
  assert.equal(connections, 4, "one attempt");
  for (const socket of sockets) socket.destroy();
});

test("Retry-After is read as seconds or as an HTTP date", () => {
  assert.equal(retryAfterMs("3"), 3000);
  assert.equal(retryAfterMs(null), undefined);
  assert.equal(retryAfterMs("soon"), undefined);
  const now = Date.parse("Sun, 06 Nov 1994 08:49:07 GMT");
  assert.equal(retryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", now), 30_000);
  assert.equal(retryAfterMs("Sun, 06 Nov 1994 08:49:37 GMT", now + 60_000), 0);
});
