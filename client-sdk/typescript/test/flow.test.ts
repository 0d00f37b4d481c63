// A partner's flow end to end, through the SDK, against the real server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  createClient,
  type KnownProblemCode,
  knownProblemCodes,
  MinitterError,
  type MinitterClient,
  unwrap,
} from "../src/index.js";
import { type RunningServer, startServer } from "./support/server.js";

const PASSWORD = "correct horse battery staple";
let server: RunningServer;
let anonymous: MinitterClient;

before(async () => {
  server = await startServer();
  anonymous = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
});

after(async () => {
  await server.stop();
});

async function signUp(username: string) {
  const email = `${username}@example.com`;
  const user = await unwrap(anonymous.api.POST("/v1/users", { body: { username, email, password: PASSWORD } }));
  const token = await unwrap(anonymous.api.POST("/v1/auth/token", { body: { email, password: PASSWORD } }));
  return { user, client: anonymous.withBearerToken(token.access_token) };
}

async function refusal(call: Promise<unknown>): Promise<[number, string | undefined]> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof MinitterError, `not a MinitterError: ${error}`);
    const code = error.problem?.code;
    assert.ok(code === undefined || (knownProblemCodes as readonly string[]).includes(code), `an unlisted code: ${code}`);
    return [error.status, code];
  }
  assert.fail("the call should have failed");
}

test("a problem's code is typed by the document's list, and open to newer codes", () => {
  const known: KnownProblemCode = "cannot_follow_self";
  // @ts-expect-error: not a code the document lists
  const unknown: KnownProblemCode = "no_such_code";
  const problem: MinitterError["problem"] = { type: "about:blank", title: "t", status: 418, code: "a_newer_code", request_id: "r" };
  assert.deepEqual([known, unknown, problem?.code], ["cannot_follow_self", "no_such_code", "a_newer_code"]);
});

test("health and readiness", async () => {
  assert.deepEqual(await unwrap(anonymous.api.GET("/healthz")), { status: "ok" });
  assert.deepEqual(await unwrap(anonymous.api.GET("/readyz")), { status: "ok" });
});

test("sign up, log in, and read profiles", async () => {
  const { user, client } = await signUp("ada_l");
  assert.equal(user.username, "ada_l");
  const me = await unwrap(client.api.GET("/v1/me"));
  assert.equal(me.email, "ada_l@example.com");
  const profile = await unwrap(anonymous.api.GET("/v1/users/{user_id}", { params: { path: { user_id: user.id } } }));
  assert.deepEqual(profile, user);
});

test("errors are typed problems: 400 with every violation, 401, 404, 409", async () => {
  const invalid = anonymous.api.POST("/v1/users", { body: { username: "a", email: "nope", password: "short" } });
  const { error, response } = await invalid;
  assert.equal(response.status, 400);
  assert.deepEqual(
    [...new Set(error?.errors?.map((v) => v.pointer))],
    ["/email", "/password", "/username"],
  );
  assert.deepEqual(await refusal(unwrap(anonymous.api.GET("/v1/me"))), [401, "unauthorized"]);
  const nobody = "01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d";
  assert.deepEqual(
    await refusal(unwrap(anonymous.api.GET("/v1/users/{user_id}", { params: { path: { user_id: nobody } } }))),
    [404, "not_found"],
  );
  await signUp("taken_1");
  assert.deepEqual(
    await refusal(
      unwrap(anonymous.api.POST("/v1/users", { body: { username: "taken_2", email: "taken_1@example.com", password: PASSWORD } })),
    ),
    [409, "conflict"],
  );
});

test("every invalid request is refused in one shape: a 400 problem listing each violation", async () => {
  const { client } = await signUp("validator");
  const refusals: MinitterError[] = [];
  // One request at a time: a second promise made up front could reject before anything
  // awaits it, which Node reports as an unhandled rejection.
  for (const call of [
    () => unwrap(client.api.POST("/v1/tweets", { body: { text: "x".repeat(281) } })),
    () => unwrap(anonymous.api.POST("/v1/users", { body: { username: "a", email: "nope", password: "short" } })),
  ]) {
    const error = await call().catch((error: unknown) => error);
    assert.ok(error instanceof MinitterError, `not a MinitterError: ${error}`);
    refusals.push(error);
  }
  const [tweet, user] = refusals;
  assert.deepEqual([tweet?.status, tweet?.problem?.code], [400, user?.problem?.code]);
  assert.deepEqual(tweet?.problem?.errors?.map((v) => [v.in, v.pointer]), [["body", "/text"]]);
  assert.deepEqual([...new Set(user?.problem?.errors?.map((v) => v.pointer))], ["/email", "/password", "/username"]);
  assert.ok(tweet?.problem?.request_id, "a request id to quote");
});

