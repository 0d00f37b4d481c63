// rateLimit() against the real server (a plan's quota and its throttle, as a success, a
// conditional read and a refusal report them) and on its own (the header grammar).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createClient, MinitterError, RateLimit, rateLimit, unwrap, unwrapResponse } from "../src/index.js";
import { parseList } from "../src/rate-limit.js";
import { planKey, type RunningServer, startServer } from "./support/server.js";

const PASSWORD = "correct horse battery staple";
let server: RunningServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server.stop();
});

async function someone(username: string): Promise<string> {
  const anonymous = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
  const body = { username, email: `${username}@example.com`, password: PASSWORD };
  return (await unwrap(anonymous.api.POST("/v1/users", { body }))).id;
}

test("every response reports the quota that is left, a refusal included", async () => {
  const userId = await someone("metered");
  const key = await planKey(server.baseUrl, server.adminToken, { quota: { limit: 3, period: "DAY" } });
  const client = createClient({ baseUrl: server.baseUrl, apiKey: key });
  const path = { params: { path: { user_id: userId } } };

  const remaining: (number | undefined)[] = [];
  for (let i = 0; i < 3; i++) {
    const { value, rateLimit: limits } = await unwrapResponse(client.api.GET("/v1/users/{user_id}", path));
    assert.equal(value.id, userId);
    const quota = limits?.quota;
    assert.ok(quota !== undefined, "the plan's quota");
    assert.equal(quota.limit, 3);
    assert.equal(quota.windowSeconds, 86_400);
    assert.ok(quota.resetSeconds !== undefined && quota.resetSeconds <= 86_400);
    assert.equal(limits?.throttle, undefined, "the plan has no throttle");
    assert.deepEqual(limits?.current, quota);
    remaining.push(quota.remaining);
  }
  assert.deepEqual(remaining, [2, 1, 0]);

  // A refusal reports them too (and is not retried: the quota resets tomorrow).
  const started = Date.now();
  const refused = await unwrap(client.api.GET("/v1/users/{user_id}", path)).catch((error: unknown) => error);
  assert.ok(Date.now() - started < 1000, "not waited for");
  assert.ok(refused instanceof MinitterError);
  assert.equal(refused.status, 429);
  assert.equal(refused.rateLimit?.quota?.remaining, 0);
  assert.deepEqual(rateLimit(refused), refused.rateLimit);
});

test("a throttled plan reports its bucket; unkeyed operations report none", async () => {
  const userId = await someone("bucketed");
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 1, burst_limit: 2 } });
  const client = createClient({ baseUrl: server.baseUrl, apiKey: key, retry: { maxRetries: 0 } });

  const { response } = await client.api.GET("/v1/users/{user_id}", { params: { path: { user_id: userId } } });
  const limits = rateLimit(response);
  assert.equal(limits?.throttle?.limit, 2, "the bucket holds the burst");
  assert.equal(limits?.throttle?.remaining, 1);
  assert.equal(limits?.quota, undefined);
  assert.equal(Number(response.headers.get("x-ratelimit-remaining")), 1, "the X- trio says the same");

  const health = await client.api.GET("/healthz");
  assert.equal(rateLimit(health), undefined);
});

test("a policy and its state are joined by name", () => {
  const limits = RateLimit.fromHeaders(
    new Headers({ "ratelimit-policy": '"quota";q=10000;w=86400', ratelimit: '"quota";r=9999;t=3600' }),
  );
  assert.deepEqual(limits?.quota, { name: "quota", limit: 10_000, windowSeconds: 86_400, remaining: 9_999, resetSeconds: 3_600 });
  assert.equal(limits?.throttle, undefined);
});

