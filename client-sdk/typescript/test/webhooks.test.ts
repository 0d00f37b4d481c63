// verifyWebhook on deliveries signed here by the `standardwebhooks` package, as Minitter's
// server signs them: no server needed (`npx tsc -p tsconfig.json && node --test
// build/test/webhooks.test.js` runs this file alone). The region below is the README's
// "Receiving webhooks" snippet, verbatim (the last test checks it), and is run here.
// #region receive-webhook
import { verifyWebhook, type WebhookEvent, WebhookError } from "@minitter/client";

// The subscription's secret, shown once by `POST /v1/webhooks`. While you switch to a
// rotated secret, give both (space-separated here): a delivery signed with either passes.
const secrets = (process.env["MINITTER_WEBHOOK_SECRETS"] ?? "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").split(" ");

// A fetch-API route handler (Hono, Next.js, Bun, Deno…). With Express, read the body with
// `express.raw({ type: "application/json" })` and pass `req.headers` and `req.body`.
async function receive(request: Request): Promise<Response> {
  const body = new Uint8Array(await request.arrayBuffer()); // the raw body, as it was signed
  let event: WebhookEvent;
  try {
    event = verifyWebhook(secrets, request.headers, body);
  } catch (error) {
    if (!(error instanceof WebhookError)) throw error; // a TypeError: a malformed secret
    // Not from Minitter, altered on the way, or replayed: act on nothing.
    return new Response(error.message, { status: error.reason === "invalid_json" ? 422 : 400 });
  }
  // `webhook-id` is the same on every retry of an event: process each id once.
  const id = request.headers.get("webhook-id");
  if (event.type === "tweet.created") console.log(`${id}: new tweet`, event.data);
  else console.log(`${id}: ${event.type}`);
  return new Response(null, { status: 204 }); // any 2xx; anything else is retried
}
// #endregion

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Webhook } from "standardwebhooks";

const OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const THIRD = "whsec_dGhpcmQgc2VjcmV0IG9mIHRoaXJ0eS10d28=";
const ID = "msg_2b5Qh8yJ3ZKQm1vXo9cRtE";
const BODY = JSON.stringify({
  type: "tweet.created",
  timestamp: "2025-01-02T03:04:05Z",
  data: { id: "t1", text: "Hello" },
});

/** The headers of a delivery of `body` signed with each of `secrets`, `ageSeconds` ago. */
function deliver(secrets: string[], body: string = BODY, ageSeconds = 0): Record<string, string> {
  const at = new Date(Date.now() - ageSeconds * 1000);
  return {
    "webhook-id": ID,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": secrets.map((secret) => new Webhook(secret).sign(ID, at, body)).join(" "),
  };
}

function refusal(verify: () => unknown): WebhookError {
  try {
    verify();
  } catch (error) {
    assert.ok(error instanceof WebhookError, `not a WebhookError: ${error}`);
    return error;
  }
  assert.fail("the delivery should have been refused");
}

test("a webhook signed with the secret verifies, and its body is parsed", () => {
  const headers = deliver([OLD]);
  for (const body of [BODY, new TextEncoder().encode(BODY), Buffer.from(BODY), new TextEncoder().encode(BODY).buffer]) {
    const event = verifyWebhook<WebhookEvent<{ id: string; text: string }>>(OLD, headers, body);
    assert.equal(event.type, "tweet.created");
    assert.equal(event.timestamp, "2025-01-02T03:04:05Z");
    assert.deepEqual(event.data, { id: "t1", text: "Hello" });
  }
  // Headers as a fetch `Headers`, or as Node's (names in any case, values possibly lists).
  assert.equal(verifyWebhook(OLD, new Headers(headers), BODY).type, "tweet.created");
  const node = { "Webhook-Id": [ID], "WEBHOOK-TIMESTAMP": headers["webhook-timestamp"], "webhook-signature": headers["webhook-signature"], host: undefined };
  assert.equal(verifyWebhook(OLD, node, BODY).type, "tweet.created");
});

test("a webhook whose body was tampered with is refused", () => {
  const error = refusal(() => verifyWebhook(OLD, deliver([OLD]), BODY.replace("Hello", "Hellp")));
  assert.equal(error.reason, "invalid_signature");
});