test("follow, post, and walk the timeline page by page", async () => {
  const reader = await signUp("reader");
  const writer = await signUp("writer");
  const follow = { params: { path: { user_id: writer.user.id } } };
  await unwrap(reader.client.api.PUT("/v1/me/following/{user_id}", follow));
  await unwrap(reader.client.api.PUT("/v1/me/following/{user_id}", follow));
  const self = { params: { path: { user_id: reader.user.id } } };
  assert.deepEqual(
    await refusal(unwrap(reader.client.api.PUT("/v1/me/following/{user_id}", self))),
    [422, "cannot_follow_self"],
  );

  const posted: string[] = [];
  for (let i = 0; i < 5; i++) {
    const tweet = await unwrap(writer.client.api.POST("/v1/tweets", { body: { text: `tweet ${i}` } }));
    posted.push(tweet.id);
  }
  const timeline: string[] = [];
  for await (const tweet of reader.client.timeline({ limit: 2 })) timeline.push(tweet.id);
  assert.deepEqual(timeline, [...posted].reverse());

  const byWriter: string[] = [];
  for await (const tweet of anonymous.userTweets(writer.user.id, { limit: 3 })) byWriter.push(tweet.id);
  assert.deepEqual(byWriter, [...posted].reverse());

  const followers = [];
  for await (const user of anonymous.followers(writer.user.id, { limit: 1 })) followers.push(user.username);
  assert.deepEqual(followers, ["reader"]);
  const following = [];
  for await (const user of anonymous.following(reader.user.id)) following.push(user.username);
  assert.deepEqual(following, ["writer"]);

  const forged = anonymous.api.GET("/v1/timeline", { params: { query: { page_token: "forged" } } });
  assert.equal((await forged).response.status, 401);
  assert.deepEqual(
    await refusal(unwrap(reader.client.api.GET("/v1/timeline", { params: { query: { page_token: "forged" } } }))),
    [400, "invalid_request"],
  );

  await unwrap(reader.client.api.DELETE("/v1/me/following/{user_id}", follow));
  const after = await unwrap(anonymous.api.GET("/v1/users/{user_id}", { params: { path: { user_id: writer.user.id } } }));
  assert.equal(after.follower_count, 0);
});

test("without a valid API key every /v1 call is a 403", async () => {
  const keyless = createClient({ baseUrl: server.baseUrl });
  assert.deepEqual(await refusal(unwrap(keyless.api.GET("/v1/timeline"))), [403, "forbidden"]);
  const wrong = createClient({ baseUrl: server.baseUrl, apiKey: "mk_wrong" });
  const me = wrong.api.GET("/v1/users/{user_id}", { params: { path: { user_id: "01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d" } } });
  assert.deepEqual(await refusal(unwrap(me)), [403, "forbidden"]);
});

test("a profile picture goes up as bytes and comes back the same", async () => {
  const { user, client } = await signUp("painter");
  const png = Uint8Array.from([
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 144, 119, 83,
    222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1, 1, 0, 201, 254, 146, 239, 0, 0, 0, 0,
    73, 69, 78, 68, 174, 66, 96, 130,
  ]);
  const stored = await client.putPicture(png);
  assert.equal(stored.content_type, "image/png");
  const picture = await anonymous.picture(user.id);
  assert.equal(picture.contentType, "image/png");
  assert.deepEqual(picture.bytes, png);
  assert.deepEqual(await refusal(client.putPicture(new TextEncoder().encode("<svg/>"))), [415, "unsupported_media_type"]);
});

test("only the author deletes, and retries with an idempotency key create one tweet", async () => {
  const author = await signUp("author");
  const other = await signUp("other");
  const post = () =>
    unwrap(
      author.client.api.POST("/v1/tweets", {
        params: { header: { "Idempotency-Key": "once" } },
        body: { text: "exactly once" },
      }),
    );
  const first = await post();
  const retry = await post();
  assert.equal(retry.id, first.id);

  const path = { params: { path: { tweet_id: first.id } } };
  assert.deepEqual(await refusal(unwrap(other.client.api.DELETE("/v1/tweets/{tweet_id}", path))), [403, "forbidden"]);
  await unwrap(author.client.api.DELETE("/v1/tweets/{tweet_id}", path));
  assert.deepEqual(await refusal(unwrap(anonymous.api.GET("/v1/tweets/{tweet_id}", path))), [404, "not_found"]);
});