test("several policies, on one line or several, are all read", () => {
  const headers = new Headers();
  headers.append("ratelimit-policy", '"quota";q=100;w=86400, "burst";q=5;w=1');
  headers.append("ratelimit", '"burst";r=0;t=1');
  headers.append("ratelimit", 'quota;r=42;t=60');
  const limits = rateLimit(headers);
  assert.deepEqual(limits?.policies.map((p) => p.name), ["quota", "burst"]);
  assert.deepEqual([limits?.throttle?.limit, limits?.throttle?.remaining], [5, 0]);
  assert.equal(limits?.quota?.remaining, 42);
});

test("absent or malformed headers give nothing; the X-RateLimit trio is a fallback", () => {
  assert.equal(rateLimit(new Headers()), undefined);
  assert.equal(rateLimit(new Headers({ "ratelimit-policy": '"quota;q=1', ratelimit: "q=-1" })), undefined);
  const negative = rateLimit(new Headers({ ratelimit: '"quota";r=-1' }));
  assert.equal(negative?.quota?.remaining, undefined);
  const legacy = rateLimit(new Headers({ "x-ratelimit-limit": "10", "x-ratelimit-remaining": "7", "x-ratelimit-reset": "30" }));
  assert.deepEqual(legacy?.current, { name: "", limit: 10, windowSeconds: undefined, remaining: 7, resetSeconds: 30 });
  assert.equal(legacy?.quota, undefined);
});

test("a malformed header is ignored, never thrown, and the other header still counts", () => {
  const malformed = [
    '"quota";q=1,', // a trailing comma
    '"quota";Q=1', // an upper-case key
    '"quota" "burst"', // no comma
    '"quota";q=1;p=:a:', // bytes that are not base64
    '"qu\\ota";q=1', // an escape other than \" or \\
    '"quotá";q=1', // not ASCII
    '"quota";q=1234567890123456', // an integer of 16 digits
  ];
  for (const value of malformed) {
    assert.equal(parseList(value), undefined, value);
    assert.doesNotThrow(() => rateLimit(new Headers({ "ratelimit-policy": value })), value);
    assert.equal(rateLimit(new Headers({ "ratelimit-policy": value })), undefined, value);
    const limits = rateLimit(new Headers({ "ratelimit-policy": value, ratelimit: '"quota";r=7;t=60' }));
    assert.deepEqual(limits?.policies, [
      { name: "quota", limit: undefined, windowSeconds: undefined, remaining: 7, resetSeconds: 60 },
    ]);
  }
});

test("members that are not named policies, and parameters that are not counts, are skipped", () => {
  const limits = rateLimit(
    new Headers({
      "ratelimit-policy": '1;q=5, (quota burst);q=5, ?1;q=5, "quota";q=1.5;w="60", burst;q=?1;w=-1;x=%"h%c3%a9"',
      ratelimit: '"quota";r=2.0;t=@1700000000',
    }),
  );
  assert.deepEqual(limits?.policies, [
    // JavaScript has one number type: a decimal with no fraction reads as an integer
    { name: "quota", limit: undefined, windowSeconds: undefined, remaining: 2, resetSeconds: undefined },
    { name: "burst", limit: undefined, windowSeconds: undefined, remaining: undefined, resetSeconds: undefined },
  ]);
});

test("the structured-field list parser takes RFC 9651's items and refuses the rest", () => {
  assert.deepEqual(
    parseList('"a\\"b";x=1;y=2.5;z, tok/en;f=?0, (1 2);p=:aGk=:')?.map((m) => [m.item, [...m.params]]),
    [
      ['a"b', [["x", 1], ["y", 2.5], ["z", true]]],
      ["tok/en", [["f", false]]],
      [{ inner: true }, [["p", Uint8Array.from([104, 105])]]],
    ],
  );
  for (const broken of ['"open', "a,", "a;B=1", "a b", "é"]) assert.equal(parseList(broken), undefined, broken);
  const [dated] = parseList('a;s=%"h%c3%a9";d=@1700000000') ?? [];
  assert.deepEqual(dated?.params.get("d"), new Date(1_700_000_000_000));
  assert.equal(String(dated?.params.get("s")), "hé");
});
