// The retries follow the OpenAPI document, not a list in the SDK. `widgets.yaml`
// (client-sdk/fixtures) is a document the SDK has never seen: `create_widget` takes an
// `Idempotency-Key`, `create_gadget` does not. codegen wrote their facts to
// `fixtures/widgets-operations.ts` (`npm run generate`; `npm run check-generated` fails
// if it is stale); given only those facts, the SDK's middleware and retrying fetch, wired
// as `createClient` wires them for Minitter's document, add a key to the widget and
// replay it after a 503 (the per-attempt hook naming it `create_widget`), and send the
// gadget (which the server may have made) once.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { after, before, test } from "node:test";

import createFetchClient from "openapi-fetch";

import { type Attempt, idempotencyKeys, operationFacts, resilientFetch, tagOperations } from "../src/index.js";
import { operations as widgetOperations } from "./fixtures/widgets-operations.js";

/** The fixture's paths, as openapi-typescript would type them. */
interface WidgetPaths {
  "/widgets": {
    post: {
      parameters: { header?: { "Idempotency-Key"?: string } };
      requestBody: { content: { "application/json": { name?: string } } };
      responses: { 201: { content?: never }; 503: { content?: never } };
    };
  };
  "/gadgets": {
    post: {
      parameters: Record<string, never>;
      requestBody: { content: { "application/json": Record<string, unknown> } };
      responses: { 201: { content?: never }; 503: { content?: never } };
    };
  };
}

/** The `Idempotency-Key` of each request the server got ("" for none), by path. */
const seen = new Map<string, string[]>();
const server = createServer((request: IncomingMessage, response: ServerResponse) => {
  request.resume();
  request.on("end", () => {
    const keys = seen.get(request.url ?? "") ?? [];
    keys.push(String(request.headers["idempotency-key"] ?? ""));
    seen.set(request.url ?? "", keys);
    response.writeHead(keys.length === 1 ? 503 : 201).end();
  });
});
let baseUrl = "";

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  baseUrl = `http://127.0.0.1:${address.port}`;
});

after(() => {
  server.close();
});

/** Every attempt the widgets client made, as its `onAttempt` hook saw it. */
const attempts: Attempt[] = [];

function widgetsClient() {
  const client = createFetchClient<WidgetPaths>({
    baseUrl,
    fetch: resilientFetch(globalThis.fetch, {
      retry: { baseDelayMs: 10, maxDelayMs: 20 },
      onAttempt: (attempt) => {
        attempts.push(attempt);
      },
    }),
  });
  client.use(idempotencyKeys(widgetOperations));
  client.use(tagOperations(widgetOperations));
  return client;
}

test("an operation that takes an Idempotency-Key is replayed after a 503 with one key", async () => {
  const { response } = await widgetsClient().POST("/widgets", { body: { name: "sprocket" } });

  assert.equal(response.status, 201);
  const keys = seen.get("/widgets") ?? [];
  assert.equal(keys.length, 2, "the 503 was retried");
  assert.notEqual(keys[0], "", "a key was added");
  assert.equal(keys[0], keys[1], "every attempt sends the same key");
  // The hook names the operation by the document's operationId.
  assert.deepEqual(
    attempts.filter((a) => a.operation === "create_widget").map((a) => [a.attempt, a.status, a.retryInMs !== undefined]),
    [
      [1, 503, true],
      [2, 201, false],
    ],
  );
});

test("an operation without one is sent once, and its 503 returned", async () => {
  const { response } = await widgetsClient().POST("/gadgets", { body: {} });

  assert.equal(response.status, 503);
  assert.deepEqual(seen.get("/gadgets"), [""]);
});

test("Minitter's own table comes from the same generator", () => {
  const createTweet = operationFacts.find((operation) => operation.id === "create_tweet");
  assert.deepEqual(createTweet && [createTweet.method, createTweet.path, createTweet.idempotencyKey], [
    "POST",
    "/v1/tweets",
    "Idempotency-Key",
  ]);
  assert.ok(operationFacts.filter((operation) => operation.idempotencyKey !== null).every((operation) => operation.method !== "GET"));
});
