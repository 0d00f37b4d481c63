// Conditional reads against the real server: the ETag and the value, then a 304 as a
// typed outcome (not an error), for a JSON resource and for a picture's bytes.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { conditional, createClient, MinitterError, type MinitterClient, unwrap } from "../src/index.js";
import { planKey, type RunningServer, startServer } from "./support/server.js";

const PASSWORD = "correct horse battery staple";
let server: RunningServer;
let anonymous: MinitterClient;

before(async () => {
  server = await startServer();
  // A plan with a quota, so that every response reports what is left of it.
  const apiKey = await planKey(server.baseUrl, server.adminToken, { quota: { limit: 1000, period: "DAY" } });
  anonymous = createClient({ baseUrl: server.baseUrl, apiKey });
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

test("a conditional read gives the ETag and the value, then 'not modified' while it is current", async () => {
  const { user, client } = await signUp("cond_ada");
  const path = { user_id: user.id };

  const first = await conditional(anonymous.api.GET("/v1/users/{user_id}", { params: { path } }));
  assert.equal(first.notModified, false);
  assert.ok(!first.notModified);
  assert.equal(first.value.username, "cond_ada");
  assert.equal(first.response.status, 200);
  assert.ok(first.etag !== undefined && first.etag.length > 0, "an ETag");
  const left = first.rateLimit?.quota?.remaining;
  assert.ok(left !== undefined, "keyed responses report their rate limits");

  const header = { "If-None-Match": first.etag };
  const again = await conditional(anonymous.api.GET("/v1/users/{user_id}", { params: { path, header } }));
  assert.equal(again.notModified, true);
  assert.equal(again.response.status, 304);
  assert.equal(again.etag, first.etag);
  assert.ok("value" in again === false, "a 304 has no value");
  assert.equal(again.rateLimit?.quota?.remaining, left - 1, "a 304 reports its rate limits too");

  // The user changes (a tweet counts): the same ETag now gets the new copy.
  await unwrap(client.api.POST("/v1/tweets", { body: { text: "changed" } }));
  const changed = await conditional(anonymous.api.GET("/v1/users/{user_id}", { params: { path, header } }));
  assert.ok(!changed.notModified, "the copy is stale");
  assert.equal(changed.value.tweet_count, 1);
  assert.notEqual(changed.etag, first.etag);

  // unwrap() has no value to give for a 304: it refuses it.
  await assert.rejects(
    unwrap(anonymous.api.GET("/v1/users/{user_id}", { params: { path, header: { "If-None-Match": changed.etag ?? "" } } })),
    (error: unknown) => error instanceof MinitterError && error.status === 304 && error.problem === undefined,
  );
});

test("errors of a conditional read are thrown as problems", async () => {
  const nobody = "01936c4e-7a9b-7cc3-a2d5-4f0e8c1b2a3d";
  await assert.rejects(
    conditional(anonymous.api.GET("/v1/tweets/{tweet_id}", { params: { path: { tweet_id: nobody } } })),
    (error: unknown) => error instanceof MinitterError && error.status === 404 && error.problem?.code === "not_found",
  );
});

test("a picture is read conditionally as bytes", async () => {
  const { user, client } = await signUp("cond_painter");
  const png = Uint8Array.from([
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 144, 119, 83,
    222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1, 1, 0, 201, 254, 146, 239, 0, 0, 0, 0,
    73, 69, 78, 68, 174, 66, 96, 130,
  ]);
  await client.putPicture(png);
  const path = { user_id: user.id };
  const first = await conditional(
    anonymous.api.GET("/v1/users/{user_id}/picture", { params: { path }, parseAs: "arrayBuffer" }),
  );
  assert.ok(!first.notModified);
  assert.deepEqual(new Uint8Array(first.value as ArrayBuffer), png);
  const header = first.etag === undefined ? {} : { "If-None-Match": first.etag };
  const again = await conditional(
    anonymous.api.GET("/v1/users/{user_id}/picture", { params: { path, header }, parseAs: "arrayBuffer" }),
  );
  assert.equal(again.notModified, true);
});