test("a webhook signed with another secret is refused", () => {
  assert.equal(refusal(() => verifyWebhook(NEW, deliver([OLD]), BODY)).reason, "invalid_signature");
});

test("a webhook older than five minutes is refused even when signed, and one within them is not", () => {
  assert.equal(refusal(() => verifyWebhook(OLD, deliver([OLD], BODY, 5 * 60 + 10), BODY)).reason, "timestamp_too_old");
  assert.equal(verifyWebhook(OLD, deliver([OLD], BODY, 4 * 60), BODY).type, "tweet.created");
  assert.equal(refusal(() => verifyWebhook(OLD, deliver([OLD], BODY, -(5 * 60 + 10)), BODY)).reason, "timestamp_in_future");
});

test("a webhook missing a header, or with an unreadable timestamp, is refused naming it", () => {
  for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
    const headers = deliver([OLD]);
    delete headers[name];
    const error = refusal(() => verifyWebhook(OLD, headers, BODY));
    assert.deepEqual([error.reason, error.header], ["missing_header", name]);
  }
  const error = refusal(() => verifyWebhook(OLD, { ...deliver([OLD]), "webhook-timestamp": "yesterday" }, BODY));
  assert.deepEqual([error.reason, error.header], ["invalid_header", "webhook-timestamp"]);
});

test("a webhook signed with the old and the new secret verifies with either", () => {
  const headers = deliver([OLD, NEW]);
  assert.match(headers["webhook-signature"] ?? "", /^v1,\S+ v1,\S+$/);
  assert.equal(verifyWebhook(OLD, headers, BODY).type, "tweet.created");
  assert.equal(verifyWebhook(NEW, headers, BODY).type, "tweet.created");
  assert.equal(refusal(() => verifyWebhook(THIRD, headers, BODY)).reason, "invalid_signature");
});

test("a webhook is accepted under any of several secrets", () => {
  assert.equal(verifyWebhook([OLD, NEW], deliver([OLD]), BODY).type, "tweet.created");
  assert.equal(verifyWebhook([OLD, NEW], deliver([NEW]), BODY).type, "tweet.created");
  assert.equal(refusal(() => verifyWebhook([OLD, NEW], deliver([THIRD]), BODY)).reason, "invalid_signature");
});

test("a webhook secret is taken with or without its prefix; a malformed one is a TypeError", () => {
  assert.equal(verifyWebhook(OLD.slice("whsec_".length), deliver([OLD]), BODY).type, "tweet.created");
  assert.equal(verifyWebhook(`${OLD}\n`, deliver([OLD]), BODY).type, "tweet.created");
  for (const secrets of [[], "whsec_", "whsec_not base64!", [OLD, ""]]) {
    assert.throws(() => verifyWebhook(secrets, deliver([OLD]), BODY), TypeError, JSON.stringify(secrets));
  }
});

test("a genuine webhook whose body is not JSON is refused as such", () => {
  assert.equal(refusal(() => verifyWebhook(OLD, deliver([OLD], "not json"), "not json")).reason, "invalid_json");
});

test("the README's webhook receiver accepts a delivery, and refuses a forged or stale one", async () => {
  const post = (headers: Record<string, string>, body: string) =>
    receive(new Request("https://partner.example.com/minitter/events", { method: "POST", headers, body }));
  assert.equal((await post(deliver([OLD]), BODY)).status, 204);
  assert.equal((await post(deliver([THIRD]), BODY)).status, 400);
  assert.equal((await post(deliver([OLD], BODY, 600), BODY)).status, 400);
  assert.equal((await post(deliver([OLD], "{"), "{")).status, 422);
});

test("the SDK's README shows the webhook receiver verbatim", () => {
  const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
  const source = readFileSync(join(import.meta.dirname, "..", "..", "test", "webhooks.test.ts"), "utf8");
  const region = /\/\/ #region receive-webhook\n(.*?)\/\/ #endregion\n/s.exec(source)?.[1];
  assert.ok(region !== undefined, "the region");
  assert.ok(readme.includes("```typescript\n" + region + "```"), "README.md's webhook snippet differs from test/webhooks.test.ts");
});
